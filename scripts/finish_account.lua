-- Finish a new account: clear its pending mark, keep its record for good and
-- record account.created in its history, in one step. Its claim, listing and
-- admin-set membership were written before (other slots).
-- KEYS[1] user hash, KEYS[2] the user's history   ARGV[1] the events (audit.Spec)
-- Returns 1 when finished now, 2 when it was finished already, 0 when there
-- is no record (its creation ran out of time, or was abandoned).
{{template "record.lua"}}
if #ARGV ~= 1 then return redis.error_reply('ERR finish_account: bad arguments') end
local spec = decode_spec(ARGV[1])
if not spec then return redis.error_reply('ERR finish_account: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], '{{.UserPending}}') == 0 then return 2 end
-- The event first: XADD is a write Redis refuses when out of memory, so an
-- OOM leaves the account unfinished rather than finished without its event.
record(KEYS[2], spec, 0)
redis.call('HDEL', KEYS[1], '{{.UserPending}}')
redis.call('PERSIST', KEYS[1])
return 1
