-- decode_spec reads the events to record (audit.Spec); nil when malformed.
local function decode_spec(s)
  local ok, spec = pcall(cjson.decode, s)
  if not ok or type(spec) ~= 'table' or type(spec.ev) ~= 'table' or not tonumber(spec.max)
    or type(spec.minid) ~= 'string' then
    return nil
  end
  return spec
end
-- record appends spec's events (each a field, value list) to a user's
-- history and trims it by count and age. count goes only where spec.tpl
-- says: into the value at that index of an event whose detail is the
-- server's template (audit.Event.Counted); every other value, a client's
-- user agent or device name among them, is stored as it was sent.
local function record(key, spec, count)
  for i, e in ipairs(spec.ev) do
    local fv = {}
    for j, v in ipairs(e) do fv[j] = tostring(v) end
    local t = type(spec.tpl) == 'table' and tonumber(spec.tpl[i]) or 0
    if t > 0 and fv[t] then
      local a, b = string.find(fv[t], '{count}', 1, true)
      while a do
        fv[t] = string.sub(fv[t], 1, a - 1) .. tostring(count) .. string.sub(fv[t], b + 1)
        a, b = string.find(fv[t], '{count}', a + #tostring(count), true)
      end
    end
    redis.call('XADD', key, 'MAXLEN', '~', spec.max, '*', unpack(fv))
  end
  redis.call('XTRIM', key, 'MINID', '~', spec.minid)
end
