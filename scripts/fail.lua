-- Count one failed login in a fixed window.
-- KEYS[1] the counter   ARGV[1] window (ms)
-- Returns {count, ms until the window ends}.
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
-- A counter without a TTL would lock the pair out for ever: give it one.
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
