-- Create a session, atomically with the checks that make it legitimate.
-- KEYS[1] user hash, KEYS[2] the user's session index, KEYS[3] the new session hash,
-- KEYS[4] the user's history (login.succeeded, and a session.revoked per eviction)
-- KEYS[5] the user's use hash (touch.lua)
-- KEYS[6] (only for a sign-in with a DPoP proof) the record of the proof's jti
-- ARGV[1] credential version the password was checked against
-- ARGV[2] now (unix ms)   ARGV[3] when the hash expires (unix ms: the idle timeout and its
--   slack from now, or the absolute end; see touch.lua)   ARGV[4] max sessions (0 = no limit)
-- ARGV[5] prefix of this user's session keys (the sid is appended)   ARGV[6] the new sid
-- ARGV[7..] field, value pairs of the session hash; the account's role is added
--   unless it is the default role (most sessions; it would cost ~30 bytes each)
-- ARGV[last] the events to record (audit.Spec); its "evict" is the entry of an eviction,
--   to which the evicted sid is appended; last is #ARGV, or #ARGV - 1 with KEYS[6]
-- ARGV[#ARGV] with KEYS[6]: how long the proof's jti is remembered (ms)
-- Returns {'OK', evicted sid...} or {'NOUSER'} / {'DISABLED'} / {'STALE'} / {'REPLAY'} (the
-- proof's jti was seen before) with nothing written.
{{template "record.lua"}}
{{template "use.lua"}}

-- Validate first: a script that errors keeps its earlier writes.
local now, expiry, max = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local last, proofTTL = #ARGV, nil
if #KEYS == 6 then last, proofTTL = #ARGV - 1, tonumber(ARGV[#ARGV]) end
if not (now and expiry and max) or last < 9 or last % 2 ~= 1 or (#KEYS ~= 5 and #KEYS ~= 6) or (#KEYS == 6 and not proofTTL) then
  return redis.error_reply('ERR create: bad arguments')
end
local spec = decode_spec(ARGV[last])
if not spec or not spec.evict then return redis.error_reply('ERR create: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOUSER'} end
local st = redis.call('HMGET', KEYS[1], '{{.UserDisabled}}', '{{.UserVersion}}', '{{.UserRole}}', '{{.UserPending}}')
-- An account whose creation has not finished is no account yet.
if st[4] then return {'NOUSER'} end
if st[1] == '1' then return {'DISABLED'} end
-- A disable, password change or force-logout since the password check bumped cv:
-- this login must not outlive it.
if (st[2] or '0') ~= ARGV[1] then return {'STALE'} end

-- The first write must be one Redis refuses when out of memory (SET and HSET
-- are, ZREMRANGEBYSCORE is not): Redis checks memory at a script's first write
-- and then lets it finish, so this order means an OOM refuses the login whole.
-- A proof's jti is accepted once: a seen one writes nothing.
if proofTTL and not redis.call('SET', KEYS[6], '1', 'NX', 'PX', proofTTL) then return {'REPLAY'} end
-- The role is copied from the account in this same step, so a role change
-- (update_account) either sees this session or came before it.
local fields = {unpack(ARGV, 7, last - 1)}
if st[3] and st[3] ~= '{{.DefaultRole}}' then
  fields[#fields + 1] = '{{.SessRole}}'
  fields[#fields + 1] = st[3]
end
redis.call('HSET', KEYS[3], unpack(fields))
redis.call('PEXPIREAT', KEYS[3], expiry)

-- Sessions whose hashes have expired leave the index, and their use records go with them.
local gone = redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE')
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  for i = 1, #gone, 500 do redis.call('HDEL', KEYS[5], unpack(gone, i, math.min(i + 499, #gone))) end
end
-- A use record can outlast its session: a touch written without a script
-- (sessions/touches.go) that lands just after the session's revocation.
-- Once the records outnumber the sessions, those of sessions no longer in
-- the index go, so such strays never outnumber a user's sessions for long.
if redis.call('HLEN', KEYS[5]) > redis.call('ZCARD', KEYS[2]) then
  local stray = {}
  for _, id in ipairs(redis.call('HKEYS', KEYS[5])) do
    if not redis.call('ZSCORE', KEYS[2], id) then stray[#stray + 1] = id end
  end
  for i = 1, #stray, 500 do redis.call('HDEL', KEYS[5], unpack(stray, i, math.min(i + 499, #stray))) end
end

local out = {'OK'}
if max > 0 then
  local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
  local over = #ids - max + 1
  if over > 0 then
    -- Evict the least recently used (the use hash has its last use once it
    -- was touched). A member whose hash is missing sorts first.
    local byUse = {}
    for i, id in ipairs(ids) do
      local ls = redis.call('HGET', ARGV[5] .. id, '{{.SessLastSeen}}')
      byUse[i] = {id, ls and math.max(tonumber(ls), last_use(redis.call('HGET', KEYS[5], id))) or 0}
    end
    table.sort(byUse, function(a, b) return a[2] < b[2] end)
    for i = 1, over do
      local id = byUse[i][1]
      redis.call('DEL', ARGV[5] .. id)
      redis.call('HDEL', KEYS[5], id)
      redis.call('ZREM', KEYS[2], id)
      out[#out + 1] = id
      local e = {unpack(spec.evict)}
      e[#e + 1] = id
      spec.ev[#spec.ev + 1] = e
    end
  end
end

redis.call('ZADD', KEYS[2], expiry, ARGV[6])
-- The index lives as long as its longest-lived member.
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], top[2])
record(KEYS[4], spec, 0)
return out
