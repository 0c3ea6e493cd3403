-- Shared helpers of the image-router Redis store scripts (prepended to each script).
-- Times are integer microseconds on the deciding clock: the server's (TIME) or the
-- router's (passed as an argument). Amounts of money are integer nano-USD.
local WINDOW = 60000000
local MINUTE = 60000000.0

local function num(x)
  return tonumber(x) or 0
end

local function clock(arg)
  if arg == nil or arg == '' or arg == 'server' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end

local function fmt(f)
  return string.format('%.17g', f)
end

-- A window's state: the sums of its log and what headers and 429s recorded.
local FIELDS = {'n', 'img', 'tok', 'srpm', 'stpm', 'hr', 'hru', 'ht', 'htu', 'b1', 'b2', 'b3', 'fa', 'da', 'seen'}

local function load(M)
  local v = redis.call('HMGET', M, unpack(FIELDS))
  local s = {}
  for i, f in ipairs(FIELDS) do s[f] = num(v[i]) end
  if v[13] == false or v[13] == nil then s.fa = 1.0 end
  if v[15] == false or v[15] == nil then s.seen = nil end
  return s
end

local function save(M, Z, s, keep_ms)
  local args = {}
  for _, f in ipairs(FIELDS) do
    local v = s[f]
    if v ~= nil then
      args[#args + 1] = f
      if f == 'fa' then args[#args + 1] = fmt(v) else args[#args + 1] = string.format('%d', v) end
    end
  end
  redis.call('HSET', M, unpack(args))
  redis.call('PEXPIRE', M, keep_ms)
  if redis.call('EXISTS', Z) == 1 then redis.call('PEXPIRE', Z, keep_ms) end
end

-- A log member: `id:images:tokens:admitted` (admission time, µs; absent in members an older
-- script wrote).
local function parse_member(m)
  local id, im, tk, adm = string.match(m, '^(%d+):(%d+):(%d+):?(%d*)$')
  return id, tonumber(im) or 0, tonumber(tk) or 0, tonumber(adm)
end

-- An entry's score: its settlement time once settled; while the request is in flight, its
-- admission time plus the reservation's time-to-live (admit.lua), a time in the future, so
-- "in flight" is simply "scored after now", and an entry whose reservation nobody ended
-- (a crashed instance) leaves by itself once its time-to-live has passed.
local function in_flight(score, now)
  return score > now
end

-- Drops the log entries that left the window and the held capacity that expired. A settled
-- entry leaves 60 s after its settlement; a request still in flight never leaves by itself
-- (the provider counted it at some time before its answer, not known yet). The log and its
-- running sums change together here: the sums are written back at once (not left to the
-- caller's save, which a dry look or an early answer skips), or a pruned log would keep
-- counting requests that are gone and the window would never have room again. The request
-- count is the log's size (exact, O(1)); an empty log has no images or tokens (this also
-- heals sums left inconsistent by an older script).
local function prune(Z, M, s, now)
  local old = redis.call('ZRANGEBYSCORE', Z, '-inf', now - WINDOW)
  local before = {s.n, s.img, s.tok}
  if #old > 0 then
    for _, m in ipairs(old) do
      local _, im, tk = parse_member(m)
      s.img = math.max(0, s.img - im)
      s.tok = math.max(0, s.tok - tk)
    end
    redis.call('ZREMRANGEBYSCORE', Z, '-inf', now - WINDOW)
  end
  s.n = redis.call('ZCARD', Z)
  if s.n == 0 then s.img = 0; s.tok = 0 end
  if s.n ~= before[1] or s.img ~= before[2] or s.tok ~= before[3] then
    redis.call('HSET', M, 'n', string.format('%d', s.n), 'img', string.format('%d', s.img),
      'tok', string.format('%d', s.tok))
    if redis.call('PTTL', M) < 0 then redis.call('PEXPIRE', M, 3600000) end
  end
  if s.hru <= now then s.hr = 0; s.hru = 0 end
  if s.htu <= now then s.ht = 0; s.htu = 0 end
end

-- When a log entry scored `score` leaves the window: 60 s after its settlement, or, in
-- flight, no earlier than 60 s from now (were it answered now).
local function departure(score, now)
  if in_flight(score, now) then return now + WINDOW end
  return score + WINDOW
end

-- The limits: L = {rpm, ipm, tpm (0: none), margin, shared, decrease, min_factor, recovery}.
local function limits_from(argv, i)
  return {
    rpm = num(argv[i]), ipm = num(argv[i + 1]), tpm = num(argv[i + 2]),
    margin = tonumber(argv[i + 3]) or 1.0, shared = argv[i + 4] == '1',
    decrease = tonumber(argv[i + 5]) or 0.5, min_factor = tonumber(argv[i + 6]) or 0.1,
    recovery = tonumber(argv[i + 7]) or 0.1,
  }
end
local LIMIT_ARGS = 8

local function factor(s, L, now)
  if s.fa >= 1.0 then return 1.0 end
  local minutes = math.max(0, now - s.da) / MINUTE
  return math.min(1.0, s.fa + L.recovery * minutes)
end

local function minpos(a, b)
  if a > 0 and b > 0 then return math.min(a, b) end
  if a > 0 then return a end
  return b
end

local function scaled(l, f)
  if l <= 0 then return 0 end
  return math.max(1, math.floor(l * f))
end

local function margin(s, L, now)
  if L.shared and s.seen ~= nil and now < s.seen + WINDOW then return 1.0 end
  return L.margin
end

-- Effective limits (0: unlimited) at margin × back-off factor (images: configured margin).
local function effective(s, L, now, with_factor)
  local f = 1.0
  if with_factor then f = factor(s, L, now) end
  local m = margin(s, L, now)
  return {
    rpm = scaled(minpos(L.rpm, s.srpm), m * f),
    ipm = scaled(L.ipm, L.margin * f),
    tpm = scaled(minpos(L.tpm, s.stpm), m * f),
  }
end

local function block(s, now)
  local best, why = 0, 0
  for i, f in ipairs({'b1', 'b2', 'b3'}) do
    if s[f] > now and s[f] > best then best = s[f]; why = i end
  end
  return best, why
end

local function used_req(s) return s.n + s.hr end
local function used_tok(s) return s.tok + s.ht end

-- Log entries read per call while walking the log in `room_at`.
local CHUNK = 64

-- The earliest time a request of `images` and `tokens` fits at the limits `e`.
--
-- Walks the departures earliest first and stops at the first one after which the request
-- fits. The log's score order is its departure order (entries in flight score after every
-- settled one and all leave "a minute from now", see `departure`), so the log is read in
-- chunks from its head and only the held capacity (at most two events) is merged in:
-- a full window usually needs one departure, so this reads one chunk, where reading and
-- sorting the whole log cost O(n log n) on every refusal and every answer of a full window
-- (about 10 ms a call at 5,000 entries, which made Redis itself the bottleneck of a
-- 5,000 RPM drain).
local function room_at(Z, s, now, images, tokens, e)
  local reqs, imgs, toks = used_req(s), s.img, used_tok(s)
  local function fits()
    return (e.rpm == 0 or reqs < e.rpm) and (e.ipm == 0 or imgs + images <= e.ipm)
      and (e.tpm == 0 or toks + tokens <= e.tpm)
  end
  local held = {}
  if s.hr > 0 then held[#held + 1] = {s.hru, s.hr, 0, 0} end
  if s.ht > 0 then held[#held + 1] = {s.htu, 0, 0, s.ht} end
  table.sort(held, function(a, b) return a[1] < b[1] end)
  local h = 1
  local function apply(ev)
    reqs = reqs - ev[2]; imgs = imgs - ev[3]; toks = toks - ev[4]
    return fits()
  end
  local start = 0
  while true do
    local log = redis.call('ZRANGE', Z, start, start + CHUNK - 1, 'WITHSCORES')
    if #log == 0 then break end
    for i = 1, #log, 2 do
      local t = departure(tonumber(log[i + 1]), now)
      while held[h] ~= nil and held[h][1] <= t do
        if apply(held[h]) then return math.max(held[h][1], now) end
        h = h + 1
      end
      local _, im, tk = parse_member(log[i])
      if apply({t, 1, im, tk}) then return math.max(t, now) end
    end
    start = start + CHUNK
  end
  while held[h] ~= nil do
    if apply(held[h]) then return math.max(held[h][1], now) end
    h = h + 1
  end
  -- Nothing known frees enough (limits lowered below what is in flight): the earliest any
  -- room can come back is a minute from now.
  return now + WINDOW
end

-- The window check: nil when the request fits now, else {status, x1, x2, x3}.
local function check(Z, s, L, now, images, tokens)
  local ceil = effective(s, L, now, false)
  if ceil.ipm > 0 and images > ceil.ipm then return {3, images, ceil.ipm, 0} end
  if ceil.tpm > 0 and tokens > ceil.tpm then return {4, tokens, ceil.tpm, 0} end
  local until_, why = block(s, now)
  if until_ > 0 then return {5, why, until_, 0} end
  local e = effective(s, L, now, true)
  local req_full = e.rpm > 0 and used_req(s) + 1 > e.rpm
  local img_full = e.ipm > 0 and s.img + images > e.ipm
  local tok_full = e.tpm > 0 and used_tok(s) + tokens > e.tpm
  if not (req_full or img_full or tok_full) then return nil end
  local kind, value
  if req_full then kind, value = 1, e.rpm
  elseif img_full then kind, value = 2, e.ipm
  else kind, value = 3, e.tpm end
  return {6, kind, value, room_at(Z, s, now, images, tokens, e)}
end

-- Requests and tokens of the log entries admitted no later than `admitted` (all for nil):
-- by admission time, not score (a settled entry's score is its settlement time).
--
-- Only entries scored after `admitted` are read: an entry's score is never before its
-- admission (its settlement, or, in flight, the end of its time-to-live), so every entry
-- scored at or before `admitted` was admitted by then and counts. Those read are the ones
-- settled or still in flight since this request was admitted (its flight time's worth of
-- traffic), not the whole window: reading the whole log on every settlement cost O(n) per
-- answer (milliseconds at thousands of entries, on a single-threaded server). The sums are
-- the log's running sums (`s.n`, `s.tok`, kept with the log) less the later entries.
local function ours_up_to(Z, s, admitted)
  if admitted == nil then return s.n, s.tok end
  local later = redis.call('ZRANGEBYSCORE', Z, '(' .. string.format('%d', admitted), '+inf')
  local n, toks = s.n, s.tok
  for _, m in ipairs(later) do
    local _, _, tk, adm = parse_member(m)
    if adm == nil or adm > admitted then
      n = n - 1
      toks = toks - tk
    end
  end
  return math.max(0, n), math.max(0, toks)
end

-- Applies rate-limit headers H = {lr, lt, rr, rt, resr, rest} (-1: absent) as the
-- in-process limiter's observe_headers does.
local function observe(Z, M, s, L, now, H, score)
  local lr, lt, rr, rt, resr, rest = H[1], H[2], H[3], H[4], H[5], H[6]
  if lr < 0 and lt < 0 and rr < 0 and rt < 0 and resr < 0 and rest < 0 then return end
  prune(Z, M, s, now)
  if rr >= 0 or rt >= 0 then s.seen = now end
  local oreq, otok = ours_up_to(Z, s, score)
  if lr > 0 then s.srpm = lr end
  if lt > 0 then s.stpm = lt end
  if rr >= 0 then
    if rr == 0 then
      local d = 1000000
      if resr >= 0 then d = resr end
      s.b1 = math.max(s.b1, now + d)
    end
    local limit = minpos(0, s.srpm)
    if limit == 0 then limit = L.rpm end
    if limit > 0 then
      local d = WINDOW
      if resr >= 0 then d = resr end
      s.hr = math.max(0, math.max(0, limit - rr) - oreq)
      s.hru = now + d
    end
  end
  if rt >= 0 then
    if rt == 0 then
      local d = 1000000
      if rest >= 0 then d = rest end
      s.b2 = math.max(s.b2, now + d)
    end
    local limit = s.stpm
    if limit == 0 then limit = L.tpm end
    if limit > 0 then
      local d = WINDOW
      if rest >= 0 then d = rest end
      s.ht = math.max(0, math.max(0, limit - rt) - otok)
      s.htu = now + d
    end
  end
  prune(Z, M, s, now)
end

local function rate_limited(s, L, now, wait)
  local current = factor(s, L, now)
  s.fa = math.max(current * L.decrease, L.min_factor)
  s.da = now
  if wait >= 0 then s.b3 = math.max(s.b3, now + wait) end
end

-- Budgets. B = list of {key, limit}; a reservation's record in RD (hash id -> data) and
-- its expiry in RZ (zset id -> expiry time).
local function budgets_from(keys, ki, argv, ai, nb)
  local B = {}
  for j = 1, nb do
    B[j] = {key = keys[ki + j - 1], limit = num(argv[ai + (j - 1) * 2]), keep = num(argv[ai + (j - 1) * 2 + 1])}
  end
  return B
end

local function budget_state(key)
  local v = redis.call('HMGET', key, 'spent', 'reserved', 'held')
  return num(v[1]), math.max(0, num(v[2])), num(v[3])
end

local function budget_refuses(B, amount)
  for j, b in ipairs(B) do
    local spent, reserved, held = budget_state(b.key)
    if spent + reserved + held + amount > b.limit then return j end
  end
  return nil
end

local function budget_add(key, field, amount, keep)
  redis.call('HINCRBY', key, field, amount)
  if keep ~= nil and keep > 0 then redis.call('PEXPIRE', key, keep) end
end

-- Ends a reservation recorded as "amount|key,key,...|...": release, hold, or commit `paid`
-- on the current period's budgets `B` (the reservation's own keys lose their reserved share).
local function finish(RD, RZ, SP, id, how, paid, B)
  local data = redis.call('HGET', RD, id)
  if not data then return nil end
  redis.call('HDEL', RD, id)
  redis.call('ZREM', RZ, id)
  local parts = {}
  for p in string.gmatch(data, '([^|]*)|?') do parts[#parts + 1] = p end
  local amount = num(parts[1])
  local keys = {}
  for k in string.gmatch(parts[2] or '', '[^,]+') do keys[#keys + 1] = k end
  for _, k in ipairs(keys) do
    if redis.call('EXISTS', k) == 1 then
      -- `0 - amount`, not `-amount`: Lua's negative zero is sent as "-0", which HINCRBY
      -- refuses as not an integer (a zero-cost reservation could never end).
      redis.call('HINCRBY', k, 'reserved', 0 - amount)
      if how == 'h' then redis.call('HINCRBY', k, 'held', amount) end
    end
  end
  if how == 'c' then
    for _, b in ipairs(B) do budget_add(b.key, 'spent', paid, b.keep) end
    redis.call('HINCRBY', SP, 'lifetime', paid)
    redis.call('HINCRBY', SP, 'committed', 1)
  end
  return parts
end

-- Reservations past their time-to-live (an instance that crashed): held, as a request that
-- may have been sent and billed.
local function sweep(RD, RZ, SP, now)
  local expired = redis.call('ZRANGEBYSCORE', RZ, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(expired) do
    finish(RD, RZ, SP, id, 'h', 0, {})
  end
end

local function reserve(RD, RZ, B, id, amount, expires, extra)
  local names = {}
  for j, b in ipairs(B) do
    budget_add(b.key, 'reserved', amount, b.keep)
    names[j] = b.key
  end
  redis.call('HSET', RD, id, string.format('%d', amount) .. '|' .. table.concat(names, ',') .. '|' .. (extra or ''))
  redis.call('ZADD', RZ, expires, id)
end

-- The common answer: status, the window now, the denial and model cool-down, the spend.
local function answer(status, Z, s, L, now, DENY, COOL, SP, B, x)
  local e = effective(s, L, now, true)
  local until_, why = block(s, now)
  -- When the first entry leaves (the lowest score leaves first).
  local oldest = 0
  local first = redis.call('ZRANGE', Z, 0, 0, 'WITHSCORES')
  if #first == 2 then oldest = departure(tonumber(first[2]), now) end
  local d = redis.call('HMGET', DENY, 'reason', 'message', 'until')
  local c = {false, false, false}
  if COOL ~= nil then c = redis.call('HMGET', COOL, 'cause', 'message', 'until') end
  if not d[3] or num(d[3]) <= now then d = {'', '', 0} end
  if not c[3] or num(c[3]) <= now then c = {'', '', 0} end
  local sp = redis.call('HMGET', SP, 'lifetime', 'committed')
  -- When the window is full on requests or images: the time a request of one image (and no
  -- tokens) fits again, so a cached "full" answer can be read as room once it has passed.
  local room = now
  if (e.rpm > 0 and used_req(s) + 1 > e.rpm) or (e.ipm > 0 and s.img + 1 > e.ipm) then
    room = room_at(Z, s, now, 1, 0, e)
  end
  local out = {status, now, used_req(s), s.img, used_tok(s), e.rpm, e.ipm, e.tpm, until_, why,
    fmt(margin(s, L, now)), fmt(factor(s, L, now)), oldest,
    d[1], d[2], num(d[3]), c[1], c[2], num(c[3]), num(sp[1]), num(sp[2]),
    x[1] or 0, x[2] or 0, x[3] or 0, room, #B}
  for _, b in ipairs(B) do
    local spent, reserved, held = budget_state(b.key)
    out[#out + 1] = spent; out[#out + 1] = reserved; out[#out + 1] = held
  end
  return out
end
