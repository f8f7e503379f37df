-- read_limiter reads a limiter hash (attempt.lua's layout) as it is at now:
-- the live entries' counts and window ends, the floor, how many evictable
-- entries it holds, and the fields that are dead (entries whose window
-- ended; with stale, attempts in flight longer than that). With stale, live
-- counts the attempts in flight on each entry; without it attempts are
-- passed over.
local function read_limiter(h, now, stale)
  local l = {count = {}, ends = {}, live = {}, gone = {}, floor = 0, floorEnd = 0, held = 0}
  for i = 1, #h, 2 do
    local f, v = h[i], h[i + 1]
    local c = string.sub(f, 1, 1)
    if c == '@' then
      if stale then
        local start, rest = string.match(v, '^(%d+)(.*)$')
        if not start or now - tonumber(start) > stale then
          l.gone[#l.gone + 1] = f
        else
          for e in string.gmatch(rest, '%S+') do l.live[e] = (l.live[e] or 0) + 1 end
        end
      end
    else
      local n, e = string.match(v, '^(%d+) (%d+)$')
      n, e = tonumber(n), tonumber(e)
      if not n or e <= now then
        l.gone[#l.gone + 1] = f
      elseif c == '~' then
        l.floor, l.floorEnd = n, e
      else
        l.count[f], l.ends[f] = n, e
        if c ~= '*' then l.held = l.held + 1 end
      end
    end
  end
  return l
end
