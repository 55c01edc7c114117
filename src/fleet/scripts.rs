//! The fleet's Lua scripts: each runs atomically in Redis, so two managers
//! can never both win a claim or a lease.

/// Atomically: unless a live record conflicts with ours, register ours.
/// A record conflicts when it claims one of `owned`, was made from
/// another map, counts another number of hosts, or bears our name. Returns the conflicting
/// record, or nil. Hosts are looked for in the set and among the ids
/// found by scanning for records (so that a set deleted or evicted hides
/// nobody); records that lapsed are dropped from the set on the way; a
/// set key of the wrong type is replaced.
pub(super) const CLAIM: &str = r"
local mine = {}
for _, id in ipairs(cjson.decode(ARGV[4])) do mine[id] = true end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'set' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
local function conflicts(d)
  if type(d.map) == 'table' and type(d.map.digest) == 'string' and d.map.digest ~= '' then
    if d.map.digest ~= ARGV[6] then return true end
  elseif type(d.shard_count) == 'number'
    and (d.shard_count ~= tonumber(ARGV[7]) or d.cluster_count ~= tonumber(ARGV[8])) then
    return true
  end
  if ARGV[9] ~= '' and type(d.host_count) == 'number' and d.host_count ~= tonumber(ARGV[9]) then
    return true
  end
  if ARGV[11] ~= '' and d.name == ARGV[11] then return true end
  if type(d.owned) == 'table' then
    for _, id in ipairs(d.owned) do
      if mine[id] then return true end
    end
  end
  return false
end
local ids = redis.call('SMEMBERS', KEYS[1])
for _, h in ipairs(cjson.decode(ARGV[10])) do table.insert(ids, h) end
for _, h in ipairs(ids) do
  if h ~= ARGV[1] then
    local rec = redis.pcall('GET', ARGV[5] .. h)
    if type(rec) ~= 'string' then
      redis.call('SREM', KEYS[1], h)
    else
      -- A record that cannot be read claims nothing (the hosts skip it too).
      local ok, decoded = pcall(cjson.decode, rec)
      if ok and type(decoded) == 'table' and conflicts(decoded) then return rec end
    end
  end
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', ARGV[5] .. ARGV[1], ARGV[2], 'PX', ARGV[3])
return false
";

/// A heartbeat: the record renewed (rewritten when it changed), only if it
/// is still there; its version set; and this host put back in the set, in
/// case the set was deleted or evicted (a set key of the wrong type is
/// replaced). Returns `{renewed, repaired, added}`.
pub(super) const RENEW: &str = r"
local repaired = 0
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'set' and kind ~= 'none' then
  redis.call('DEL', KEYS[1])
  repaired = 1
end
local alive
if ARGV[2] ~= '' then
  alive = redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'XX')
else
  alive = redis.call('PEXPIRE', KEYS[2], ARGV[3]) == 1
end
if not alive then return {0, repaired, 0} end
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
return {1, repaired, redis.call('SADD', KEYS[1], ARGV[1])}
";

/// The election: take the lease if nobody holds it (with the next fencing
/// token, above every one seen: `ARGV[3]` is the highest any host's record
/// holds, so a Redis that lost its counter cannot hand out an old one),
/// renew it if we do. A leader key without a TTL, of the wrong type or
/// that cannot be read, and an epoch that is not a number, are replaced.
/// Returns `{holder, what was repaired or ''}`, the holder as
/// `<host> <epoch>`.
pub(super) const ELECT: &str = r"
local repaired = ''
local floor = tonumber(ARGV[3]) or 0
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'string' and kind ~= 'none' then
  redis.call('DEL', KEYS[1])
  repaired = 'the leader key was a ' .. kind
elseif kind == 'string' then
  local cur = redis.call('GET', KEYS[1])
  if not string.match(cur, '^.+ %d+$') then
    redis.call('DEL', KEYS[1])
    repaired = 'the leader key held ' .. string.sub(cur, 1, 40)
  elseif redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('DEL', KEYS[1])
    repaired = 'the leader key had no TTL'
    -- Its token may have been handed out: the next one is above it.
    floor = math.max(floor, tonumber(string.match(cur, ' (%d+)$')) or 0)
  end
end
local cur = redis.call('GET', KEYS[1])
if not cur then
  local raw = redis.pcall('GET', KEYS[2])
  local stored = nil
  if type(raw) == 'string' and string.match(raw, '^%d+$') then
    stored = tonumber(raw)
  elseif type(raw) == 'table' then
    repaired = 'the epoch key was not a string'
  elseif raw then
    repaired = 'the epoch key held ' .. string.sub(raw, 1, 40)
  end
  local epoch = string.format('%d', math.max(stored or 0, floor) + 1)
  redis.call('SET', KEYS[2], epoch)
  cur = ARGV[1] .. ' ' .. epoch
  redis.call('SET', KEYS[1], cur, 'PX', ARGV[2])
elseif string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {cur, repaired}
";

/// Gives the lease up, if it is still ours.
pub(super) const RESIGN: &str = r"
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'string' and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[1])
end
return 0
";
