-- Replace an account's recovery codes with new ones, while it has TOTP
-- (the codes stand in for it), and record it, in one step.
-- KEYS[1] user hash, KEYS[2] the user's recovery-code set, KEYS[3] the user's history
-- ARGV[1..#ARGV-1] the new codes' digests   ARGV[#ARGV] the events (audit.Spec)
-- Returns 1, or 0 with nothing written when the account has no TOTP.
{{template "record.lua"}}
if #ARGV < 2 then return redis.error_reply('ERR recovery_regen: bad arguments') end
local spec = decode_spec(ARGV[#ARGV])
if not spec then return redis.error_reply('ERR recovery_regen: bad arguments') end
if not redis.call('HGET', KEYS[1], '{{.UserTOTP}}') then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SADD', KEYS[2], unpack(ARGV, 1, #ARGV - 1))
record(KEYS[3], spec, 0)
return 1
