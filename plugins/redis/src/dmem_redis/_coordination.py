"""Contract v1.1 on Redis: ``incr``, ``compare_and_set``, ``compare_and_delete``,
``delete_by_tag``, each one Lua script (one ``EVALSHA``), so atomic against every other
client of the server.

Every script touches one key's value, tag hash and tag-index sets, or one index set and the
keys in it: all under one prefix ``P`` (see ``_layout``), so in a cluster they share the
bucket's hash tag and slot. ``delete_by_tag`` runs one script per bucket there (atomic per
bucket, not across buckets); on standalone, unix and Sentinel servers, one script in all.

``incr`` validates the stored bytes in Lua exactly as :func:`dmem.provider.parse_counter`
does (``-?(0|[1-9][0-9]{0,18})``, not ``-0``, within signed 64-bit: the 19-digit case
compared digit by digit, never through Lua's doubles), then adds with Redis's own
``INCRBY``, which keeps the key's expiry, does 64-bit arithmetic and refuses an overflow
without changing the value. Its reply reaches Lua as a double, exact below 2**53 in
magnitude; a larger result is read back with ``GET`` and returned as text.

``incr``, ``compare_and_set`` and ``compare_and_delete`` are sent once (``execute_once``):
re-sent after a lost reply, an ``incr`` would count twice and a compare would find its own
write and answer False; without a reply the caller gets ``ProviderUnavailableError``.
``delete_by_tag`` is re-sent like ``delete`` (same effect; the count can come out low).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import redis.exceptions as rex
from dmem import InvalidValueError, refuse_large_values

from ._layout import tag_suffix
from ._scripts import _HELPERS, SET, Script

if TYPE_CHECKING:
    from ._provider import RedisProvider

__all__ = [
    "COMPARE_AND_DELETE",
    "COMPARE_AND_SET",
    "DELETE_BY_TAG",
    "INCR",
    "SCRIPTS",
    "compare_and_delete",
    "compare_and_set",
    "delete_by_tag",
    "incr",
]

_ERRORS = (rex.RedisError, OSError, asyncio.TimeoutError)

# Drop the tag hash of `key` and its index entries; lean (no helper closures), as in
# set_plain: the common case (no tags) is one HGETALL of a missing hash.
_UNTAG_LEAN = """
local mk = P .. 'm:' .. key
local old = redis.call('HGETALL', mk)
if #old > 0 then
  for j = 1, #old, 2 do
    redis.call('SREM', P .. 't:' .. #old[j] .. ':' .. old[j] .. ':' .. old[j + 1], key)
  end
  redis.call('DEL', mk)
end
"""

# KEYS[1]: value key. ARGV: P, delta (a canonical int in signed 64-bit, checked by the
# core), ttl ms or ''. Returns the new value (an integer reply below 2**53 in magnitude,
# else its text as a bulk string), or a table {code} when the live value is not a counter
# (1: not canonical int text, 2: an int outside signed 64-bit) or {3, current} when the sum
# would leave signed 64-bit; nothing is changed then.
INCR = Script(
    "incr",
    """
local vk, P, delta, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('GET', vk)
if not cur then
  -- Missing or expired: a new key with the ttl and no tags (a stale tag hash goes).
  if ttl == '' then redis.call('SET', vk, delta)
  else redis.call('SET', vk, delta, 'PX', ttl) end
  local key = string.sub(vk, #P + 3)
"""
    + _UNTAG_LEAN
    + """
  return delta
end
-- parse_counter: -?(0|[1-9][0-9]{0,18}), not -0, within signed 64-bit.
local n = #cur
if n > 20 or not (cur == '0' or string.find(cur, '^-?[1-9][0-9]*$')) then return {1} end
local negative = string.byte(cur, 1) == 45
local digits = negative and n - 1 or n
if digits > 19 then return {1} end
if digits == 19 then
  -- Byte by byte (not Lua's doubles, not strcoll): 9223372036854775807, or ...808 below 0.
  local limit = negative and '-9223372036854775808' or '9223372036854775807'
  for i = n - 18, n do
    local a, b = string.byte(cur, i), string.byte(limit, i)
    if a ~= b then
      if a > b then return {2} end
      break
    end
  end
end
-- Redis's 64-bit INCRBY: keeps the expiry; on overflow it fails and changes nothing.
local done = redis.pcall('INCRBY', vk, delta)
if type(done) == 'table' then return {3, cur} end
-- Its reply reaches Lua as a double: exact below 2**53, else the stored text is read.
if done < 9007199254740992 and done > -9007199254740992 then return done end
return redis.call('GET', vk)
""",
)

# KEYS[1]: value key. ARGV: as the set script's for one key without if_not_exists (P, ttl
# ms or '', '0', ntags, name1, value1, ..., value), then the expected bytes. Returns 1 when
# the live value was exactly the expected bytes and the set ran, else 0 (nothing changed).
if not SET.source.startswith(_HELPERS):  # pragma: no cover - a change to _scripts.SET
    raise RuntimeError("_scripts.SET no longer starts with the shared helpers")
COMPARE_AND_SET = Script(
    "compare_and_set",
    _HELPERS
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[#ARGV] then return 0 end
"""
    # The set script's own body: value, expiry, tag hash and index sets exactly as set().
    + SET.source[len(_HELPERS) :],
)

# KEYS[1]: value key. ARGV: P, the expected bytes. Returns 1 if deleted (with its tags).
COMPARE_AND_DELETE = Script(
    "compare_and_delete",
    """
local vk, P = KEYS[1], ARGV[1]
if redis.call('GET', vk) ~= ARGV[2] then return 0 end
redis.call('DEL', vk)
local key = string.sub(vk, #P + 3)
"""
    + _UNTAG_LEAN
    + """
return 1
""",
)

# KEYS[1]: one bucket's index set of name=value. ARGV: P, name, value. Deletes every live
# member still tagged name=value (value, tag hash, its entries in every index set), drops
# the stale members, returns how many keys it deleted.
DELETE_BY_TAG = Script(
    "delete_by_tag",
    _HELPERS
    + """
local name, value = ARGV[2], ARGV[3]
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if tagged(m, name, value) then
    redis.call('DEL', P .. 'k:' .. m)
    untag(m)
    n = n + 1
  else
    redis.call('SREM', KEYS[1], m)
  end
end
return n
""",
)

SCRIPTS = (INCR, COMPARE_AND_SET, COMPARE_AND_DELETE, DELETE_BY_TAG)

_NOT_AN_INT = "incr: the key holds a value that is not an int"
_OUT_OF_RANGE = "incr: the key holds an int outside signed 64-bit"


def _refused(reply: Any, delta: int) -> NoReturn:
    """The InvalidValueError of incr's refusal reply (the messages of parse_counter and
    add_to_counter)."""
    code = int(reply[0]) if isinstance(reply, list) and reply else 0
    if code == 1:
        raise InvalidValueError(_NOT_AN_INT)
    if code == 2:
        raise InvalidValueError(_OUT_OF_RANGE)
    if code == 3:
        current = bytes(reply[1]).decode()
        raise InvalidValueError(
            f"incr: {current} + {delta} is outside signed 64-bit; the value is unchanged"
        )
    raise InvalidValueError(f"incr: unexpected reply from the incr script: {reply!r}")


async def incr(provider: RedisProvider, key: str, delta: int, ttl_ms: int | None) -> int:
    prefix, vk = provider._where(key)
    ttl: int | str = "" if ttl_ms is None else ttl_ms
    try:
        reply = await provider._eval(INCR, (vk,), (prefix, delta, ttl), once=True)
    except _ERRORS as exc:
        raise provider._error(exc) from exc
    if type(reply) is int:
        return reply
    if type(reply) is bytes:
        return int(reply)
    _refused(reply, delta)


async def compare_and_set(
    provider: RedisProvider,
    key: str,
    expected: bytes,
    value: bytes,
    ttl_ms: int | None,
    tags: Mapping[str, str],
) -> bool:
    refuse_large_values((value,), provider.max_value_bytes)  # before any I/O
    prefix, vk = provider._where(key)
    args = provider._set_args(prefix, ttl_ms, False, tags)
    args.append(value)
    args.append(expected)
    try:
        written = bool(await provider._eval(COMPARE_AND_SET, (vk,), args, once=True))
    except _ERRORS as exc:
        raise provider._error(exc) from exc
    if written and tags:
        await provider._sweep(tags)
    return written


async def compare_and_delete(provider: RedisProvider, key: str, expected: bytes) -> bool:
    prefix, vk = provider._where(key)
    try:
        return bool(await provider._eval(COMPARE_AND_DELETE, (vk,), (prefix, expected), once=True))
    except _ERRORS as exc:
        raise provider._error(exc) from exc


async def delete_by_tag(provider: RedisProvider, name: str, value: str) -> int:
    suffix = tag_suffix(name, value)
    calls = [
        (DELETE_BY_TAG, (prefix + suffix,), (prefix, name, value))
        for prefix in provider._layout.prefixes
    ]
    try:
        return sum(int(n) for n in await provider._eval_many(calls))
    except _ERRORS as exc:
        raise provider._error(exc) from exc
