-- Take one login attempt from the fixed-window budgets of one limiter hash,
-- before the password is checked. Checking the counts first and counting the
-- failure after the check would let a burst of concurrent guesses all pass
-- the check; taking the attempt in the same step as the check cannot be raced.
--
-- A limiter hash holds several counts ("entries"), so that what an outsider
-- can make it count costs a hash field, never a key:
--   <entry> = '<failures> <window end, unix ms>' (a window starts with the entry's first failed attempt)
--   '~'     = '<failures> <until, unix ms>': the floor, the most failures an entry had when
--             it was evicted to keep the hash within its capacity (attempt_settle.lua);
--             an entry the hash does not hold counts as the floor, so evicting one never
--             gives it back failures. Entries named '*...' are never evicted and have no floor.
--   '@<attempt id>' = '<start, unix ms> <entry> ...': an attempt still being checked and
--             the entries of this hash it was taken from.
-- KEYS[1] the limiter hash
-- ARGV[1] now (unix ms)   ARGV[2] window (ms)   ARGV[3] attempt id
-- ARGV[4] an attempt older than this (ms) is taken to have died with its process
-- ARGV[5..] entry, attempts per window: the budgets to take from
-- Returns {1, 0} when the attempt is taken from every budget; {0, ms until the
-- latest refusing window ends} when failures alone spent one (429), with nothing
-- written; {2, 0} when attempts still in flight fill the rest of one: the caller
-- waits for them to settle and asks again, so correct passwords in flight never
-- turn each other away.
{{template "limiter.lua"}}
local now, window, stale = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
if not now or not window or window < 1 or not stale or not ARGV[3] or ARGV[3] == ''
  or string.find(ARGV[3], ' ', 1, true) or #ARGV < 6 or #ARGV % 2 ~= 0 then
  return redis.error_reply('ERR attempt: bad arguments')
end
for i = 5, #ARGV, 2 do
  local e, max = ARGV[i], tonumber(ARGV[i + 1])
  if e == '' or string.find(e, '^[@~]') or string.find(e, ' ', 1, true) or not max or max < 1 then
    return redis.error_reply('ERR attempt: bad arguments')
  end
end

local l = read_limiter(redis.call('HGETALL', KEYS[1]), now, stale)
local count, ends, live, gone = l.count, l.ends, l.live, l.gone
local floor, floorEnd = l.floor, l.floorEnd

local wait, busy = 0, false
for i = 5, #ARGV, 2 do
  local e, max = ARGV[i], tonumber(ARGV[i + 1])
  local n, ending = count[e], ends[e]
  if not n then
    if string.sub(e, 1, 1) ~= '*' and floor > 0 then n, ending = floor, floorEnd else n = 0 end
  end
  if n >= max then
    wait = math.max(wait, ending - now)
  elseif n + (live[e] or 0) >= max then
    busy = true
  end
end
if wait > 0 then return {0, wait} end
if busy then return {2, 0} end

-- The first write is one Redis refuses when out of memory, so an OOM
-- refuses the attempt whole.
local taken = {ARGV[1]}
for i = 5, #ARGV, 2 do taken[#taken + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], '@' .. ARGV[3], table.concat(taken, ' '))
if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
-- Every entry's window ends within one window of the last write, so the
-- hash lives as long as its newest window and not longer.
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
