-- Take one login attempt from a fixed-window budget, before the password is
-- checked. Checking the count first and counting the failure after the check
-- would let a burst of concurrent guesses all pass the check; taking the
-- attempt in the same step as the check cannot be raced.
-- KEYS[1] the counter   ARGV[1] attempts per window   ARGV[2] window (ms)
-- Returns {1, 0} when the attempt is taken, {0, ms until the window ends}
-- when the budget is spent (and then writes nothing).
local max, window = tonumber(ARGV[1]), tonumber(ARGV[2])
if not max or max < 1 or not window or window < 1 then
  return redis.error_reply('ERR attempt: bad arguments')
end
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
if n >= max then
  return {0, math.max(ttl, 1)}
end
redis.call('INCR', KEYS[1])
-- A new counter, or one left without a TTL, would otherwise lock out for ever.
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], window) end
return {1, 0}
