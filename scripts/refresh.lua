-- Refresh: spend a session's refresh token and make its successor current,
-- answer a retry within the grace, or end the session on reuse, in one step.
-- The caller has checked the token is one this service issued (its MAC), so
-- a generation older than the current one is a spent token, never a forgery.
-- KEYS[1] session hash, KEYS[2] the user's session index, KEYS[3] user hash,
-- KEYS[4] the user's history, KEYS[5] the user's use hash (touch.lua),
-- KEYS[6] (only with a DPoP proof) the record of its jti
-- ARGV[1] now (unix ms; Redis's own TIME when that is later)   ARGV[2] idle timeout (ms)   ARGV[3] reuse grace (ms)
-- ARGV[4] digest of the presented token   ARGV[5] its generation
-- ARGV[6] digest of its successor   ARGV[7] client ip   ARGV[8] sid
-- ARGV[9] thumbprint of the key of the request's valid DPoP proof ('' for none)
-- ARGV[10] how long that proof's jti is remembered (ms)
-- ARGV[11] the events to record when reuse ends the session (audit.Spec)
-- ARGV[12] how much longer than the session's end its hash lives (slack, ms; touch.lua)
-- Returns, writing nothing unless it says so:
--   {'OK', digest of the current token, fields...}: spent, its successor current, the session used
--   {'GRACE', digest of the current token, fields...}: spent within the grace (its
--     successor is the current one); the session used
--   {'REUSE'}: spent longer ago: the session is deleted and the reuse recorded
--   {'GONE'}: no such live session, or its account is gone or disabled
--   {'UNKNOWN'}: not a token of this session's chain (or the session has none)
--   {'DPOP'}: the session is bound to a DPoP key and the request has no valid
--     proof by it, or its proof's jti was seen before
-- fields: device name, platform, user agent, ip, created, last seen, absolute end,
--   DPoP key thumbprint (''), the account's username and creation time, the session's
--   aal, amr and auth_time ('' where it stores none).
{{template "record.lua"}}
{{template "slide.lua" .}}
{{template "use.lua"}}

-- Validate first: a script that errors keeps its earlier writes.
local now, idle, grace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local gen, proofTTL, slack = tonumber(ARGV[5]), tonumber(ARGV[10]), tonumber(ARGV[12])
if not (now and idle and grace and gen and proofTTL and slack) or #ARGV ~= 12 or (#KEYS ~= 5 and #KEYS ~= 6)
  or (ARGV[9] ~= '') ~= (#KEYS == 6) then
  return redis.error_reply('ERR refresh: bad arguments')
end
local spec = decode_spec(ARGV[11])
if not spec then return redis.error_reply('ERR refresh: bad arguments') end
-- A refresh queued behind a slow or frozen Redis runs after its caller gave
-- up (503) and retried: it is spent when it ran, not when it was asked, or
-- the retry would fall outside the grace and end a session nobody stole.
local t = redis.call('TIME')
now = math.max(now, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local nowms = string.format('%d', now)

local s = redis.call('HMGET', KEYS[1], '{{.SessRefresh}}', '{{.SessRefreshPrev}}', '{{.SessRefreshSpent}}',
  '{{.SessRefreshGen}}', '{{.SessDPoPKey}}', '{{.SessDevice}}', '{{.SessPlatform}}', '{{.SessUserAgent}}',
  '{{.SessCreated}}', '{{.SessExpires}}', '{{.SessAAL}}', '{{.SessAMR}}', '{{.SessAuthTime}}', '{{.SessLastSeen}}')
local abs = tonumber(s[10])
if not abs then return {'GONE'} end
-- The hash outlives the session's end by up to the slack: a session unused
-- for the idle timeout (its last use in the hash or in the use hash) is gone.
local last = math.max(tonumber(s[14]) or 0, last_use(redis.call('HGET', KEYS[5], ARGV[8])))
if now - last >= idle or now >= abs * 1000 then return {'GONE'} end
-- Disabling or deleting an account deletes its sessions in the same step;
-- this is the belt to those braces.
local u = redis.call('HMGET', KEYS[3], '{{.UserName}}', '{{.UserCreated}}', '{{.UserDisabled}}')
if not u[1] or u[3] == '1' then return {'GONE'} end
local cur = tonumber(s[4])
if not s[1] or not cur then return {'UNKNOWN'} end

local kind
if gen == cur and ARGV[4] == s[1] then
  kind = 'OK'
elseif gen == cur - 1 and ARGV[4] == s[2] and now - (tonumber(s[3]) or 0) <= grace then
  kind = 'GRACE'
elseif gen < cur then
  kind = 'REUSE'
else
  return {'UNKNOWN'}
end

-- A bound session answers only to its key, whatever the token: without the
-- key a thief can neither refresh nor burn the session by reusing a token.
if s[5] then
  if ARGV[9] ~= s[5] then return {'DPOP'} end
  -- The first write (SET refuses when out of memory, so an OOM refuses the
  -- refresh whole); a jti seen before writes nothing.
  if not redis.call('SET', KEYS[6], '1', 'NX', 'PX', proofTTL) then return {'DPOP'} end
end

if kind == 'REUSE' then
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[5], ARGV[8])
  redis.call('ZREM', KEYS[2], ARGV[8])
  record(KEYS[4], spec, 1)
  return {'REUSE'}
end
local current = s[1]
if kind == 'OK' then
  current = ARGV[6]
  redis.call('HSET', KEYS[1], '{{.SessRefreshPrev}}', s[1], '{{.SessRefreshSpent}}', nowms,
    '{{.SessRefresh}}', ARGV[6], '{{.SessRefreshGen}}', cur + 1)
end
slide(KEYS[1], KEYS[2], ARGV[8], nowms, idle + slack, abs * 1000, ARGV[7])
return {kind, current, s[6] or '', s[7] or '', s[8] or '', ARGV[7], s[9] or '0', nowms, s[10],
  s[5] or '', u[1], u[2] or '0', s[11] or '', s[12] or '', s[13] or ''}
