-- Take an account out of the set of enabled admins before it is demoted,
-- disabled or deleted, unless it is the last one. The set is a subset of the
-- enabled admins (an account joins after it became one and leaves before it
-- stops), so two admins removing each other at once cannot both pass: the
-- second finds one member left.
-- KEYS[1] the set of enabled admins   ARGV[1] account id
-- Returns 1 when the change may go ahead (also when the account is no
-- enabled admin), 0 when it is the last enabled admin.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 1 end
if redis.call('SCARD', KEYS[1]) <= 1 then return 0 end
redis.call('SREM', KEYS[1], ARGV[1])
return 1
