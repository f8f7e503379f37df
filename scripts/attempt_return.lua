-- Give back an attempt taken by attempt.lua that was not a failed guess: the
-- password was right (for a counter a success does not clear), or another
-- limit refused the login before any password was checked.
-- KEYS[1] the counter. Never creates the counter nor takes it below zero.
-- Returns the count left.
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
