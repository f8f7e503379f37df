-- Record use of a session: last seen and ip in the user's use hash, which
-- lives as long as the sessions it records. The session hash, which every
-- request reads through the client-side cache, is written only when it
-- would otherwise expire before the session's new end: then it is made to
-- live slack longer than that, so a session in use rewrites its hash (and
-- has Redis invalidate every replica's cached read of it) once per slack,
-- not once per touch.
-- KEYS[1] session hash, KEYS[2] the user's session index, KEYS[3] the user's use hash
-- ARGV[1] now (unix ms)   ARGV[2] idle timeout (ms)   ARGV[3] client ip   ARGV[4] sid
-- ARGV[5] touch interval (ms)   ARGV[6] slack (ms)
-- Returns the session's last recorded use (unix ms): now, or a later or
-- recent one another replica wrote (then nothing is written); 0 when the
-- session is gone: a touch never resurrects a revoked session.
{{template "slide.lua" .}}
{{template "use.lua"}}
local now, idle, every, slack = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5]), tonumber(ARGV[6])
if not (now and idle and every and slack) or #ARGV ~= 6 or #KEYS ~= 3 then return redis.error_reply('ERR touch: bad arguments') end
local h = redis.call('HMGET', KEYS[1], '{{.SessExpires}}', '{{.SessLastSeen}}')
local abs = tonumber(h[1])
if not abs then return 0 end
abs = abs * 1000
local last = math.max(tonumber(h[2]) or 0, last_use(redis.call('HGET', KEYS[3], ARGV[4])))
-- Written within the interval (by another replica, or by this one just
-- before): at most one write per interval, and last use never goes back.
if now - last < every then return last end
local ends = math.min(now + idle, abs)
-- The first write: Redis refuses it when out of memory, and then nothing is written.
redis.call('HSET', KEYS[3], ARGV[4], ARGV[1] .. ' ' .. ARGV[3])
if redis.call('PEXPIRETIME', KEYS[3]) < ends then redis.call('PEXPIREAT', KEYS[3], ends) end
if redis.call('PEXPIRETIME', KEYS[1]) < ends then
  -- Never past the absolute end fixed at login.
  slide(KEYS[1], KEYS[2], ARGV[4], ARGV[1], idle + slack, abs, ARGV[3])
end
return now
