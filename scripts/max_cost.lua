-- Raise the highest bcrypt cost any stored hash may have to ARGV[1], never
-- lower it: failed logins for unknown users are made to cost as much as a
-- check against the most expensive hash an account can still have.
-- KEYS[1] the counter   ARGV[1] a cost in use
-- Returns the highest cost.
local c = tonumber(ARGV[1])
if not c then return redis.error_reply('ERR max_cost: bad arguments') end
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if c > cur then
  redis.call('SET', KEYS[1], c)
  return c
end
return cur
