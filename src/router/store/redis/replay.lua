-- replay: admissions an instance made on its own while the store was unreachable, added to
-- the shared window. KEYS = window zset, window hash; ARGV = now|'server', then triples
-- (age, images, tokens) and the id prefix last.
local Z, M = KEYS[1], KEYS[2]
local now = clock(ARGV[1])
local s = load(M)
prune(Z, M, s, now)
local n = (#ARGV - 2) / 3
local prefix = ARGV[#ARGV]
for i = 0, n - 1 do
  local age, im, tk = num(ARGV[2 + i * 3]), num(ARGV[3 + i * 3]), num(ARGV[4 + i * 3])
  if age < WINDOW then
    local member = prefix .. string.format('%d', i) .. ':' .. string.format('%d', im) .. ':' .. string.format('%d', tk)
      .. ':' .. string.format('%d', now - age)
    redis.call('ZADD', Z, now - age, member)
    s.n = s.n + 1; s.img = s.img + im; s.tok = s.tok + tk
  end
end
save(M, Z, s, 3600000)
return n
