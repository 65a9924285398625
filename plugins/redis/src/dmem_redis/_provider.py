"""``RedisProvider``: the dmem contract on Redis (standalone, TLS, unix, Sentinel, Cluster).

Reads are plain commands (GET, MGET, EXISTS, PTTL, SCAN); every write that touches tags
is one Lua script (``_scripts``) so value, tags, expiry and tag indexes change together.
See ``_layout`` for the key names and docs/backends/redis.md for what is atomic where.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis.exceptions as rex
from dmem import (
    HealthStatus,
    InvalidArgumentError,
    KeyNotFoundError,
    Pattern,
    ProviderError,
    refuse_large_values,
)
from dmem._invalidation import InvalidationChannel, InvalidationListener
from dmem.coalescing import Coalescer
from dmem.provider import Entry
from dmem.sharing import Lease

from . import _coordination
from ._client import execute_once, log, map_error, retry_backoff
from ._config import RedisConfig
from ._invalidation import RedisInvalidation
from ._layout import Layout, tag_suffix
from ._pipelining import BATCH_VALUE_LIMIT, Command
from ._scripts import (
    DELETE,
    EXPIRE,
    FIND,
    GET_ENTRY,
    GET_TAGS,
    PERSIST,
    PURGE_INDEX,
    PURGE_META,
    SCRIPTS,
    SET,
    SET_MANY_PLAIN,
    SET_PLAIN,
    Script,
)
from ._shared import SharedClient, open_client

__all__ = ["RedisProvider"]

# What a redis-py call can raise; everything else is a bug and propagates as is.
_ERRORS = (rex.RedisError, OSError, asyncio.TimeoutError)
_SCAN_COUNT = 1000  # SCAN COUNT hint and get_many's MGET batch size
# scan() fetches values in smaller MGETs, sized from the values seen so far to hold about
# _SCAN_BYTES of values at a time (the client's read buffers hold as much again): few round
# trips for small values, bounded memory for large ones. The first MGET is small, blind.
_SCAN_BYTES = 128 * 1024
_SCAN_FIRST = 16
_EMPTY: tuple[str, ...] = ()
# The longest tagged writes go without a sweep of their tags' index sets (_sweep), seconds.
_SWEEP_EVERY = 1.0
# Redis's default proto-max-bulk-len: the value limit where the server's cannot be read.
_DEFAULT_BULK_LIMIT = 512 * 1024 * 1024
_Call = tuple["Script", Sequence[str], Sequence[Any]]  # (script, KEYS, ARGV)


def _scan_page(fetched_bytes: int, fetched_values: int) -> int:
    """How many values the next MGET of scan() asks for, from the last one's average size."""
    average = max(1, fetched_bytes // max(1, fetched_values))
    return max(1, min(_SCAN_COUNT, _SCAN_BYTES // average))


class RedisProvider:
    """A dmem key-value provider on Redis; build it with ``dmem.open("redis://...")``."""

    name = "redis"

    def __init__(self, config: RedisConfig) -> None:
        self._config = config
        self.namespace = config.namespace
        self._cluster = config.mode == "cluster"
        self._layout = Layout(config.namespace, config.buckets if self._cluster else None)
        self._prefix = self._layout.prefixes[0]
        self._vprefix = self._layout.value_prefix
        self._lease: Lease[SharedClient] | None = None
        self._client: Any = None
        self._sentinel: Any = None
        # The shared client's batcher of concurrent commands; None: pipelining=false.
        self._coalescer: Coalescer[Command, Any] | None = None
        # execute_once's connection retries in a cluster (redis-py's cluster connections
        # make none): the same count and backoff as every other call's.
        self._once_retries = config.retries
        self._once_backoff = retry_backoff(config)
        # Standalone and Sentinel: every set_many/delete_many is one script on one server.
        # Cluster: one script per bucket, so a batch is atomic per bucket only.
        self.atomic_batches = not self._cluster
        # The largest value a write sends: the option, else the server's own limit, read
        # when the store opens (_server_limit). Checked before any I/O: Redis answers an
        # argument over proto-max-bulk-len with a protocol error and drops the connection.
        self.max_value_bytes: int | None = config.max_value_bytes
        self._next_sweep = 0.0  # time.monotonic() of the next _sweep

    def __repr__(self) -> str:
        return (
            f"<RedisProvider {self._config.shown_url} mode={self._config.mode} "
            f"namespace={self.namespace!r}>"
        )

    def _error(self, exc: BaseException) -> ProviderError:
        return map_error(exc, self._config)

    # --- lifecycle -------------------------------------------------------------------------
    async def initialize(self) -> None:
        if self._lease is not None:  # made by with_namespace: open already
            return
        lease = open_client(self._config)  # shared with the process's stores on the server
        try:
            await self._reach(lease.value)
            limit, server_limit = self._config.max_value_bytes, lease.value.server_limit
            if limit is not None and server_limit is not None and limit > server_limit:
                raise InvalidArgumentError(
                    f"redis option 'max_value_bytes' ({limit:,}) is over the server's "
                    f"proto-max-bulk-len ({server_limit:,}): Redis would drop the connection "
                    "on such a value; lower the option or raise the server's setting"
                )
        except BaseException:
            await lease.release()  # the last one closes the client
            raise
        self._adopt(lease)

    async def _reach(self, shared: SharedClient) -> None:
        """The server answers; the first store of a client also loads the scripts and reads
        the server's value limit."""
        client = shared.client
        try:
            if shared.prepared:
                await client.execute_command("PING")
                return
            if self._cluster:
                await client.initialize()
            await client.execute_command("PING")
            await _load_scripts(client, self._cluster)
            shared.server_limit = await _server_limit(client, self._cluster)
            shared.prepared = True
        except _ERRORS as exc:
            raise self._error(exc) from exc
        except rex.RedisClusterException as exc:  # pragma: no cover - depends on topology
            raise self._error(exc) from exc

    def _adopt(self, lease: Lease[SharedClient]) -> None:
        shared = lease.value
        limit = self._config.max_value_bytes
        self.max_value_bytes = (
            limit if limit is not None else shared.server_limit or _DEFAULT_BULK_LIMIT
        )
        self._lease, self._client, self._sentinel = lease, shared.client, shared.sentinel
        self._coalescer = None if shared.pipeliner is None else shared.pipeliner.coalescer
        self._next_sweep = time.monotonic() + _SWEEP_EVERY

    def with_namespace(self, namespace: str) -> RedisProvider:
        """A provider on ``namespace`` sharing this one's client and pool; open already (no
        I/O), closed on its own."""
        if self._lease is None:
            from dmem import NotInitializedError

            raise NotInitializedError("the Redis provider is not initialized")
        derived = RedisProvider(dataclasses.replace(self._config, namespace=namespace))
        derived._adopt(self._lease.share())
        return derived

    async def aclose(self) -> None:
        lease, self._lease = self._lease, None
        self._client = self._sentinel = self._coalescer = None
        if lease is not None:
            await lease.release()  # the last store closes the client and its connections

    async def open_invalidation(self, listener: InvalidationListener) -> InvalidationChannel:
        """Follow every write to this namespace's keys (``_invalidation``: CLIENT TRACKING in
        broadcast mode on a connection of the channel's own, per primary in a Cluster)."""
        if self._lease is None:
            from dmem import NotInitializedError

            raise NotInitializedError("the Redis provider is not initialized")
        channel = RedisInvalidation(
            listener, self._config, self._layout, self._client, self._cluster
        )
        await channel.open()
        return channel

    # --- helpers ---------------------------------------------------------------------------
    def _where(self, key: str) -> tuple[str, str]:
        """(prefix P of the key's bucket, value key)."""
        if not self._cluster:
            return self._prefix, self._vprefix + key
        bucket = self._layout.bucket(key)
        return self._layout.prefixes[bucket], self._layout.value_prefixes[bucket] + key

    async def _command(
        self, args: tuple[Any, ...], script: Script | None = None, *, alone: bool = False
    ) -> Any:
        """Send one command that may be re-sent after a lost reply: alone while the client
        has a free slot (always, with ``alone``), else in the next batch of concurrent
        callers' (``_pipelining``)."""
        coalescer = None if alone else self._coalescer
        if coalescer is not None and not coalescer.take():
            return await coalescer.submit((args, script, asyncio.get_running_loop().time()))
        try:
            return await self._client.execute_command(*args)
        finally:
            if coalescer is not None:
                coalescer.give()

    async def _eval(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        once: bool = False,
        alone: bool = False,
    ) -> Any:
        """Run a script; ``once``: never re-sent after a lost reply (see ``execute_once``);
        ``alone``: never in a batch of other callers' commands (a large value)."""
        if not once:
            call = ("EVALSHA", script.sha, len(keys), *keys, *args)
            coalescer = None if alone else self._coalescer
            try:
                # _command spelled out: one coroutine frame less on every write.
                if coalescer is not None and not coalescer.take():
                    queued_at = asyncio.get_running_loop().time()
                    return await coalescer.submit((call, script, queued_at))
                try:
                    return await self._client.execute_command(*call)
                finally:
                    if coalescer is not None:
                        coalescer.give()
            except rex.NoScriptError:
                # First use on this server (or it restarted / failed over): EVAL caches it.
                return await self._command(("EVAL", script.source, *call[2:]), alone=alone)
        retries, backoff = self._once_retries, self._once_backoff
        try:
            return await execute_once(
                self._client,
                "EVALSHA",
                script.sha,
                len(keys),
                *keys,
                *args,
                retries=retries,
                backoff=backoff,
            )
        except rex.NoScriptError:
            return await execute_once(
                self._client,
                "EVAL",
                script.source,
                len(keys),
                *keys,
                *args,
                retries=retries,
                backoff=backoff,
            )

    async def _eval_many(
        self, calls: Sequence[tuple[Script, Sequence[str], Sequence[Any]]], *, once: bool = False
    ) -> list[Any]:
        """Run scripts in one pipeline (per node in a cluster); results in order.

        ``once``: no call is re-sent after a lost reply; they run concurrently, one command
        each, instead of in a pipeline (redis-py's pipelines re-send on failure).
        """
        if len(calls) == 1:
            script, keys, args = calls[0]
            return [await self._eval(script, keys, args, once=once)]
        if once:
            done = await asyncio.gather(
                *(self._eval(*call, once=True) for call in calls), return_exceptions=True
            )
            for result in done:
                if isinstance(result, BaseException):
                    raise result
            return list(done)
        pipe = self._client.pipeline(transaction=False)
        for script, keys, args in calls:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        for i, result in enumerate(results):
            if isinstance(result, rex.NoScriptError):
                results[i] = await self._eval(*calls[i])
            elif isinstance(result, Exception):
                raise result
        return results

    def _by_bucket(self, keys: Sequence[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        bucket = self._layout.bucket
        for key in keys:
            groups.setdefault(bucket(key), []).append(key)
        return groups

    async def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if self._cluster:
            value_key = self._layout.value_key
            return list(await self._client.mget_nonatomic([value_key(k) for k in keys]))
        vprefix = self._vprefix
        out: list[bytes | None] = []
        for start in range(0, len(keys), _SCAN_COUNT):
            chunk = keys[start : start + _SCAN_COUNT]
            out.extend(await self._client.execute_command("MGET", *[vprefix + k for k in chunk]))
        return out

    # --- reads -----------------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        vk = self._vprefix + key if not self._cluster else self._layout.value_key(key)
        coalescer = self._coalescer
        value: bytes | None
        try:
            # _command spelled out: one coroutine frame less on the most frequent call.
            if coalescer is not None and not coalescer.take():
                queued_at = asyncio.get_running_loop().time()
                value = await coalescer.submit((("GET", vk), None, queued_at))
            else:
                try:
                    value = await self._client.execute_command("GET", vk)
                finally:
                    if coalescer is not None:
                        coalescer.give()
        except _ERRORS as exc:
            raise self._error(exc) from exc
        return value

    async def get_entry(self, key: str) -> Entry | None:
        vk = self._vprefix + key if not self._cluster else self._layout.value_key(key)
        try:
            got = await self._eval(GET_ENTRY, (vk,), _EMPTY)
        except _ERRORS as exc:
            raise self._error(exc) from exc
        if got is None:
            return None
        value, pttl = got
        # Redis keeps a key live through its last millisecond, where PTTL says 0: a live
        # key has at least 1 ms left (docs/contract.md), or the Cache would drop it.
        return bytes(value), (None if pttl < 0 else max(1, int(pttl)))

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        try:
            values = await self._mget(keys)
        except _ERRORS as exc:
            raise self._error(exc) from exc
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    async def exists(self, key: str) -> bool:
        vk = self._vprefix + key if not self._cluster else self._layout.value_key(key)
        try:
            return bool(await self._command(("EXISTS", vk)))
        except _ERRORS as exc:
            raise self._error(exc) from exc

    async def ttl(self, key: str) -> float | None:
        vk = self._vprefix + key if not self._cluster else self._layout.value_key(key)
        try:
            pttl = await self._command(("PTTL", vk))
        except _ERRORS as exc:
            raise self._error(exc) from exc
        if pttl == -2:
            raise KeyNotFoundError(f"key {key!r} is not live")
        return None if pttl == -1 else max(1, pttl) / 1000  # PTTL 0: its last millisecond

    # --- writes ----------------------------------------------------------------------------
    @staticmethod
    def _set_args(
        prefix: str, ttl_ms: int | None, if_not_exists: bool, tags: Mapping[str, str]
    ) -> list[Any]:
        args: list[Any] = [
            prefix,
            "" if ttl_ms is None else ttl_ms,
            b"1" if if_not_exists else b"0",
        ]
        args.append(len(tags))
        for name, value in tags.items():
            args.append(name)
            args.append(value)
        return args

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        limit = self.max_value_bytes
        if limit is not None and len(value) > limit:
            refuse_large_values((value,), limit)
        prefix, vk = self._where(key)
        alone = len(value) > BATCH_VALUE_LIMIT
        try:
            if not tags and not if_not_exists:
                ttl: int | str = "" if ttl_ms is None else ttl_ms
                return bool(await self._eval(SET_PLAIN, (vk,), (prefix, ttl, value), alone=alone))
            args = self._set_args(prefix, ttl_ms, if_not_exists, tags)
            args.append(value)
            written = bool(await self._eval(SET, (vk,), args, once=if_not_exists, alone=alone))
        except _ERRORS as exc:
            raise self._error(exc) from exc
        if tags:
            await self._sweep(tags)
        return written

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        # Before any I/O: a batch holding a value over the limit writes nothing, in every mode.
        refuse_large_values((value for _, value in items), self.max_value_bytes)
        plain = not tags and not if_not_exists
        ttl: int | str = "" if ttl_ms is None else ttl_ms

        def call(prefix: str, vprefix: str, pairs: Sequence[tuple[str, bytes]]) -> _Call:
            keys = [vprefix + key for key, _ in pairs]
            if plain:
                args: list[Any] = [prefix, ttl]
                args.extend([value for _, value in pairs])
                return SET_MANY_PLAIN, keys, args
            args = self._set_args(prefix, ttl_ms, if_not_exists, tags)
            args.extend([value for _, value in pairs])
            return SET, keys, args

        if not self._cluster:
            # One script for the whole batch: all or nothing on one server.
            calls = [call(self._prefix, self._vprefix, items)]
        else:
            groups: dict[int, list[tuple[str, bytes]]] = {}
            bucket = self._layout.bucket
            for key, value in items:
                groups.setdefault(bucket(key), []).append((key, value))
            layout = self._layout
            calls = [
                call(layout.prefixes[b], layout.value_prefixes[b], pairs)
                for b, pairs in groups.items()
            ]
        try:
            written: int = sum(await self._eval_many(calls, once=if_not_exists))
        except _ERRORS as exc:
            raise self._error(exc) from exc
        if tags:
            await self._sweep(tags)
        return written

    async def _sweep(self, tags: Mapping[str, str]) -> None:
        """After a tagged write, at most once every ``_SWEEP_EVERY`` seconds (per provider):
        the deep sampled purge (``purge_index``) of the index sets of ``tags``, in every
        bucket of a cluster.

        A write checks three members of each set it adds to, which keeps a set written to
        near its live size but sheds a burst of expired members (thousands of short-lived
        keys under one long-lived tag) only slowly; and in a cluster it reaches its own
        bucket's set only (a script reaches one slot), so a tag's set in a bucket that no
        later write of the tag reaches would keep its stale members. The sweep gives them
        back within seconds while writes of the tag go on, at a bounded cost (up to 1,024
        members checked per set a second). Its failure does not fail the write, which is
        done; a later sweep tries again.
        """
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY
        calls: list[_Call] = [
            (PURGE_INDEX, (prefix + tag_suffix(name, value),), (prefix, name, value))
            for name, value in tags.items()
            for prefix in self._layout.prefixes
        ]
        try:
            await self._eval_many(calls)
        except _ERRORS as exc:
            log.debug("tag-index sweep failed (%s); retried on a later write", type(exc).__name__)

    async def delete(self, key: str) -> bool:
        prefix, vk = self._where(key)
        try:
            return bool(await self._eval(DELETE, (vk,), (prefix,)))
        except _ERRORS as exc:
            raise self._error(exc) from exc

    def _delete_calls(
        self, keys: Sequence[str]
    ) -> list[tuple[Script, Sequence[str], Sequence[Any]]]:
        if not self._cluster:
            return [(DELETE, [self._vprefix + k for k in keys], (self._prefix,))]
        layout = self._layout
        return [
            (DELETE, [layout.value_prefixes[b] + k for k in group], (layout.prefixes[b],))
            for b, group in self._by_bucket(keys).items()
        ]

    async def delete_many(self, keys: Sequence[str]) -> int:
        try:
            return sum(await self._eval_many(self._delete_calls(keys)))
        except _ERRORS as exc:
            raise self._error(exc) from exc

    async def expire(self, key: str, ttl_ms: int) -> bool:
        prefix, vk = self._where(key)
        try:
            return bool(await self._eval(EXPIRE, (vk,), (prefix, ttl_ms)))
        except _ERRORS as exc:
            raise self._error(exc) from exc

    async def persist(self, key: str) -> bool:
        prefix, vk = self._where(key)
        try:
            return bool(await self._eval(PERSIST, (vk,), (prefix,)))
        except _ERRORS as exc:
            raise self._error(exc) from exc

    # --- tags ------------------------------------------------------------------------------
    async def find_by_tag(self, name: str, value: str) -> list[str]:
        suffix = tag_suffix(name, value)
        calls = [(FIND, (p + suffix,), (p, name, value)) for p in self._layout.prefixes]
        try:
            results = await self._eval_many(calls)
        except _ERRORS as exc:
            raise self._error(exc) from exc
        return [member.decode() for members in results for member in members]

    async def get_tags(self, key: str) -> dict[str, str]:
        prefix, vk = self._where(key)
        try:
            flat = await self._eval(GET_TAGS, (vk,), (prefix,))
        except _ERRORS as exc:
            raise self._error(exc) from exc
        if flat is None:
            raise KeyNotFoundError(f"key {key!r} is not live")
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    # --- contract v1.1: one script each (_coordination) ---------------------------------------
    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        return await _coordination.incr(self, key, delta, ttl_ms)

    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        return await _coordination.compare_and_set(self, key, expected, value, ttl_ms, tags)

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        return await _coordination.compare_and_delete(self, key, expected)

    async def delete_by_tag(self, name: str, value: str) -> int:
        return await _coordination.delete_by_tag(self, name, value)

    # --- listing ---------------------------------------------------------------------------
    async def _scan_raw(self, match: str) -> AsyncIterator[list[bytes]]:
        """Raw SCAN batches over the server (every primary of a cluster)."""
        client = self._client
        if not self._cluster:
            cursor = 0
            while True:
                cursor, batch = await client.scan(cursor, match=match, count=_SCAN_COUNT)
                if batch:
                    yield batch
                if cursor == 0:
                    return
        for node in client.get_primaries():
            cursor = 0
            while True:
                cursors, batch = await client.scan(
                    cursor, match=match, count=_SCAN_COUNT, target_nodes=node
                )
                cursor = cursors[node.name]
                if batch:
                    yield batch
                if cursor == 0:
                    break

    async def _matching(self, pattern: Pattern) -> AsyncIterator[list[str]]:
        """Batches of distinct user keys matching ``pattern`` (SCAN may repeat keys)."""
        parse = self._layout.parse_value_key
        matches = pattern.matches
        seen: set[str] = set()
        try:
            async for batch in self._scan_raw(self._layout.match(pattern.literal_prefix)):
                keys = []
                for raw in batch:
                    key = parse(raw)
                    if key is not None and key not in seen and matches(key):
                        seen.add(key)
                        keys.append(key)
                if keys:
                    yield keys
        except _ERRORS as exc:
            raise self._error(exc) from exc

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        if pattern.is_exact:
            value = await self.get(pattern.literal_prefix)
            if value is not None:
                yield pattern.literal_prefix, value
            return
        page = _SCAN_FIRST
        async for batch in self._matching(pattern):
            start = 0
            while start < len(batch):
                keys = batch[start : start + page]
                start += len(keys)
                try:
                    values = await self._mget(keys)
                except _ERRORS as exc:
                    raise self._error(exc) from exc
                sizes = [len(value) for value in values if value is not None]
                if sizes:  # none found (deleted meanwhile) says nothing about sizes
                    page = _scan_page(sum(sizes), len(sizes))
                for key, value in zip(keys, values, strict=True):
                    if value is not None:  # deleted or expired since SCAN saw it
                        yield key, value
                del values  # release this batch before fetching the next

    async def keys(self, pattern: Pattern) -> list[str]:
        if pattern.is_exact:
            return [pattern.literal_prefix] if await self.exists(pattern.literal_prefix) else []
        return [key async for keys in self._matching(pattern) for key in keys]

    async def count(self, pattern: Pattern) -> int:
        if pattern.is_exact:
            return int(await self.exists(pattern.literal_prefix))
        total = 0
        async for keys in self._matching(pattern):
            total += len(keys)
        return total

    async def clear(self) -> int:
        """Delete every value (with its tags), then any bookkeeping left over."""
        from dmem import compile_pattern

        removed = 0
        try:
            async for keys in self._matching(compile_pattern("*")):
                removed += sum(await self._eval_many(self._delete_calls(keys)))
            async for batch in self._scan_raw(self._layout.namespace_match()):
                calls = self._leftover_calls(batch)
                if calls:
                    await self._eval_many(calls)
        except _ERRORS as exc:
            raise self._error(exc) from exc
        return removed

    def _leftover_calls(
        self, batch: Sequence[bytes]
    ) -> list[tuple[Script, Sequence[str], Sequence[Any]]]:
        """Purge calls for stray tag hashes and tag indexes of this namespace."""
        calls: list[tuple[Script, Sequence[str], Sequence[Any]]] = []
        for raw in batch:
            prefix = self._prefix_of(raw)
            if prefix is None:
                continue
            rest = raw[len(prefix) :]
            if rest.startswith(b"m:"):
                calls.append((PURGE_META, (raw.decode(),), (prefix.decode(),)))
            elif rest.startswith(b"t:"):
                size, _, tail = rest[2:].partition(b":")
                if not size.isdigit():
                    continue
                name, value = tail[: int(size)], tail[int(size) + 1 :]
                calls.append((FIND, (raw.decode(),), (prefix.decode(), name, value)))
        return calls

    def _prefix_of(self, raw: bytes) -> bytes | None:
        for prefix in self._layout.prefixes:
            encoded = prefix.encode()
            if raw.startswith(encoded):
                return encoded
        return None

    # --- footprint -------------------------------------------------------------------------
    async def footprint(self) -> int:
        """Records this namespace holds in Redis (every bucket and every primary of a cluster).

        One per value key (``k:``) and per tag hash (``m:``, one per tagged key), one per
        member of each tag-index set (``t:``: stale members of expired or re-tagged keys
        included, until a purge removes them), and one per any other key under the
        namespace's prefix. It SCANs the whole database, like ``keys()``: a diagnostic,
        not for hot paths. Redis drops an expired value key and its tag hash by itself
        (lazily, as SCAN meets it, and in its active expiry cycle); index members are the
        plugin's to purge (``_scripts``).
        """
        kind_of = self._layout.kind_of
        seen: set[bytes] = set()
        total = 0
        try:
            async for batch in self._scan_raw(self._layout.namespace_match()):
                fresh = [raw for raw in batch if raw not in seen]  # SCAN may repeat a key
                seen.update(fresh)
                sets = [raw for raw in fresh if kind_of(raw) == b"t:"]
                total += len(fresh) - len(sets)
                if sets:
                    pipe = self._client.pipeline(transaction=False)
                    for raw in sets:
                        pipe.scard(raw)
                    total += sum(int(n) for n in await pipe.execute())
        except _ERRORS as exc:
            raise self._error(exc) from exc
        return total

    # --- health ----------------------------------------------------------------------------
    async def health(self) -> HealthStatus:
        details: dict[str, object] = {
            "url": self._config.shown_url,
            "mode": self._config.mode,
            "namespace": self.namespace,
        }
        if self._client is None:
            return HealthStatus("unhealthy", self.name, "not connected", details=details)
        start = time.perf_counter()
        try:
            await self._client.execute_command("PING")
            latency = (time.perf_counter() - start) * 1000
            if self._cluster:
                # Every primary must answer: one dict per node.
                info = await self._client.info("server", target_nodes=self._client.PRIMARIES)
                versions = sorted({str(v.get("redis_version")) for v in info.values()})
                details["redis_version"] = ",".join(versions)
                details["primaries"] = len(info)
            else:
                info = await self._client.info("server")
                details["redis_version"] = info.get("redis_version")
        except Exception as exc:  # noqa: BLE001 - health never raises
            return HealthStatus("unhealthy", self.name, str(self._error(exc)), details=details)
        return HealthStatus("healthy", self.name, "ok", latency_ms=latency, details=details)


async def _load_scripts(client: Any, cluster: bool) -> None:
    """Cache every script on the server(s) now, so the first call is one EVALSHA."""
    if cluster:
        for script in (*SCRIPTS, *_coordination.SCRIPTS):
            await client.execute_command(
                "SCRIPT", "LOAD", script.source, target_nodes=client.get_primaries()
            )
        return
    pipe = client.pipeline(transaction=False)
    for script in (*SCRIPTS, *_coordination.SCRIPTS):
        pipe.execute_command("SCRIPT", "LOAD", script.source)
    await pipe.execute()


async def _server_limit(client: Any, cluster: bool) -> int | None:
    """The server's ``proto-max-bulk-len`` (the smallest of a cluster's primaries), or None
    where ``CONFIG GET`` is refused (an ACL without it, a service that renames CONFIG)."""
    try:
        if cluster:
            replies = await client.execute_command(
                "CONFIG", "GET", "proto-max-bulk-len", target_nodes=client.get_primaries()
            )
            found = [_config_int(reply) for reply in replies.values()]
            limits = [limit for limit in found if limit is not None]
            return min(limits) if limits else None
        return _config_int(await client.execute_command("CONFIG", "GET", "proto-max-bulk-len"))
    except rex.ResponseError:  # NoPermissionError, unknown command
        return None


def _config_int(reply: Any) -> int | None:
    """The one value of a CONFIG GET reply (a dict, or a flat list in some clients)."""
    values = list(reply.values()) if isinstance(reply, dict) else list(reply or ())[1::2]
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None
