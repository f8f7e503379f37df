-- Revoke one session of one user.
-- KEYS[1] session hash (named by the user's id and the sid), KEYS[2] the user's session index
-- ARGV[1] sid
-- Returns 1 when a live session was revoked, 0 when there was none.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
