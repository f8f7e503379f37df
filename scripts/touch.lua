-- Record use of a session: last seen (ls), ip, and slide its idle expiry.
-- KEYS[1] session hash, KEYS[2] the user's session index
-- ARGV[1] now (unix ms)   ARGV[2] idle timeout (ms)   ARGV[3] client ip   ARGV[4] sid
-- Returns 1, or 0 when the session is gone: a touch never resurrects a revoked session.
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
if not (now and idle) or #ARGV ~= 4 then return redis.error_reply('ERR touch: bad arguments') end
local abs = tonumber(redis.call('HGET', KEYS[1], '{{.SessExpires}}'))
if not abs then return 0 end
abs = abs * 1000
-- Never past the absolute end fixed at login.
local expiry = math.min(now + idle, abs)
redis.call('HSET', KEYS[1], '{{.SessLastSeen}}', ARGV[1], '{{.SessIP}}', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], expiry)
redis.call('ZADD', KEYS[2], expiry, ARGV[4])
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], top[2])
return 1
