-- Accept a passkey assertion that verified: its challenge is marked spent
-- (once, across replicas), and its signature counter must have moved forward
-- (W3C WebAuthn §7.2 step 21; two zeros mean an authenticator without a
-- counter). A counter that did not is refused and recorded as passkey.cloned,
-- the stored counter kept; otherwise the counter and the time of use are
-- stored. A record is "<counter> <last used, unix ms> <the rest>".
-- KEYS[1] user hash, KEYS[2] the user's passkeys, KEYS[3] the challenge's spent mark,
-- KEYS[4] the user's history
-- ARGV[1] the credential id   ARGV[2] the assertion's counter   ARGV[3] now (unix ms)
-- ARGV[4] how long the mark lives (ms)   ARGV[5] the passkey.cloned event (audit.Spec)
-- Returns 1 when accepted, 2 when accepted but the account is disabled; 0 when the challenge
-- was spent already, -1 when there is no account, -2 when there is no such credential (removed
-- meanwhile), -3 when the counter did not move forward.
{{template "record.lua"}}
if #ARGV ~= 5 or ARGV[1] == '' or not tonumber(ARGV[2]) or not tonumber(ARGV[3])
  or not tonumber(ARGV[4]) or tonumber(ARGV[4]) <= 0 then
  return redis.error_reply('ERR passkey_use: bad arguments')
end
local spec = decode_spec(ARGV[5])
if not spec then return redis.error_reply('ERR passkey_use: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], '{{.UserPending}}') == 1 then return -1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local v = redis.call('HGET', KEYS[2], ARGV[1])
if not v then return -2 end
local count, _, rest = string.match(v, '^(%d+) (%d+) (.*)$')
if not count then return redis.error_reply('ERR passkey_use: a malformed record') end
local new, old = tonumber(ARGV[2]), tonumber(count)
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
if (new ~= 0 or old ~= 0) and new <= old then
  record(KEYS[4], spec, 0)
  return -3
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. rest)
if redis.call('HGET', KEYS[1], '{{.UserDisabled}}') == '1' then return 2 end
return 1
