-- slide records use of a session at now (unix ms, a string) from ip: last
-- seen and ip, and its expiry slid to now + idle (ms) but never past abs,
-- its absolute end (unix ms); its index entry follows, and the index lives
-- as long as its longest-lived member. Returns the new expiry.
local function slide(sess, index, sid, now, idle, abs, ip)
  local expiry = math.min(tonumber(now) + idle, abs)
  redis.call('HSET', sess, '{{.SessLastSeen}}', now, '{{.SessIP}}', ip)
  redis.call('PEXPIREAT', sess, expiry)
  redis.call('ZADD', index, expiry, sid)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', index, top[2])
  return expiry
end
