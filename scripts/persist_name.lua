-- Make a username's claim permanent (it was claimed with an expiry, so a
-- creation that dies frees it), unless it is no longer this account's.
-- KEYS[1] the username's claim   ARGV[1] the account id
-- Returns 1 when the claim is the account's and permanent, 0 when it is gone or another's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PERSIST', KEYS[1])
return 1
