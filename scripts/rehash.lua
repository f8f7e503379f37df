-- Replace an account's password hash with one of the same password at the
-- configured cost, unless the hash changed since it was read (a password
-- change or reset won: keep theirs). The credential version stays: the
-- password is the same, so no session ends.
-- KEYS[1] user hash   ARGV[1] the hash as read   ARGV[2] the new hash
-- Returns 1 when replaced, 0 when the hash had changed.
if redis.call('HGET', KEYS[1], '{{.UserHash}}') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], '{{.UserHash}}', ARGV[2])
return 1
