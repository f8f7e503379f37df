-- Revoke one session of one user, and record it in the user's history.
-- KEYS[1] session hash (named by the user's id and the sid), KEYS[2] the user's session index,
-- KEYS[3] the user's history, KEYS[4] the user's use hash
-- ARGV[1] sid   ARGV[2] the events to record when a session was revoked (audit.Spec)
-- Returns 1 when a live session was revoked, 0 when there was none (and records nothing).
{{template "record.lua"}}
if #ARGV ~= 2 or #KEYS ~= 4 then return redis.error_reply('ERR revoke: bad arguments') end
local spec = decode_spec(ARGV[2])
if not spec then return redis.error_reply('ERR revoke: bad arguments') end
redis.call('ZREM', KEYS[2], ARGV[1])
local n = redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if n == 1 then record(KEYS[3], spec, 1) end
return n
