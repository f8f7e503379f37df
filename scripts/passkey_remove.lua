-- Remove one passkey of an account, or every one, and record passkey.removed,
-- in one step.
-- KEYS[1] user hash, KEYS[2] the user's passkeys, KEYS[3] the user's history
-- ARGV[1] the credential id, or '' for every one   ARGV[2] the events (audit.Spec);
--   {count} in them becomes the number removed
-- Returns how many were removed (nothing is recorded when none was), or -1 with nothing
-- written when there is no account.
{{template "record.lua"}}
if #ARGV ~= 2 then return redis.error_reply('ERR passkey_remove: bad arguments') end
local spec = decode_spec(ARGV[2])
if not spec then return redis.error_reply('ERR passkey_remove: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n
if ARGV[1] == '' then
  n = redis.call('HLEN', KEYS[2])
  redis.call('DEL', KEYS[2])
else
  n = redis.call('HDEL', KEYS[2], ARGV[1])
end
if n > 0 then record(KEYS[3], spec, n) end
return n
