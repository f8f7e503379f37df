-- Count one failed login in a fixed window.
-- KEYS[1] the counter   ARGV[1] window (ms)
-- Returns {count, ms until the window ends}.
local window = tonumber(ARGV[1])
if not window or window <= 0 then return redis.error_reply('ERR fail: bad window') end
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
-- A counter without a TTL would lock the pair out for ever: give it one.
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], window)
  ttl = window
end
return {n, ttl}
