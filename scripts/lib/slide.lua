-- slide records use of a session at now (unix ms, a string) from ip in its
-- hash: last seen and ip, and the hash's expiry slid to now + life (ms) but
-- never past abs, its absolute end (unix ms); life is the idle timeout and
-- its slack, so the hash outlives the session's end (touch.lua); its index
-- entry follows, and the index lives as long as its longest-lived member.
-- The hash holds its own expiry too, so a replica knows from its cached read
-- when a touch needs no rewrite of it (sessions/touches.go). Returns the new
-- expiry.
local function slide(sess, index, sid, now, life, abs, ip)
  local expiry = math.min(tonumber(now) + life, abs)
  redis.call('HSET', sess, '{{.SessLastSeen}}', now, '{{.SessIP}}', ip, '{{.SessHashExpires}}', expiry)
  redis.call('PEXPIREAT', sess, expiry)
  redis.call('ZADD', index, expiry, sid)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', index, top[2])
  return expiry
end
