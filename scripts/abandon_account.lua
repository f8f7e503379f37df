-- Delete the record of a new account whose creation failed, unless it
-- finished after all (a reply lost after finish_account ran).
-- KEYS[1] user hash
-- Returns 1 when deleted, 0 when there is no record, 2 when it is finished (kept).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], '{{.UserPending}}') == 0 then return 2 end
redis.call('DEL', KEYS[1])
return 1
