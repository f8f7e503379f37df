-- Settle an attempt taken by attempt.lua once its password was checked (or
-- never will be).
-- KEYS[1] the limit's hash   ARGV[1] attempt id   ARGV[2] window (ms)
-- ARGV[3] outcome: 'fail' counts a failed guess; 'reset' (a right password,
--   for a limit a success clears) forgets the failures; 'return' (a right
--   password for a limit a success does not clear, or no password checked)
--   just ends the attempt.
-- Returns the failures now counted.
local window = tonumber(ARGV[2])
local outcome = ARGV[3]
if not window or window < 1 or (outcome ~= 'fail' and outcome ~= 'reset' and outcome ~= 'return') then
  return redis.error_reply('ERR attempt_settle: bad arguments')
end
redis.call('HDEL', KEYS[1], 'a:' .. ARGV[1])
if outcome == 'fail' then
  local n = redis.call('HINCRBY', KEYS[1], '{{.Failures}}', 1)
  -- The window may have ended while the password was checked: a new one.
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], window) end
  return n
end
if outcome == 'reset' then redis.call('HDEL', KEYS[1], '{{.Failures}}') end
return tonumber(redis.call('HGET', KEYS[1], '{{.Failures}}') or '0')
