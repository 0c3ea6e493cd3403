-- callback: a job's callback delivery state, and the due deliveries.
-- ARGV: op, now, then per op:
--   set   id, state, attempts, next at, last error, at, status ('' for each absent one)
--         → {OK} or {MISSING}
--   due   hold until (ms), limit → flat array of job field arrays (as they were before
--         their next try was pushed to `hold until`)
local op = ARGV[1]
local now = num(ARGV[2])
if op == 'set' then
  local id = ARGV[3]
  local J = jkey(id)
  if redis.call('EXISTS', J) == 0 then
    return {MISSING}
  end
  local names = {'cbs', 'cba', 'cbn', 'cbe', 'cbt', 'cbc'}
  for i, f in ipairs(names) do
    local v = ARGV[3 + i]
    if v == '' then redis.call('HDEL', J, f) else redis.call('HSET', J, f, v) end
  end
  if ARGV[4] == 'pending' then
    redis.call('ZADD', key('cb'), num(ARGV[6]), id)
  else
    redis.call('ZREM', key('cb'), id)
  end
  return {OK}
elseif op == 'due' then
  local hold = num(ARGV[3])
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('cb'), '-inf', now, 'LIMIT', 0, num(ARGV[4]))) do
    local J = jkey(id)
    if redis.call('HGET', J, 'cbs') == 'pending' then
      out[#out + 1] = redis.call('HGETALL', J)
      redis.call('HSET', J, 'cbn', int(hold))
      redis.call('ZADD', key('cb'), hold, id)
    else
      redis.call('ZREM', key('cb'), id)
    end
  end
  return out
end
return redis.error_reply('unknown callback operation ' .. tostring(op))
