-- Record a refused sign-in (or password check) in a hash of refusal records,
-- coalesced per type, kind and failure window: the first refusal of a window
-- starts a record, the others count in it and replace its last ip and user
-- agent, in place, so a flood costs one small record per window and never
-- an entry per attempt.
-- KEYS[1] the refusals hash: '<ms>-<seq>' = a record (JSON: t type, k kind, n count,
--   e window end, f and l = {unix ms, ip, user agent} of the first and the last, l
--   without the user agent when it is the first's);
--   '>' type ' ' kind = the id of the record a refusal of that type and kind counts
--   in while its window lasts; '#' = the last record id issued
-- ARGV[1] now (unix ms)   ARGV[2] window (ms)   ARGV[3] type   ARGV[4] kind
-- ARGV[5] ip   ARGV[6] user agent   ARGV[7] most records kept (the oldest go first)
-- ARGV[8] records that started before this (unix ms) go   ARGV[9] the hash's TTL (ms)
-- Returns {record id, 1 when this refusal started it, else 0}.
local now, window, keep, oldest, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[7]),
  tonumber(ARGV[8]), tonumber(ARGV[9])
if #ARGV ~= 9 or not now or not window or window < 1 or not keep or keep < 1 or not oldest
  or not ttl or ttl < 1 or ARGV[3] == '' or string.find(ARGV[3] .. ARGV[4], ' ', 1, true) then
  return redis.error_reply('ERR refusal: bad arguments')
end
local cur = '>' .. ARGV[3] .. ' ' .. ARGV[4]

local id = redis.call('HGET', KEYS[1], cur)
local body = id and redis.call('HGET', KEYS[1], id)
if body then
  local ok, r = pcall(cjson.decode, body)
  if ok and type(r) == 'table' and tonumber(r.e) and now < tonumber(r.e) then
    r.n = (tonumber(r.n) or 0) + 1
    r.l = {ARGV[1], ARGV[5]}
    if type(r.f) ~= 'table' or r.f[3] ~= ARGV[6] then r.l[3] = ARGV[6] end
    redis.call('HSET', KEYS[1], id, cjson.encode(r))
    redis.call('PEXPIRE', KEYS[1], ttl)
    return {id, 0}
  end
end

-- A new record, its id after every one issued before (ids order the records).
local ms, seq = now, 0
local prev = redis.call('HGET', KEYS[1], '#')
if prev then
  local pms, pseq = string.match(prev, '^(%d+)-(%d+)$')
  if pms and tonumber(pms) >= ms then ms, seq = tonumber(pms), tonumber(pseq) + 1 end
end
id = string.format('%d-%d', ms, seq)
local r = {t = ARGV[3], k = ARGV[4], n = 1, e = tostring(now + window), f = {ARGV[1], ARGV[5], ARGV[6]},
  l = {ARGV[1], ARGV[5]}}
-- The first write is one Redis refuses when out of memory.
redis.call('HSET', KEYS[1], id, cjson.encode(r), cur, id, '#', id)

-- Keep the newest records, none that started too long ago.
local ids = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local fms, fseq = string.match(f, '^(%d+)-(%d+)$')
  if fms then
    if tonumber(fms) < oldest then
      redis.call('HDEL', KEYS[1], f)
    else
      ids[#ids + 1] = {tonumber(fms), tonumber(fseq), f}
    end
  end
end
if #ids > keep then
  table.sort(ids, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  for i = 1, #ids - keep do redis.call('HDEL', KEYS[1], ids[i][3]) end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {id, 1}
