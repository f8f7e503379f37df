-- Register a passkey: its record joins the account's credentials, the
-- challenge it answered is marked spent, and passkey.added is recorded, in
-- one step. Every check comes first, so a refusal writes nothing.
-- KEYS[1] user hash, KEYS[2] the user's passkeys, KEYS[3] the challenge's spent mark,
-- KEYS[4] the user's history
-- ARGV[1] the credential id (its field)   ARGV[2] its record   ARGV[3] how long the mark lives (ms)
-- ARGV[4] the most passkeys an account may have   ARGV[5] the events (audit.Spec)
-- Returns 1 when added; 0 when the challenge was spent already; -1 when there is no account;
-- -2 when it is disabled; -3 when the credential is registered already; -4 when the account
-- has the most passkeys it may.
{{template "record.lua"}}
if #ARGV ~= 5 or ARGV[1] == '' or ARGV[2] == '' or not tonumber(ARGV[3]) or tonumber(ARGV[3]) <= 0
  or not tonumber(ARGV[4]) then
  return redis.error_reply('ERR passkey_add: bad arguments')
end
local spec = decode_spec(ARGV[5])
if not spec then return redis.error_reply('ERR passkey_add: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], '{{.UserPending}}') == 1 then return -1 end
if redis.call('HGET', KEYS[1], '{{.UserDisabled}}') == '1' then return -2 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return -3 end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then return -4 end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
record(KEYS[4], spec, 0)
return 1
