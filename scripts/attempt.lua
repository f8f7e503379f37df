-- Take one login attempt from a fixed-window budget, before the password is
-- checked. Checking the count first and counting the failure after the check
-- would let a burst of concurrent guesses all pass the check; taking the
-- attempt in the same step as the check cannot be raced.
--
-- KEYS[1] the limit's hash: '{{.Failures}}' = failed attempts this window, and one field
--   'a:<attempt id>' = start (unix ms) per attempt still being checked.
-- ARGV[1] attempts per window   ARGV[2] window (ms)   ARGV[3] attempt id
-- ARGV[4] now (unix ms)   ARGV[5] an attempt older than this (ms) is taken to
--   have died with its process and no longer counts
-- Returns {1, 0} when the attempt is taken; {0, ms until the window ends} when
-- failures alone spent the budget (429); {2, 0} when attempts still in flight
-- fill the rest of it: the caller waits for them to settle and asks again, so
-- correct passwords in flight never turn each other away.
local max, window, now, stale = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
if not max or max < 1 or not window or window < 1 or not now or not stale or not ARGV[3] or ARGV[3] == '' then
  return redis.error_reply('ERR attempt: bad arguments')
end
local h = redis.call('HGETALL', KEYS[1])
local failed, live = 0, 0
for i = 1, #h, 2 do
  if h[i] == '{{.Failures}}' then
    failed = tonumber(h[i + 1]) or 0
  elseif now - (tonumber(h[i + 1]) or 0) > stale then
    redis.call('HDEL', KEYS[1], h[i])
  else
    live = live + 1
  end
end
local ttl = redis.call('PTTL', KEYS[1])
if failed >= max then
  return {0, math.max(ttl, 1)}
end
if failed + live >= max then
  return {2, 0}
end
redis.call('HSET', KEYS[1], 'a:' .. ARGV[3], ARGV[4])
-- A new counter, or one left without a TTL, would otherwise lock out for ever.
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], window) end
return {1, 0}
