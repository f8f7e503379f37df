-- Record use of a session: last seen (ls), ip, and slide its idle expiry.
-- KEYS[1] session hash, KEYS[2] the user's session index
-- ARGV[1] now (unix ms)   ARGV[2] idle timeout (ms)   ARGV[3] client ip   ARGV[4] sid
-- Returns 1, or 0 when the session is gone: a touch never resurrects a revoked session.
{{template "slide.lua" .}}
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
if not (now and idle) or #ARGV ~= 4 then return redis.error_reply('ERR touch: bad arguments') end
local abs = tonumber(redis.call('HGET', KEYS[1], '{{.SessExpires}}'))
if not abs then return 0 end
-- Never past the absolute end fixed at login.
slide(KEYS[1], KEYS[2], ARGV[4], ARGV[1], idle, abs * 1000, ARGV[3])
return 1
