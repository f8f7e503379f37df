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
-- history and trims it by count and age; {count} in a value becomes count.
local function record(key, spec, count)
  for _, e in ipairs(spec.ev) do
    local fv = {}
    for i, v in ipairs(e) do fv[i] = (string.gsub(tostring(v), '{count}', tostring(count))) end
    redis.call('XADD', key, 'MAXLEN', '~', spec.max, '*', unpack(fv))
  end
  redis.call('XTRIM', key, 'MINID', '~', spec.minid)
end
