-- submit: a new queued job, or the job the idempotency key already names.
-- ARGV: now, id, idempotency key ('' none), spec JSON, lane, ord, priority,
--       deadline ('' none), has callback URL (0/1), allows re-run (0/1).
-- Answer: {id, created (0/1)}.
local now = num(ARGV[1])
local id = ARGV[2]
if ARGV[3] ~= '' then
  local K = key('idem:' .. ARGV[3])
  if not redis.call('SET', K, id, 'NX') then
    local existing = redis.call('GET', K)
    if existing and redis.call('EXISTS', jkey(existing)) == 1 then
      return {existing, 0}
    end
    -- The key names a job that is gone (deleted by hand): the key is taken over.
    redis.call('SET', K, id)
  end
end
local J = jkey(id)
redis.call('HSET', J, 'id', id, 'spec', ARGV[4], 'lane', ARGV[5], 'ord', ARGV[6],
  'prio', ARGV[7], 'enq', int(now), 'retries', '0', 'att', '[]', 'sent', '0',
  'cbs', 'none', 'cburl', ARGV[9], 'rerun', ARGV[10])
if ARGV[8] ~= '' then
  redis.call('HSET', J, 'dl', ARGV[8])
end
redis.call('ZADD', key('all'), now, id)
enqueue(id, now)
return {id, 1}
