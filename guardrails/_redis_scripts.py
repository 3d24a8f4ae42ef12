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

RECORD   KEYS  ctl, then (window, positives) per group with outcomes in this batch
         ARGV  mode (c|t), size (0: none), timed (1|0), oldest bucket inside, ring slot of
               now, bucket of now, entry for a 0, entry for a 1, every_n (0: none), time
               slot ('': none), observed, ttl ms, known epoch, then one '0'/'1' string per group
         ->    {due, epoch, raised, active, last or nil}   (last only when epoch ~= known)

COUNTS   KEYS  ctl, then (window, positives) per group
         ARGV  mode, size, timed, oldest bucket inside, ttl ms (0: leave TTLs), known epoch
         ->    {epoch, raised, active, last or nil, {n1, p1, n2, p2, ...}}

PUBLISH  KEYS  ctl
         ARGV  expected epoch, active, newly raised, last, ttl ms
         ->    {accepted, epoch, raised, active, last or nil}   (last only when refused)
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
local first = 13
"""
    + _LIST
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

for i = 1, (#KEYS - 1) / 2 do
  local bits = ARGV[first + i]
  if #bits > 0 then
    if mode == 'c' then add_list(KEYS[2 * i], KEYS[2 * i + 1], bits) else add_ring(KEYS[2 * i], bits) end
  end
end

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
return {due, epoch, board[2] or '0', board[3] or '', last}
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
for i = 1, (#KEYS - 1) / 2 do
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
return {epoch, board[2] or '0', board[3] or '', last, counts}
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
return {1, tostring(epoch + 1), tostring(raised), ARGV[2], false}
"""
