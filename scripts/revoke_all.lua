-- Revoke every session of a user, optionally keeping one, and bump the user's
-- credential version in the same step so that a login whose password check ran
-- before this cannot create a session after it. Optional account changes
-- (disable, new password hash) are applied in the same step too.
-- KEYS[1] user hash, KEYS[2] the user's session index, KEYS[3] the user's history,
-- KEYS[4] the user's use hash
-- ARGV[1] sid to keep ('' for none)   ARGV[2] prefix of this user's session keys
-- ARGV[3] the credential version the change was checked against ('' when it
--   was not: an admin's change, a force-logout)
-- ARGV[4..#ARGV-1] field, value pairs to set on the user hash
-- ARGV[#ARGV] the events to record (audit.Spec); {count} in them becomes the number revoked
-- Returns {revoked count, {sid...}} (every sid the index held, keep included), or, with
-- nothing written, {-1} when the user does not exist and {-2} when its credential version
-- is no longer ARGV[3] (a password change that checked the old password lost a race with
-- another change or an admin's reset, and must not overwrite it).
{{template "record.lua"}}
{{template "delete_sessions.lua"}}
if #ARGV < 4 or #ARGV % 2 ~= 0 or #KEYS ~= 4 then return redis.error_reply('ERR revoke_all: bad arguments') end
local spec = decode_spec(ARGV[#ARGV])
if not spec then return redis.error_reply('ERR revoke_all: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if ARGV[3] ~= '' and (redis.call('HGET', KEYS[1], '{{.UserVersion}}') or '0') ~= ARGV[3] then return {-2} end

local keep = ARGV[1]
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local revoked = delete_sessions(ARGV[2], ids, keep)

local kept = keep ~= '' and redis.call('ZSCORE', KEYS[2], keep)
local keptUse = kept and redis.call('HGET', KEYS[4], keep)
redis.call('DEL', KEYS[2], KEYS[4])
if kept then
  redis.call('ZADD', KEYS[2], kept, keep)
  redis.call('PEXPIREAT', KEYS[2], kept)
  if keptUse then
    redis.call('HSET', KEYS[4], keep, keptUse)
    redis.call('PEXPIREAT', KEYS[4], kept)
  end
end

redis.call('HINCRBY', KEYS[1], '{{.UserVersion}}', 1)
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 4, #ARGV - 1)) end
record(KEYS[3], spec, revoked)
-- The index as it was, keep included: the caller skips it. Copying it
-- into a reply table of its own would cost as much as the deletes.
return {revoked, ids}
