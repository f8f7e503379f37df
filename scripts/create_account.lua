-- Write a new account's record, marked pending: until finish_account clears
-- the mark it is no account to anyone (not found, cannot sign in), and it
-- expires by itself if its creation never finishes. The username was claimed
-- before (another slot); the listing and the admin set follow (other slots).
-- KEYS[1] user hash
-- ARGV[1] how long the record lives unfinished (ms)   ARGV[2..] field, value pairs of the account
-- Returns 1, or 0 with nothing written when the account already exists.
local ttl = tonumber(ARGV[1])
if not ttl or ttl <= 0 or #ARGV < 3 or #ARGV % 2 ~= 1 then
  return redis.error_reply('ERR create_account: bad arguments')
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], '{{.UserPending}}', '1', unpack(ARGV, 2, #ARGV))
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
