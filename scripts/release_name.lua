-- Free a username, unless another account claimed it since.
-- KEYS[1] the username's claim   ARGV[1] the id of the account that held it
-- Returns 1 when freed, 0 when the claim is another account's (or gone).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
