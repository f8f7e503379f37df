-- Spend a TOTP code: accepted only when its time step is later than the last
-- one accepted for the account (RFC 6238 §5.2: a code is valid once), and
-- only while the secret it was checked against is still the account's.
-- KEYS[1] user hash   ARGV[1] the sealed secret checked   ARGV[2] the code's time step
-- Returns 1 when spent, 0 when refused (replayed, or the factor changed).
if not tonumber(ARGV[2]) or ARGV[1] == '' then return redis.error_reply('ERR totp_use: bad arguments') end
if redis.call('HGET', KEYS[1], '{{.UserTOTP}}') ~= ARGV[1] then return 0 end
local last = tonumber(redis.call('HGET', KEYS[1], '{{.UserTOTPStep}}') or '-1')
if tonumber(ARGV[2]) <= last then return 0 end
redis.call('HSET', KEYS[1], '{{.UserTOTPStep}}', ARGV[2])
return 1
