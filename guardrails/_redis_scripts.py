"""The Lua scripts of :mod:`fairgate.guardrails.redis_store` (one monitor per call, atomic).

Every key a call touches shares the monitor's hash tag, so a Redis Cluster runs it on one
node. Numbers that decide a window's edges (the bucket of ``now``, the oldest bucket still
inside, the list entries) are computed in Python by ``WindowSpec`` and passed in as
strings: the scripts compare integers, they never round a time.

The hot path (RECORD, once per monitor per batch) touches only the groups that have
outcomes in the batch and makes about three Redis calls per group: push, pop what fell
out, one net increment of the positives. TTLs are set when a key is created and
refreshed by COUNTS, which runs once per check (and for status reads), so the keys of a
monitor that still gets traffic never expire and those of a retired policy version,
monitor or group do.

Keys of one monitor (``T`` is its hash tag ``{prefix:version:monitor}``)::

    T:ctl                 hash: n (outcomes recorded), slot (last time slot checked),
                          epoch, raised, active (comma-joined), last (JSON of the last check)
    T:<shape>:w:<group>   a list of entries ``bucket*2 + bit`` (count windows), or a hash
                          ring s<i> = "bucket:n:positives", i = bucket mod buckets (time windows)
    T:<shape>:p:<group>   the positives of a count window's list
    T:seq:<setup>         hash (``rates.method: sequential``): field "a,b" (group indices of a
                          compared pair) = the pair's e-detector state, little-endian doubles
                          n_a, x_a, n_b, x_b, units, then wealth per (column, bet)
    T:seq:<setup>:alarm   hash: group = "evidence|other group|test", alarms no published
                          check has acted on yet (the strongest per group)

RECORD   KEYS  ctl, then (window, positives) per group with outcomes in this batch, then
               (sequential only) the seq and alarm hashes
         ARGV  mode (c|t), size (0: none), timed (1|0), oldest bucket inside, ring slot of
               now, bucket of now, entry for a 0, entry for a 1, every_n (0: none), time
               slot ('': none), observed, ttl ms, known epoch, number of groups g, then one
               '0'/'1' string per group, then (sequential only) the detector block below
         ->    {due, epoch, raised, active, last or nil, urgent}   (last only when epoch ~= known)

         detector block: k, reference index (-1: every pair i < j), columns J, bets K,
               threshold, head start, start_every, largest bet fraction, K fractions,
               K weights, per column (coef_a, coef_b, coef_0, worst loss, direction, test),
               the k group names, m, then (group index, outcomes, positives) per compared
               group with outcomes in the batch. All from SequentialDetector.wire().

COUNTS   KEYS  ctl, then (window, positives) per group, then (sequential only) seq, alarm
         ARGV  mode, size, timed, oldest bucket inside, ttl ms (0: leave TTLs), known epoch, g
         ->    {epoch, raised, active, last or nil, {n1, p1, n2, p2, ...}}
               sequential: then the seq hash and the alarm hash as flat field/value lists

PUBLISH  KEYS  ctl (then the alarm hash, sequential only)
         ARGV  expected epoch, active, newly raised, last, ttl ms, then the groups whose
               pending alarms this check consumed (deleted when it is accepted)
         ->    {accepted, epoch, raised, active, last or nil}   (last only when refused)

The detector block repeats :meth:`SequentialDetector.update` operation for operation
(the same IEEE double arithmetic in the same order; state stored as exact doubles with
``struct``), so the fleet's detector and the in-process one agree to rounding: a unit
test feeds both the same seeded stream.
"""

from __future__ import annotations

_LIST = r"""
-- Drop what fell out of a count window's list; returns the positives removed.
local function trim_list(win, len)
  local removed = 0
  if timed then
    while len > 0 do
      local head = redis.call('LINDEX', win, 0)
      if not head or math.floor(tonumber(head) / 2) >= oldest then break end
      redis.call('LPOP', win)
      removed = removed + tonumber(head) % 2
      len = len - 1
    end
  end
  if size > 0 and len > size then
    for _, entry in ipairs(redis.call('LPOP', win, len - size)) do
      removed = removed + tonumber(entry) % 2
    end
  end
  return removed
end
"""

