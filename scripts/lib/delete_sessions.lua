-- delete_sessions deletes the sessions prefix..id of ids, but keep's (each
-- hash and its use key), and returns how many hashes existed. unpack is
-- bounded by the Lua stack, so it deletes in chunks of 250 sessions.
local function delete_sessions(prefix, ids, keep)
  local n, hashes, uses, nb = 0, {}, {}, 0
  for _, id in ipairs(ids) do
    if id ~= keep then
      nb = nb + 1
      hashes[nb] = prefix .. id
      uses[nb] = prefix .. id .. '{{.SessUseSuffix}}'
      if nb == 250 then
        n = n + redis.call('DEL', unpack(hashes, 1, nb))
        redis.call('DEL', unpack(uses, 1, nb))
        nb = 0
      end
    end
  end
  if nb > 0 then
    n = n + redis.call('DEL', unpack(hashes, 1, nb))
    redis.call('DEL', unpack(uses, 1, nb))
  end
  return n
end
