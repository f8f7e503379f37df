-- Apply account changes that end no session (a role, enabling), and copy a
-- new role into every live session of the account in the same step: the
-- request path reads the role from the session, so it must never lag. A
-- session holds no role field when the role is the default (as create.lua).
-- KEYS[1] user hash, KEYS[2] the user's session index, KEYS[3] the user's history
-- ARGV[1] prefix of this user's session keys   ARGV[2..#ARGV-1] field, value pairs to set on the
-- user hash   ARGV[#ARGV] the events to record (audit.Spec)
-- Returns the number of sessions updated, or -1 with nothing written when the user does not exist.
{{template "record.lua"}}
if #ARGV < 4 or #ARGV % 2 ~= 0 then return redis.error_reply('ERR update_account: bad arguments') end
local spec = decode_spec(ARGV[#ARGV])
if not spec then return redis.error_reply('ERR update_account: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end

local role
for i = 2, #ARGV - 1, 2 do
  if ARGV[i] == '{{.UserRole}}' then role = ARGV[i + 1] end
end
-- The account first: it is the write Redis refuses when out of memory, so an
-- OOM refuses the whole change.
redis.call('HSET', KEYS[1], unpack(ARGV, 2, #ARGV - 1))
local n = 0
if role then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    -- HSET on a session that has expired would recreate it without a TTL.
    if redis.call('EXISTS', ARGV[1] .. id) == 1 then
      if role == '{{.DefaultRole}}' then
        redis.call('HDEL', ARGV[1] .. id, '{{.SessRole}}')
      else
        redis.call('HSET', ARGV[1] .. id, '{{.SessRole}}', role)
      end
      n = n + 1
    end
  end
end
record(KEYS[3], spec, n)
return n