_SEQUENTIAL = r"""
-- The e-detectors of rates.method: sequential, SequentialDetector.update in Lua (module docstring).
local function seq_update(seq, alarm_key, at, ttl)
  local pos = at
  local function nxt()
    local v = ARGV[pos]
    pos = pos + 1
    return v
  end
  local function num() return tonumber(nxt()) end
  -- One value per statement: Lua leaves the order of calls in an expression list open.
  local k = num()
  local ref = num()
  local J = num()
  local K = num()
  local threshold = num()
  local head = num()
  local every = num()
  local maxf = num()
  local frac, weight = {}, {}
  for q = 1, K do frac[q] = num() end
  for q = 1, K do weight[q] = num() end
  local ca, cb, c0, worst, dir, test = {}, {}, {}, {}, {}, {}
  for c = 1, J do
    ca[c] = num()
    cb[c] = num()
    c0[c] = num()
    worst[c] = num()
    dir[c] = num()
    test[c] = nxt()
  end
  local names = {}
  for i = 0, k - 1 do names[i] = nxt() end
  local n, x, touched = {}, {}, {}
  for _ = 1, num() do
    local g = num()
    n[g] = num()
    x[g] = num()
    touched[#touched + 1] = g
  end
  -- Only the pairs with an outcome in this batch can change.
  local fields, pa, pb, seen = {}, {}, {}, {}
  local function add(a, b)
    local f = a .. ',' .. b
    if not seen[f] then
      seen[f] = true
      fields[#fields + 1] = f
      pa[#fields], pb[#fields] = a, b
    end
  end
  for _, i in ipairs(touched) do
    if ref >= 0 then
      if i ~= ref then add(i, ref) else for j = 0, k - 1 do if j ~= ref then add(j, ref) end end end
    else
      for j = 0, k - 1 do
        if j < i then add(j, i) elseif j > i then add(i, j) end
      end
    end
  end
  if #fields == 0 then return end
  local width = 5 + J * K
  local fmt = '<' .. string.rep('d', width)
  local fresh = redis.call('EXISTS', seq) == 0
  local held = {}
  for from = 1, #fields, 1000 do -- in chunks: unpack has a stack limit
    local part = redis.call('HMGET', seq, unpack(fields, from, math.min(#fields, from + 999)))
    for i = 1, #part do held[from + i - 1] = part[i] end
  end
  local out = {}
  local function alarm(group, evidence, other, name)
    local before = redis.call('HGET', alarm_key, group)
    if before and tonumber(string.match(before, '^([^|]+)')) >= evidence then return end
    redis.call('HSET', alarm_key, group, string.format('%.17g', evidence) .. '|' .. other .. '|' .. name)
    redis.call('PEXPIRE', alarm_key, ttl)
  end
  -- A pair whose unit does not close only moves its four pending numbers (the first 32
  -- bytes): the rest of its state is copied as bytes, not unpacked.
  local head4 = '<dddd'
  local zeros = {}
  for i = 1, width do zeros[i] = 0.0 end
  local zero_tail = struct.pack('<' .. string.rep('d', width - 4), unpack(zeros, 5, width))
  local min = math.min
  local bet = {}
  for f = 1, #fields do
    local a, b = pa[f], pb[f]
    local blob = held[f]
    local na, xa, nb, xb = 0.0, 0.0, 0.0, 0.0
    if blob then na, xa, nb, xb = struct.unpack(head4, blob) end
    na = na + (n[a] or 0)
    xa = xa + (x[a] or 0)
    nb = nb + (n[b] or 0)
    xb = xb + (x[b] or 0)
    if na > 0 and nb > 0 then -- a unit closes
      local s
      if blob then s = {struct.unpack(fmt, blob)} else s = {unpack(zeros)} end
      local mean_a, mean_b = xa / na, xb / nb
      local size = 2.0 / (1.0 / na + 1.0 / nb)
      for q = 1, K do bet[q] = min(frac[q] * size, maxf) end
      local units = s[5]
      local start = 0.0
      if units == 0 then start = head elseif units % every == 0 then start = 1.0 end
      for c = 1, J do
        local payoff = mean_a * ca[c] + mean_b * cb[c] + c0[c]
        local wc = worst[c]
        local base = 5 + (c - 1) * K
        local d = 0.0
        for q = 1, K do
          local w = (s[base + q] + start) * (1.0 + (bet[q] / wc) * payoff)
          s[base + q] = w
          d = d + w * weight[q]
        end
        if d >= threshold then
          if dir[c] == 0 then alarm(names[a], d / threshold, names[b], test[c])
          else alarm(names[b], d / threshold, names[a], test[c]) end
          for q = 1, K do s[base + q] = 0.0 end
        end
      end
      s[1], s[2], s[3], s[4], s[5] = 0.0, 0.0, 0.0, 0.0, units + 1
      out[#out + 1] = fields[f]
      out[#out + 1] = struct.pack(fmt, unpack(s, 1, width))
    else
      out[#out + 1] = fields[f]
      out[#out + 1] = struct.pack(head4, na, xa, nb, xb) .. (blob and string.sub(blob, 33) or zero_tail)
    end
  end
  for from = 1, #out, 1000 do
    redis.call('HSET', seq, unpack(out, from, math.min(#out, from + 999)))
  end
  if fresh then redis.call('PEXPIRE', seq, ttl) end
end

-- 1 when a pending alarm names a group not alerting yet (a check is urgent); pending alarms
-- of groups already alerting are dropped unless a check is due anyway.
local function seq_urgent(alarm_key, active, due)
  local pending = redis.call('HKEYS', alarm_key)
  if #pending == 0 then return 0 end
  local on = {}
  for name in string.gmatch(active, '[^,]+') do on[name] = true end
  for _, g in ipairs(pending) do
    if not on[g] then return 1 end
  end
  if due == 0 then redis.call('DEL', alarm_key) end
  return 0
end
"""

