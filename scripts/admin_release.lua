-- Take an account out of the set of enabled admins before it is demoted,
-- disabled or deleted, unless it is the last one. The set is a subset of the
-- enabled admins (an account joins after it became one and leaves before it
-- stops), so two admins removing each other at once cannot both pass: the
-- second finds one member left. (A member may be an admin whose creation has
-- not finished: users.Store.ReleaseAdmin checks the members that remain.)
-- KEYS[1] the set of enabled admins   ARGV[1] account id
-- Returns 1 when it was taken out, 2 when it was no member (no enabled
-- admin: the change may go ahead), 0 when it is the last member.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 2 end
if redis.call('SCARD', KEYS[1]) <= 1 then return 0 end
redis.call('SREM', KEYS[1], ARGV[1])
return 1
