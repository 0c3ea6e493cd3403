-- Shared helpers of the job-queue scripts (prepended to each script).
--
-- KEYS[1] is the queue's hash tag `{prefix:queue}`. Every other key is built from it, so all
-- of them hash to the slot the script is routed to (one server, Redis Cluster, Valkey).
-- Times are wall-clock Unix milliseconds passed by the caller (the backend's clock).
--
-- A job is the hash `job:<id>`; its fields are listed in `mod.rs`. Indexes:
--   all            zset  every job, scored by submission time (list of any state)
--   st:<state>     zset  the jobs in a state, scored by submission time (list, stats)
--   ready:<lane>   zset  claimable jobs of a lane, all scored 0, member `ord` (priority
--                        inverted, submission time, id) so ZRANGEBYLEX gives the next one
--   lanes          set   lanes whose ready set is not empty
--   delayed        zset  queued jobs waiting for their retry time (score: not before)
--   deadlines      zset  queued jobs with a deadline not yet seen passed (score: deadline)
--   overdue        zset  queued jobs whose deadline passed, not claimable, to be expired
--   leases         zset  running jobs by lease expiry
--   cb             zset  ended jobs whose callback is pending, by next try
--   idem:<key>     string the job an idempotency key names
local B = KEYS[1]
local OK, LOST, MISSING, WRONG = 0, 1, 2, 3
-- How many delayed or overdue jobs one call moves at most (bounds a script's run time; the
-- next call moves the rest).
local TIDY = 1000

local function key(s)
  return B .. ':' .. s
end

local function jkey(id)
  return B .. ':job:' .. id
end

local function num(x)
  return tonumber(x) or 0
end

local function int(x)
  return string.format('%d', x)
end

local function field(id, f)
  return redis.call('HGET', jkey(id), f)
end

-- Takes the job out of its lane's ready set (and the lane out of `lanes` once empty).
local function ready_rem(id)
  local v = redis.call('HMGET', jkey(id), 'lane', 'ord')
  if v[1] and v[2] then
    local R = key('ready:' .. v[1])
    redis.call('ZREM', R, v[2])
    if redis.call('ZCARD', R) == 0 then
      redis.call('SREM', key('lanes'), v[1])
    end
  end
end

local function ready_add(id)
  local v = redis.call('HMGET', jkey(id), 'lane', 'ord')
  redis.call('ZADD', key('ready:' .. v[1]), 0, v[2])
  redis.call('SADD', key('lanes'), v[1])
end

-- Sets the job's state and moves it between the per-state sets.
local function move_state(id, to)
  local J = jkey(id)
  local v = redis.call('HMGET', J, 'state', 'enq')
  if v[1] then
    redis.call('ZREM', key('st:' .. v[1]), id)
  end
  redis.call('ZADD', key('st:' .. to), v[2], id)
  redis.call('HSET', J, 'state', to)
end

-- Makes the job queued: claimable now, or delayed until its `nb`; a deadline is watched.
local function enqueue(id, now)
  move_state(id, 'queued')
  local v = redis.call('HMGET', jkey(id), 'nb', 'dl')
  local nb, dl = tonumber(v[1]), tonumber(v[2])
  if dl then
    redis.call('ZADD', key('deadlines'), dl, id)
  end
  if nb and nb > now then
    redis.call('ZADD', key('delayed'), nb, id)
  elseif not (dl and dl <= now) then
    ready_add(id)
  end
end

-- Takes a queued job out of every queued index.
local function unqueue(id)
  ready_rem(id)
  redis.call('ZREM', key('delayed'), id)
  redis.call('ZREM', key('deadlines'), id)
  redis.call('ZREM', key('overdue'), id)
end

local function clear_lease(id)
  redis.call('HDEL', jkey(id), 'owner', 'lexp')
  redis.call('ZREM', key('leases'), id)
end

-- Whether the job is running under a lease `worker` holds (not run out at `now`).
local function leased(id, worker, now)
  local v = redis.call('HMGET', jkey(id), 'state', 'owner', 'lexp')
  return v[1] == 'running' and v[2] == worker and num(v[3]) >= now
end

-- Appends a JSON array of attempts (as serde writes it: compact) to the job's array.
local function append_attempts(id, new)
  if new == nil or new == '' or new == '[]' then
    return
  end
  local J = jkey(id)
  local old = redis.call('HGET', J, 'att')
  if not old or old == '' or old == '[]' then
    redis.call('HSET', J, 'att', new)
  else
    redis.call('HSET', J, 'att', string.sub(old, 1, -2) .. ',' .. string.sub(new, 2))
  end
end

-- Ends the job in state `to` at `now`; its callback becomes pending when it has a URL.
local function finish(id, to, now)
  local J = jkey(id)
  if redis.call('HGET', J, 'state') == 'queued' then
    unqueue(id)
  end
  clear_lease(id)
  move_state(id, to)
  redis.call('HSET', J, 'ended', int(now))
  redis.call('HDEL', J, 'nb')
  if redis.call('HGET', J, 'cburl') == '1' then
    redis.call('HSET', J, 'cbs', 'pending', 'cba', '0', 'cbn', int(now))
    redis.call('HDEL', J, 'cbe', 'cbt', 'cbc')
    redis.call('ZADD', key('cb'), now, id)
  else
    redis.call('HSET', J, 'cbs', 'none')
    redis.call('HDEL', J, 'cba', 'cbn', 'cbe', 'cbt', 'cbc')
    redis.call('ZREM', key('cb'), id)
  end
end

-- Moves delayed jobs whose time came to their ready set, and queued jobs whose deadline
-- passed out of it (to `overdue`, where `reclaim` expires them), at most TIDY of each.
local function tidy(now)
  local due = redis.call('ZRANGEBYSCORE', key('delayed'), '-inf', now, 'LIMIT', 0, TIDY)
  for _, id in ipairs(due) do
    redis.call('ZREM', key('delayed'), id)
    local dl = tonumber(field(id, 'dl'))
    if not (dl and dl <= now) then
      ready_add(id)
    end
  end
  local past = redis.call('ZRANGEBYSCORE', key('deadlines'), '-inf', now, 'LIMIT', 0, TIDY)
  for _, id in ipairs(past) do
    redis.call('ZREM', key('deadlines'), id)
    redis.call('ZREM', key('delayed'), id)
    ready_rem(id)
    redis.call('ZADD', key('overdue'), num(field(id, 'dl')), id)
  end
end