RECORD = (
    r"""
local ctl = KEYS[1]
local mode = ARGV[1]
local size = tonumber(ARGV[2])
local timed = ARGV[3] == '1'
local oldest = tonumber(ARGV[4])
local ring = ARGV[5]
local bucket = ARGV[6]
local e0, e1 = ARGV[7], ARGV[8]
local every_n = tonumber(ARGV[9])
local slot = ARGV[10]
local observed = tonumber(ARGV[11])
local ttl = tonumber(ARGV[12])
local known = ARGV[13]
local groups = tonumber(ARGV[14])
local first = 14
"""
    + _LIST
    + _SEQUENTIAL
    + r"""
local function add_list(win, pos, bits)
  local entries, ones, len = {}, 0, 0
  for i = 1, #bits do
    if string.byte(bits, i) == 49 then
      entries[#entries + 1] = e1
      ones = ones + 1
    else
      entries[#entries + 1] = e0
    end
    if #entries >= 1000 then
      len = redis.call('RPUSH', win, unpack(entries))
      entries = {}
    end
  end
  if #entries > 0 then len = redis.call('RPUSH', win, unpack(entries)) end
  local net = ones - trim_list(win, len)
  if len == #bits then -- a new window: its positives start here, both keys get the TTL
    redis.call('SET', pos, net, 'PX', ttl)
    redis.call('PEXPIRE', win, ttl)
  elseif net ~= 0 then
    redis.call('INCRBY', pos, net)
  end
end

local function add_ring(win, bits)
  local n = #bits
  local _, ones = string.gsub(bits, '1', '')
  local field = 's' .. ring
  local held = redis.call('HGET', win, field)
  if held then
    local b, hn, hp = string.match(held, '^(%-?%d+):(%d+):(%d+)$')
    if b == bucket then
      n, ones = n + tonumber(hn), ones + tonumber(hp)
    elseif tonumber(b) > tonumber(bucket) then
      return -- a full lap newer: these outcomes are older than the window
    end
  end
  redis.call('HSET', win, field, bucket .. ':' .. n .. ':' .. ones)
  if not held then redis.call('PEXPIRE', win, ttl) end
end

for i = 1, groups do
  local bits = ARGV[first + i]
  if #bits > 0 then
    if mode == 'c' then add_list(KEYS[2 * i], KEYS[2 * i + 1], bits) else add_ring(KEYS[2 * i], bits) end
  end
end
local seq, alarm_key = KEYS[2 * groups + 2], KEYS[2 * groups + 3]
if seq then seq_update(seq, alarm_key, first + groups + 1, ttl) end

local due = 0
if every_n > 0 then
  if observed > 0 then
    local total = redis.call('HINCRBY', ctl, 'n', observed)
    if total == observed then redis.call('PEXPIRE', ctl, ttl) end
    if math.floor(total / every_n) ~= math.floor((total - observed) / every_n) then due = 1 end
  end
elseif slot ~= '' then
  local last_slot = redis.call('HGET', ctl, 'slot')
  if not last_slot then
    redis.call('HSET', ctl, 'slot', slot)
    redis.call('PEXPIRE', ctl, ttl)
  elseif tonumber(slot) > tonumber(last_slot) then
    redis.call('HSET', ctl, 'slot', slot)
    due = 1
  end
end

local board = redis.call('HMGET', ctl, 'epoch', 'raised', 'active')
local epoch = board[1] or '0'
local last = false
if epoch ~= known then last = redis.call('HGET', ctl, 'last') or false end
local urgent = 0
if seq then urgent = seq_urgent(alarm_key, board[3] or '', due) end
return {due, epoch, board[2] or '0', board[3] or '', last, urgent}
"""
)

