-- delete_sessions deletes the session hashes prefix..id of ids, but keep's,
-- and returns how many existed. unpack is bounded by the Lua stack, so it
-- deletes in chunks of 500.
local function delete_sessions(prefix, ids, keep)
  local n, batch, nb = 0, {}, 0
  for _, id in ipairs(ids) do
    if id ~= keep then
      nb = nb + 1
      batch[nb] = prefix .. id
      if nb == 500 then
        n = n + redis.call('DEL', unpack(batch, 1, nb))
        nb = 0
      end
    end
  end
  if nb > 0 then n = n + redis.call('DEL', unpack(batch, 1, nb)) end
  return n
end
