-- Spend a recovery code (each works once) and record recovery_code.used.
-- KEYS[1] the user's recovery-code set, KEYS[2] the user's history
-- ARGV[1] the code's digest   ARGV[2] the events (audit.Spec)
-- Returns the number of codes left, or -1 when the code is not one of them.
{{template "record.lua"}}
local spec = decode_spec(ARGV[2])
if not spec or ARGV[1] == '' then return redis.error_reply('ERR recovery_use: bad arguments') end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return -1 end
record(KEYS[2], spec, 0)
return redis.call('SCARD', KEYS[1])
