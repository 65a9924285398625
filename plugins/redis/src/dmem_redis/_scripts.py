"""The Lua scripts: each runs atomically inside one Redis (one slot in a cluster).

Every script takes the namespace/bucket prefix ``P`` as ``ARGV[1]`` and derives the
bookkeeping keys from it (``P..'m:'..key``, ``P..'t:'..#name..':'..name..':'..value``,
see ``_layout``); they share the hash tag of the declared ``KEYS``, so in a cluster they
live in the same slot. Tag-index maintenance (SADD/SREM, the index set's expiry, and a
small sampled purge of stale members) happens in the same script as the value write, so
a value and its index entries never disagree; ``purge_index`` is the deeper sampled purge
of the provider's sweep (``RedisProvider._sweep``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = [
    "DELETE",
    "EXPIRE",
    "FIND",
    "GET_ENTRY",
    "GET_TAGS",
    "PERSIST",
    "PURGE_INDEX",
    "PURGE_META",
    "SCRIPTS",
    "SET",
    "SET_MANY_PLAIN",
    "SET_PLAIN",
    "Script",
]


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        # Computed once: every call sends EVALSHA with it (EVAL only after NOSCRIPT).
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


# Shared helpers, prepended to every script that touches tag indexes.
_HELPERS = """
local P = ARGV[1]
local function idx(name, value)
  return P .. 't:' .. #name .. ':' .. name .. ':' .. value
end
-- Drop every index entry and the tag hash of `key` (its old tags).
local function untag(key)
  local mk = P .. 'm:' .. key
  local old = redis.call('HGETALL', mk)
  if #old > 0 then
    for j = 1, #old, 2 do
      redis.call('SREM', idx(old[j], old[j + 1]), key)
    end
    redis.call('DEL', mk)
  end
end
-- Keep an index set at least as long-lived as a member with `ttl` ms ('' = forever).
local function extend(ik, ttl, existed)
  if ttl == '' then
    redis.call('PERSIST', ik)
  elseif not existed then
    redis.call('PEXPIRE', ik, ttl)
  else
    local cur = redis.call('PTTL', ik)
    if cur >= 0 and cur < tonumber(ttl) then
      redis.call('PEXPIRE', ik, ttl)
    end
  end
end
-- Is `key` live and tagged name=value?
local function tagged(key, name, value)
  return redis.call('EXISTS', P .. 'k:' .. key) == 1
    and redis.call('HGET', P .. 'm:' .. key, name) == value
end
-- Sampled purge of index set `ik` (tag name=value): check `size` random members and
-- remove the stale ones (their key expired, was deleted or was re-tagged); while at least
-- a quarter of a sample was stale, check another, up to `rounds` samples.
local function purge(ik, name, value, size, rounds)
  for _ = 1, rounds do
    local sample = redis.call('SRANDMEMBER', ik, size)
    local stale = 0
    for _, m in ipairs(sample) do
      if not tagged(m, name, value) then
        redis.call('SREM', ik, m)
        stale = stale + 1
      end
    end
    -- A short sample was the whole set: nothing stale is left in it.
    if #sample < size or stale * 4 < size then return end
  end
end
"""

# KEYS: value keys. ARGV: P, ttl ms or '', nx '1'/'0', ntags, name1, value1, ..., then
# one value per key. Returns how many keys were written.
SET = Script(
    "set",
    _HELPERS
    + """
