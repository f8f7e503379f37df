-- Record a step-up of a live session, in place: auth_time now, and the aal
-- and methods raised (never lowered: a password given again to a two-factor
-- session keeps its second factor).
-- KEYS[1] session hash   KEYS[2] the user's history
-- ARGV[1] now (unix s)   ARGV[2] aal   ARGV[3] methods, space-separated
-- ARGV[4] the event to record (audit.Spec)
-- Returns {aal, methods} as stored, or {} when the session is gone.
{{template "record.lua"}}
local aal = tonumber(ARGV[2])
if not (tonumber(ARGV[1]) and aal) or #ARGV ~= 4 then return redis.error_reply('ERR reauth: bad arguments') end
local spec = decode_spec(ARGV[4])
if not spec then return redis.error_reply('ERR reauth: bad arguments') end
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local cur = redis.call('HMGET', KEYS[1], '{{.SessAAL}}', '{{.SessAMR}}')
local have = tonumber(cur[1] or '1') or 1
local methods = cur[2] or 'pwd'
if aal > have then
  methods = ARGV[3]
  redis.call('HSET', KEYS[1], '{{.SessAAL}}', aal, '{{.SessAMR}}', methods)
  have = aal
end
redis.call('HSET', KEYS[1], '{{.SessAuthTime}}', ARGV[1])
record(KEYS[2], spec, 0)
return {tostring(have), methods}
