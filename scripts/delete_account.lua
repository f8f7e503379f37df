-- Delete an account: its record, every session and the index, and record
-- account.deleted in its history, which stays. A login racing with this finds
-- no account (create.lua) and fails; the username is freed afterwards (another
-- slot).
-- KEYS[1] user hash, KEYS[2] the user's session index, KEYS[3] the user's history,
-- KEYS[4..] the account's other records, deleted with it (its passkeys, its recovery codes)
-- ARGV[1] prefix of this user's session keys   ARGV[2] the events (audit.Spec);
--   {count} in them becomes the number of sessions ended
-- Returns {sessions ended, {sid...}}, or {-1} with nothing written when there is no account.
{{template "record.lua"}}
{{template "delete_sessions.lua"}}
if #ARGV ~= 2 then return redis.error_reply('ERR delete_account: bad arguments') end
local spec = decode_spec(ARGV[2])
if not spec then return redis.error_reply('ERR delete_account: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local ended = delete_sessions(ARGV[1], ids, nil)
redis.call('DEL', KEYS[2], KEYS[1])
if #KEYS > 3 then redis.call('DEL', unpack(KEYS, 4, #KEYS)) end
record(KEYS[3], spec, ended)
return {ended, ids}