local ttl, nx, ntags = ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
local base = 4 + 2 * ntags
local skip = #P + 3
local tagged_keys = {}
local n = 0
for i, vk in ipairs(KEYS) do
  local ok
  local value = ARGV[base + i]
  if nx then
    if ttl ~= '' then ok = redis.call('SET', vk, value, 'NX', 'PX', ttl)
    else ok = redis.call('SET', vk, value, 'NX') end
  else
    if ttl ~= '' then ok = redis.call('SET', vk, value, 'PX', ttl)
    else ok = redis.call('SET', vk, value) end
  end
  if ok then
    n = n + 1
    local key = string.sub(vk, skip)
    untag(key)
    if ntags > 0 then
      local mk = P .. 'm:' .. key
      redis.call('HSET', mk, unpack(ARGV, 5, base))
      if ttl ~= '' then redis.call('PEXPIRE', mk, ttl) end
      tagged_keys[#tagged_keys + 1] = key
    end
  end
end
if #tagged_keys > 0 then
  for j = 5, base, 2 do
    local name, value = ARGV[j], ARGV[j + 1]
    local ik = idx(name, value)
    -- Three random members a write: in a set written to, stale members settle near a
    -- third of it; the provider's sweep (purge_index) sheds a burst of them.
    purge(ik, name, value, 3, 1)
    -- After the purge: one that emptied the set deleted it, with its expiry, and the
    -- new set must get one (extend), or it would outlive its members.
    local existed = redis.call('EXISTS', ik) == 1
    for s = 1, #tagged_keys, 1000 do
      redis.call('SADD', ik, unpack(tagged_keys, s, math.min(s + 999, #tagged_keys)))
    end
    extend(ik, ttl, existed)
  end
end
return n
""",
)

# The common case, kept lean (no helper closures): one key, no tags, no if_not_exists.
# KEYS[1]: value key. ARGV: P, ttl ms or '', value. Returns 1.
SET_PLAIN = Script(
    "set_plain",
    """
local vk, P, ttl = KEYS[1], ARGV[1], ARGV[2]
if ttl == '' then redis.call('SET', vk, ARGV[3])
else redis.call('SET', vk, ARGV[3], 'PX', ttl) end
local key = string.sub(vk, #P + 3)
local mk = P .. 'm:' .. key
if redis.call('EXISTS', mk) == 1 then
  local old = redis.call('HGETALL', mk)
  for j = 1, #old, 2 do
    redis.call('SREM', P .. 't:' .. #old[j] .. ':' .. old[j] .. ':' .. old[j + 1], key)
  end
  redis.call('DEL', mk)
end
return 1
""",
)

# A batch without tags or if_not_exists: one EXISTS over all tag hashes (usually 0, so
# no per-key cleanup), then MSET (or SET PX per key). KEYS: value keys. ARGV: P, ttl ms
# or '', then one value per key. Returns how many were written (all).
SET_MANY_PLAIN = Script(
    "set_many_plain",
    """
local P, ttl = ARGV[1], ARGV[2]
local skip = #P + 3
local n = #KEYS
local mks = {}
for i = 1, n do mks[i] = P .. 'm:' .. string.sub(KEYS[i], skip) end
local tagged = 0
for s = 1, n, 4000 do
  tagged = tagged + redis.call('EXISTS', unpack(mks, s, math.min(s + 3999, n)))
end
if tagged > 0 then
  for i = 1, n do
    local old = redis.call('HGETALL', mks[i])
    if #old > 0 then
      local key = string.sub(KEYS[i], skip)
      for j = 1, #old, 2 do
        redis.call('SREM', P .. 't:' .. #old[j] .. ':' .. old[j] .. ':' .. old[j + 1], key)
      end
      redis.call('DEL', mks[i])
    end
  end
end
if ttl == '' then
  local args = {}
  for i = 1, n do
    args[2 * i - 1] = KEYS[i]
    args[2 * i] = ARGV[2 + i]
  end
  for s = 1, 2 * n, 4000 do
    redis.call('MSET', unpack(args, s, math.min(s + 3999, 2 * n)))
  end
else
  for i = 1, n do redis.call('SET', KEYS[i], ARGV[2 + i], 'PX', ttl) end
end
return n
""",
)

# KEYS: value keys. ARGV: P. Returns how many were live.
DELETE = Script(
    "delete",
    _HELPERS
    + """
local skip = #P + 3
local n = 0
for _, vk in ipairs(KEYS) do
  n = n + redis.call('DEL', vk)
  untag(string.sub(vk, skip))
end
return n
""",
)

# KEYS[1]: value key. Returns false, or {value, pttl}.
GET_ENTRY = Script(
    "get_entry",
    """
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}
""",
)

# KEYS[1]: value key. ARGV: P. Returns false (not live) or the flat tag list.
GET_TAGS = Script(
    "get_tags",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('HGETALL', ARGV[1] .. 'm:' .. string.sub(KEYS[1], #ARGV[1] + 3))
""",
)

# KEYS[1]: value key. ARGV: P, ttl ms. Returns 1 if the key was live.
EXPIRE = Script(
    "expire",
    _HELPERS
    + """
if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 0 then return 0 end
local key = string.sub(KEYS[1], #P + 3)
local mk = P .. 'm:' .. key
local tags = redis.call('HGETALL', mk)
if #tags > 0 then
  redis.call('PEXPIRE', mk, ARGV[2])
  for j = 1, #tags, 2 do
    local ik = idx(tags[j], tags[j + 1])
    local existed = redis.call('SADD', ik, key) == 0 or redis.call('SCARD', ik) > 1
    extend(ik, ARGV[2], existed)
  end
end
return 1
""",
)

# KEYS[1]: value key. ARGV: P. Returns 1 if the key was live.
PERSIST = Script(
    "persist",
    _HELPERS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PERSIST', KEYS[1])
local key = string.sub(KEYS[1], #P + 3)
local mk = P .. 'm:' .. key
local tags = redis.call('HGETALL', mk)
if #tags > 0 then
  redis.call('PERSIST', mk)
  for j = 1, #tags, 2 do
    local ik = idx(tags[j], tags[j + 1])
    redis.call('SADD', ik, key)
    redis.call('PERSIST', ik)
  end
end
return 1
""",
)

# KEYS[1]: tag-index key. ARGV: P, name, value. Returns the live members and
# removes the stale ones (expired, deleted or re-tagged keys).
FIND = Script(
    "find",
    _HELPERS
    + """
local name, value = ARGV[2], ARGV[3]
local live = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if tagged(m, name, value) then live[#live + 1] = m
  else redis.call('SREM', KEYS[1], m) end
end
return live
""",
)

# KEYS[1]: a tag-index key. ARGV: P, name, value. A deeper sampled purge, for the
# provider's sweep (RedisProvider._sweep): samples of 16 members, up to 64 of them (1,024
# members), while a quarter of a sample is stale.
PURGE_INDEX = Script(
    "purge_index",
    _HELPERS
    + """
purge(KEYS[1], ARGV[2], ARGV[3], 16, 64)
return 0
""",
)

# KEYS[1]: a tag hash key. ARGV: P. Deletes it when its value key is gone (clear()).
PURGE_META = Script(
    "purge_meta",
    _HELPERS
    + """
local key = string.sub(KEYS[1], #P + 3)
if redis.call('EXISTS', P .. 'k:' .. key) == 0 then untag(key) return 1 end
return 0
""",
)

SCRIPTS = (
    SET,
    SET_PLAIN,
    SET_MANY_PLAIN,
    DELETE,
    GET_ENTRY,
    GET_TAGS,
    EXPIRE,
    PERSIST,
    FIND,
    PURGE_INDEX,
    PURGE_META,
)
