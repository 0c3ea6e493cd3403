-- lease: the steps of a worker holding a job's lease.
-- ARGV: op, now, id, worker, then per op:
--   heartbeat  lease ms
--   sent       -
--   unsent     -
--   complete   provider, model, usage JSON ('' none), cost JSON ('' none), results JSON, attempts JSON
--   fail       error JSON, attempts JSON
--   retry      not before (ms), error JSON, attempts JSON
--   release    not before ('' none)
-- Answer: {code} or, for complete and fail, {code, job fields}; code LOST when the lease is
-- not held, WRONG (with the state) when a sent job is handed back.
local op = ARGV[1]
local now = num(ARGV[2])
local id = ARGV[3]
local worker = ARGV[4]
local J = jkey(id)
if not leased(id, worker, now) then
  return {LOST}
end
if op == 'heartbeat' then
  local exp = now + num(ARGV[5])
  redis.call('HSET', J, 'lexp', int(exp))
  redis.call('ZADD', key('leases'), exp, id)
  return {OK}
elseif op == 'sent' then
  redis.call('HSET', J, 'sent', '1')
  return {OK}
elseif op == 'unsent' then
  redis.call('HSET', J, 'sent', '0')
  return {OK}
elseif op == 'complete' then
  redis.call('HSET', J, 'provider', ARGV[5], 'model', ARGV[6], 'results', ARGV[9])
  if ARGV[7] == '' then redis.call('HDEL', J, 'usage') else redis.call('HSET', J, 'usage', ARGV[7]) end
  if ARGV[8] == '' then redis.call('HDEL', J, 'cost') else redis.call('HSET', J, 'cost', ARGV[8]) end
  append_attempts(id, ARGV[10])
  redis.call('HDEL', J, 'error')
  finish(id, 'succeeded', now)
  return {OK, redis.call('HGETALL', J)}
elseif op == 'fail' then
  append_attempts(id, ARGV[6])
  redis.call('HSET', J, 'error', ARGV[5])
  finish(id, 'failed', now)
  return {OK, redis.call('HGETALL', J)}
elseif op == 'retry' then
  append_attempts(id, ARGV[7])
  redis.call('HSET', J, 'error', ARGV[6], 'sent', '0', 'nb', ARGV[5])
  redis.call('HINCRBY', J, 'retries', 1)
  clear_lease(id)
  enqueue(id, now)
  return {OK}
elseif op == 'release' then
  if redis.call('HGET', J, 'sent') == '1' then
    return {WRONG, 'running'}
  end
  if ARGV[5] == '' then redis.call('HDEL', J, 'nb') else redis.call('HSET', J, 'nb', ARGV[5]) end
  clear_lease(id)
  enqueue(id, now)
  return {OK}
end
return redis.error_reply('unknown lease operation ' .. tostring(op))
