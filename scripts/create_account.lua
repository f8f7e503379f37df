-- Write a new account's record and its account.created event in one step.
-- The username was claimed before (SET NX, in another slot).
-- KEYS[1] user hash, KEYS[2] the user's history
-- ARGV[1..#ARGV-1] field, value pairs of the account   ARGV[#ARGV] the events (audit.Spec)
-- Returns 1, or 0 with nothing written when the account already exists.
{{template "record.lua"}}
if #ARGV < 3 or #ARGV % 2 ~= 1 then return redis.error_reply('ERR create_account: bad arguments') end
local spec = decode_spec(ARGV[#ARGV])
if not spec then return redis.error_reply('ERR create_account: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 1, #ARGV - 1))
record(KEYS[2], spec, 0)
return 1