COUNTS = (
    r"""
local ctl = KEYS[1]
local mode = ARGV[1]
local size = tonumber(ARGV[2])
local timed = ARGV[3] == '1'
local oldest = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local known = ARGV[6]
local groups = tonumber(ARGV[7])
"""
    + _LIST
    + r"""
local function list_counts(win, pos)
  local len = redis.call('LLEN', win)
  if len == 0 then
    redis.call('DEL', pos)
    return {0, 0}
  end
  local removed = trim_list(win, len)
  local held = redis.call('GET', pos)
  local n = redis.call('LLEN', win)
  local p
  if held then
    p = tonumber(held) - removed
    if removed > 0 then redis.call('SET', pos, p, 'KEEPTTL') end
  else -- the positives expired before their list: count them again
    p = 0
    for _, entry in ipairs(redis.call('LRANGE', win, 0, -1)) do p = p + tonumber(entry) % 2 end
    redis.call('SET', pos, p)
  end
  if ttl > 0 then
    redis.call('PEXPIRE', win, ttl)
    redis.call('PEXPIRE', pos, ttl)
  end
  return {n, p}
end

local function ring_counts(win)
  local flat = redis.call('HGETALL', win)
  local n, p = 0, 0
  for i = 2, #flat, 2 do
    local b, hn, hp = string.match(flat[i], '^(%-?%d+):(%d+):(%d+)$')
    if tonumber(b) >= oldest then
      n = n + tonumber(hn)
      p = p + tonumber(hp)
    end
  end
  if ttl > 0 and #flat > 0 then redis.call('PEXPIRE', win, ttl) end
  return {n, p}
end

local counts = {}
for i = 1, groups do
  local c
  if mode == 'c' then c = list_counts(KEYS[2 * i], KEYS[2 * i + 1]) else c = ring_counts(KEYS[2 * i]) end
  counts[#counts + 1] = c[1]
  counts[#counts + 1] = c[2]
end
if ttl > 0 then redis.call('PEXPIRE', ctl, ttl) end
local board = redis.call('HMGET', ctl, 'epoch', 'raised', 'active')
local epoch = board[1] or '0'
local last = false
if epoch ~= known then last = redis.call('HGET', ctl, 'last') or false end
local seq, alarm_key = KEYS[2 * groups + 2], KEYS[2 * groups + 3]
if not seq then return {epoch, board[2] or '0', board[3] or '', last, counts} end
if ttl > 0 then
  redis.call('PEXPIRE', seq, ttl)
  redis.call('PEXPIRE', alarm_key, ttl)
end
return {epoch, board[2] or '0', board[3] or '', last, counts, redis.call('HGETALL', seq),
        redis.call('HGETALL', alarm_key)}
"""
)

PUBLISH = r"""
local ctl = KEYS[1]
local epoch = tonumber(redis.call('HGET', ctl, 'epoch') or '0')
if epoch ~= tonumber(ARGV[1]) then
  local b = redis.call('HMGET', ctl, 'epoch', 'raised', 'active', 'last')
  return {0, b[1] or '0', b[2] or '0', b[3] or '', b[4] or false}
end
redis.call('HSET', ctl, 'epoch', tostring(epoch + 1), 'active', ARGV[2], 'last', ARGV[4])
local raised = redis.call('HINCRBY', ctl, 'raised', tonumber(ARGV[3]))
if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', ctl, ARGV[5]) end
if KEYS[2] and #ARGV > 5 then redis.call('HDEL', KEYS[2], unpack(ARGV, 6)) end
return {1, tostring(epoch + 1), tostring(raised), ARGV[2], false}
"""
