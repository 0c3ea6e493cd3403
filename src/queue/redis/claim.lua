-- claim: the due queued job of highest priority, then oldest, among the given lanes.
-- ARGV: now, worker, lease ms, ord prefix length, then the lanes (none given: every lane).
-- Answer: the job's fields (flat), or an empty array.
local now = num(ARGV[1])
local worker = ARGV[2]
local lease = num(ARGV[3])
local plen = num(ARGV[4])
tidy(now)
local lanes = {}
if #ARGV > 4 then
  for i = 5, #ARGV do
    lanes[#lanes + 1] = ARGV[i]
  end
else
  lanes = redis.call('SMEMBERS', key('lanes'))
end
-- Each round takes the best head among the lanes; a head that cannot be claimed (its
-- deadline passed, or a dangling entry) is taken out and the round repeats.
for _ = 1, 1000 do
  local best
  for _, lane in ipairs(lanes) do
    local top = redis.call('ZRANGEBYLEX', key('ready:' .. lane), '-', '+', 'LIMIT', 0, 1)[1]
    if top and (best == nil or top < best) then
      best = top
    end
  end
  if not best then
    return {}
  end
  local id = string.sub(best, plen + 1)
  local J = jkey(id)
  local v = redis.call('HMGET', J, 'state', 'dl', 'lane')
  if v[1] ~= 'queued' then
    -- Dangling (the record is gone or not queued): drop the entry.
    for _, lane in ipairs(lanes) do
      redis.call('ZREM', key('ready:' .. lane), best)
    end
  elseif v[2] and num(v[2]) <= now then
    ready_rem(id)
    redis.call('ZREM', key('deadlines'), id)
    redis.call('ZADD', key('overdue'), num(v[2]), id)
  else
    unqueue(id)
    move_state(id, 'running')
    local exp = now + lease
    redis.call('HSET', J, 'owner', worker, 'lexp', int(exp), 'sent', '0')
    if not redis.call('HGET', J, 'started') then
      redis.call('HSET', J, 'started', int(now))
    end
    redis.call('HDEL', J, 'nb')
    redis.call('ZADD', key('leases'), exp, id)
    return redis.call('HGETALL', J)
  end
end
return {}
