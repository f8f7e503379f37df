-- Remove every second factor of an account (its TOTP secret, a pending
-- enrollment, its recovery codes) and record mfa.removed, in one step.
-- KEYS[1] user hash, KEYS[2] the user's recovery-code set, KEYS[3] the user's history
-- ARGV[1] the events (audit.Spec)
-- Returns 1 when there was a factor to remove, 0 when there was none (nothing recorded),
-- -1 when the account does not exist.
{{template "record.lua"}}
local spec = decode_spec(ARGV[1])
if not spec then return redis.error_reply('ERR mfa_remove: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('HDEL', KEYS[1], '{{.UserTOTP}}', '{{.UserTOTPPending}}', '{{.UserTOTPStep}}')
    + redis.call('DEL', KEYS[2])
if n == 0 then return 0 end
record(KEYS[3], spec, 0)
return 1
