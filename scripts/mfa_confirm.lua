-- Activate a pending TOTP enrollment: the pending secret becomes the active
-- one, the code's time step is recorded as used, the recovery codes are
-- replaced by the new ones, and mfa.enrolled is recorded, in one step.
-- KEYS[1] user hash, KEYS[2] the user's recovery-code set, KEYS[3] the user's history
-- ARGV[1] the pending sealed secret the code was checked against (compare-and-set:
--   another enrollment begun meanwhile wins)   ARGV[2] the code's time step
-- ARGV[3..#ARGV-1] recovery code digests   ARGV[#ARGV] the events (audit.Spec)
-- Returns 1, or 0 with nothing written when the pending secret changed.
{{template "record.lua"}}
if #ARGV < 3 or not tonumber(ARGV[2]) or ARGV[1] == '' then return redis.error_reply('ERR mfa_confirm: bad arguments') end
local spec = decode_spec(ARGV[#ARGV])
if not spec then return redis.error_reply('ERR mfa_confirm: bad arguments') end
if redis.call('HGET', KEYS[1], '{{.UserTOTPPending}}') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], '{{.UserTOTP}}', ARGV[1], '{{.UserTOTPStep}}', ARGV[2])
redis.call('HDEL', KEYS[1], '{{.UserTOTPPending}}')
redis.call('DEL', KEYS[2])
if #ARGV > 3 then redis.call('SADD', KEYS[2], unpack(ARGV, 3, #ARGV - 1)) end
record(KEYS[3], spec, 0)
return 1
