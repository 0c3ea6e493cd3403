-- reclaim: running jobs whose lease ran out (never sent or allowing a re-run: queued again;
-- sent: failed, possibly billed) and queued jobs past their deadline (expired), at most
-- `batch` of each kind (the caller repeats while a list is full).
-- ARGV: now, batch, possibly-billed error JSON, expired error JSON.
-- Answer: {requeued ids, failed ids, expired ids}.
local now = num(ARGV[1])
local batch = num(ARGV[2])
local requeued, failed, expired = {}, {}, {}
local gone = redis.call('ZRANGEBYSCORE', key('leases'), '-inf', '(' .. int(now), 'LIMIT', 0, batch)
for _, id in ipairs(gone) do
  local J = jkey(id)
  local v = redis.call('HMGET', J, 'state', 'sent', 'rerun')
  if v[1] ~= 'running' then
    redis.call('ZREM', key('leases'), id)
  elseif v[2] == '1' and v[3] ~= '1' then
    redis.call('HSET', J, 'error', ARGV[3])
    finish(id, 'failed', now)
    failed[#failed + 1] = id
  else
    if v[2] == '1' then
      redis.call('HINCRBY', J, 'retries', 1)
    end
    redis.call('HSET', J, 'sent', '0')
    clear_lease(id)
    enqueue(id, now)
    requeued[#requeued + 1] = id
  end
end
tidy(now)
local over = redis.call('ZRANGEBYSCORE', key('overdue'), '-inf', '+inf', 'LIMIT', 0, batch)
for _, id in ipairs(over) do
  if redis.call('HGET', jkey(id), 'state') == 'queued' then
    redis.call('HSET', jkey(id), 'error', ARGV[4])
    finish(id, 'expired', now)
    expired[#expired + 1] = id
  else
    redis.call('ZREM', key('overdue'), id)
  end
end
return {requeued, failed, expired}
