"""The checkpointer's logic, written once as coroutines over an open ``dmem.Store``.

``AsyncDmemSaver`` awaits them on the caller's loop; ``DmemSaver`` runs them on dmem's loop
thread through ``dmem.run_sync`` (its store lives there). Records are bytes (msgpack of the
serde's typed pairs), so every backend stores them alike.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, NamedTuple
from uuid import UUID

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import _DeltaSnapshot  # DeltaChannel's (beta) blob

import dmem

from . import _keys
from ._keys import BLOB, CHECKPOINT, WRITE

__all__ = ["PRUNE_STRATEGIES", "RUN_TAG", "Core", "Target", "next_version", "thread_of"]

# The tag a checkpoint's keys carry with the run that saved it (for delete_for_runs).
RUN_TAG = "langgraph_run"
PRUNE_STRATEGIES = ("keep_latest", "delete")
# Metadata keys that LangGraph writes for a thread using a DeltaChannel.
_DELTA_METADATA = ("counters_since_delta_snapshot", "delta_writes_versioned")
_EMPTY = "empty"
_BATCH = 64  # checkpoints a list fetches per round trip


class Target(NamedTuple):
    """One checkpoint's address."""

    thread_id: str
    ns: str
    checkpoint_id: str


def next_version(current: str | int | None) -> str:
    """The version after ``current``: strings that sort by their counter.

    As InMemorySaver and the official savers make them; the random part tells apart the
    versions that concurrent forks make from one parent.
    """
    if current is None:
        counter = 0
    elif isinstance(current, int):
        counter = current
    else:
        counter = int(current.split(".")[0])
    return f"{counter + 1:032}.{random.random():016}"


class _Record(NamedTuple):
    checkpoint: tuple[str, bytes]
    metadata: tuple[str, bytes]
    parent_id: str | None
    delta: bool


def _pack(*fields: Any) -> bytes:
    return ormsgpack.packb(list(fields))


def _unpack(data: object, key: str, size: int) -> list[Any]:
    if isinstance(data, bytes):
        try:
            fields = ormsgpack.unpackb(data)
        except ormsgpack.MsgpackDecodeError:
            fields = None
        if isinstance(fields, list) and len(fields) == size:
            return fields
    raise dmem.CorruptValueError(f"{key!r} does not hold a langgraph-checkpoint-dmem record")


def _record(data: object, key: str) -> _Record:
    cp_type, cp_bytes, md_type, md_bytes, parent, delta = _unpack(data, key, 6)
    return _Record((cp_type, cp_bytes), (md_type, md_bytes), parent, bool(delta))


def _text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, UUID)) and not isinstance(value, bool):
        # Ints and UUIDs, as the official savers take them (str() of the value).
        return str(value)
    raise dmem.InvalidArgumentError(f"{what} must be a str, not {type(value).__name__}")


def _configurable(config: RunnableConfig | None) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise dmem.InvalidArgumentError("config must be a RunnableConfig mapping")
    conf = config.get("configurable")
    if not isinstance(conf, Mapping):
        raise dmem.InvalidArgumentError("config has no 'configurable' mapping")
    return conf


def thread_of(config: RunnableConfig | None) -> tuple[str, str, str | None]:
    """(thread_id, checkpoint_ns, checkpoint_id or None) of a config, checked before any I/O."""
    conf = _configurable(config)
    if "thread_id" not in conf or conf["thread_id"] is None:
        raise dmem.InvalidArgumentError("config['configurable'] has no 'thread_id'")
    thread_id = _text(conf["thread_id"], "thread_id")
    ns = _text(conf.get("checkpoint_ns") or "", "checkpoint_ns")
    assert config is not None
    checkpoint_id = get_checkpoint_id(config)
    return thread_id, ns, None if checkpoint_id is None else _text(checkpoint_id, "checkpoint_id")


def _config(target: Target) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": target.thread_id,
            "checkpoint_ns": target.ns,
            "checkpoint_id": target.checkpoint_id,
        }
    }


def _thread_ids(thread_ids: Sequence[str]) -> list[str]:
    if isinstance(thread_ids, (str, bytes)) or not isinstance(thread_ids, Iterable):
        raise dmem.InvalidArgumentError("thread_ids must be a sequence of thread IDs, not a str")
    return [_text(t, "thread_id") for t in thread_ids]


class Core:
    """The operations of a saver over ``store`` with ``serde``."""

    __slots__ = ("serde", "store")

    def __init__(self, store: dmem.Store, serde: SerializerProtocol) -> None:
        self.store = store
        self.serde = serde

    # --- writes ------------------------------------------------------------------------------
    async def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns, parent_id = thread_of(config)
        checkpoint_id = _text(checkpoint["id"], "checkpoint['id']")
        copy: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = copy.pop("channel_values", {})
        full_metadata = get_checkpoint_metadata(config, metadata)
        delta = any(isinstance(v, _DeltaSnapshot) for v in values.values()) or any(
            k in full_metadata for k in _DELTA_METADATA
        )
        items: dict[str, bytes] = {}
        for channel, version in new_versions.items():
            typed = self.serde.dumps_typed(values[channel]) if channel in values else (_EMPTY, b"")
            items[_keys.blob_key(thread_id, ns, channel, version)] = _pack(*typed)
        items[_keys.checkpoint_key(thread_id, ns, checkpoint_id)] = _pack(
            *self.serde.dumps_typed(copy),
            *self.serde.dumps_typed(full_metadata),
            parent_id,
            delta,
        )
        run_id = full_metadata.get("run_id")
        tags = None if run_id is None else {RUN_TAG: _keys.part(str(run_id))}
        # One atomic batch: the checkpoint is never visible without its channel values.
        await self.store.set_many(items, tags=tags)
        return _config(Target(thread_id, ns, checkpoint_id))

    async def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        thread_id, ns, checkpoint_id = thread_of(config)
        if checkpoint_id is None:
            raise dmem.InvalidArgumentError(
                "put_writes needs config['configurable']['checkpoint_id']"
            )
        task_id = _text(task_id, "task_id")
        items: dict[str, bytes] = {}
        for idx, (channel, value) in enumerate(writes):
            slot = WRITES_IDX_MAP.get(channel, idx)
            items[_keys.write_key(thread_id, ns, checkpoint_id, task_id, slot)] = _pack(
                task_id, channel, *self.serde.dumps_typed(value), task_path, slot
            )
        if not items:
            return
        # As the official savers: special writes (errors, interrupts...) replace what a
        # task saved before; ordinary ones keep the first save of a (task, index).
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        await self.store.set_many(items, if_not_exists=not replace)

    # --- reads -------------------------------------------------------------------------------
    async def _ids(self, thread_id: str, ns: str) -> list[str]:
        keys = await self.store.keys(_keys.prefix_pattern(CHECKPOINT, thread_id, ns))
        return [_keys.decode_parts(k)[2] for k in keys]

    async def _targets(self, thread_id: str | None, ns: str | None) -> list[Target]:
        if thread_id is None:
            pattern = dmem.escape_pattern(f"{CHECKPOINT}:") + "*"
        elif ns is None:
            pattern = _keys.prefix_pattern(CHECKPOINT, thread_id)
        else:
            pattern = _keys.prefix_pattern(CHECKPOINT, thread_id, ns)
        found = []
        for key in await self.store.keys(pattern):
            parts = _keys.decode_parts(key)
            if len(parts) == 3:
                found.append(Target(*parts))
        return found

    async def _writes(self, target: Target) -> list[tuple[str, str, Any]]:
        rows = []
        # One scan (keys with their values) instead of keys then get_many: a round trip less.
        async for key, data in self.store.scan(_keys.prefix_pattern(WRITE, *target)):
            task_id, channel, w_type, w_bytes, task_path, idx = _unpack(data, key, 6)
            rows.append(
                (writes_sort_key(task_path, task_id, idx), task_id, channel, w_type, w_bytes)
            )
        rows.sort(key=lambda row: row[0])
        return [(r[1], r[2], self.serde.loads_typed((r[3], r[4]))) for r in rows]

    async def _values(self, target: Target, versions: Mapping[str, Any]) -> dict[str, Any]:
        blob_keys = {
            _keys.blob_key(target.thread_id, target.ns, ch, ver): ch for ch, ver in versions.items()
        }
        values: dict[str, Any] = {}
        if blob_keys:
            for key, data in (await self.store.get_many(blob_keys)).items():
                b_type, b_bytes = _unpack(data, key, 2)
                if b_type != _EMPTY:
                    values[blob_keys[key]] = self.serde.loads_typed((b_type, b_bytes))
        return values

    async def _tuple(
        self, target: Target, record: _Record, metadata: CheckpointMetadata | None = None
    ) -> CheckpointTuple:
        checkpoint: Checkpoint = self.serde.loads_typed(record.checkpoint)
        # Both reads at once: on a backend with a connection pool (PostgreSQL, Redis) they
        # overlap; on one connection (SQLite) they just queue.
        values, writes = await asyncio.gather(
            self._values(target, checkpoint.get("channel_versions", {})), self._writes(target)
        )
        parent = (
            None
            if record.parent_id is None
            else _config(Target(target.thread_id, target.ns, record.parent_id))
        )
        return CheckpointTuple(
            config=_config(target),
            checkpoint={**checkpoint, "channel_values": values},
            metadata=self.serde.loads_typed(record.metadata) if metadata is None else metadata,
            parent_config=parent,
            pending_writes=writes,
        )

    async def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, ns, checkpoint_id = thread_of(config)
        if checkpoint_id is None:
            ids = await self._ids(thread_id, ns)
            if not ids:
                return None
            checkpoint_id = max(ids)
        target = Target(thread_id, ns, checkpoint_id)
        key = _keys.checkpoint_key(*target)
        data = await self.store.get(key)
        if data is None:
            return None
        return await self._tuple(target, _record(data, key))

    async def search(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 (LangGraph's name)
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        thread_id: str | None = None
        ns: str | None = None
        only_id: str | None = None
        if config is not None:
            conf = _configurable(config)
            if conf.get("thread_id") is not None:
                thread_id = thread_of(config)[0]
            if conf.get("checkpoint_ns") is not None:
                ns = _text(conf["checkpoint_ns"], "checkpoint_ns")
            if (checkpoint_id := get_checkpoint_id(config)) is not None:
                only_id = _text(checkpoint_id, "checkpoint_id")
        before_id = None if before is None else get_checkpoint_id(before)
        if filter is not None and not isinstance(filter, Mapping):
            raise dmem.InvalidArgumentError("filter must be a mapping of metadata keys to values")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise dmem.InvalidArgumentError("limit must be an int or None")
        if limit is not None and limit <= 0:
            return
        targets = [
            t
            for t in await self._targets(thread_id, ns)
            if (only_id is None or t.checkpoint_id == only_id)
            and (ns is None or t.ns == ns)
            and (before_id is None or t.checkpoint_id < before_id)
        ]
        # Newest first, as LangGraph's savers list (checkpoint IDs sort by time).
        targets.sort(key=lambda t: (t.checkpoint_id, t.thread_id, t.ns), reverse=True)
        left = limit
        start = 0
        while start < len(targets):
            # Without a filter every record read is returned: read no more than the limit.
            size = _BATCH if filter or left is None else min(_BATCH, left)
            batch = targets[start : start + size]
            start += size
            keys = [_keys.checkpoint_key(*t) for t in batch]
            stored = await self.store.get_many(keys)
            chosen: list[tuple[Target, _Record, CheckpointMetadata]] = []
            for target, key in zip(batch, keys, strict=True):
                if key not in stored:
                    continue  # deleted since it was listed
                record = _record(stored[key], key)
                metadata: CheckpointMetadata = self.serde.loads_typed(record.metadata)
                if filter and not all(metadata.get(k) == v for k, v in filter.items()):
                    continue
                chosen.append((target, record, metadata))
                if left is not None and len(chosen) == left:
                    break
            # The chosen checkpoints' values and writes are read concurrently (they overlap
            # on a pooled backend), then yielded newest first.
            for item in await asyncio.gather(*(self._tuple(*c) for c in chosen)):
                yield item
            if left is not None:
                left -= len(chosen)
                if left <= 0:
                    return

    # --- deletion, copies, pruning -----------------------------------------------------------
    async def _thread_keys(self, thread_id: str, kind: str) -> list[str]:
        return await self.store.keys(_keys.prefix_pattern(kind, thread_id))

    async def delete_thread(self, thread_id: str) -> None:
        thread_id = _text(thread_id, "thread_id")
        # Checkpoints first: a reader never finds a checkpoint whose values are gone.
        for kind in (CHECKPOINT, WRITE, BLOB):
            keys = await self._thread_keys(thread_id, kind)
            if keys:
                await self.store.delete_many(keys)

    async def _collect_blobs(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Delete the blobs of (thread, ns) that no checkpoint refers to any more."""
        for thread_id, ns in sorted(set(pairs)):
            # Blobs are listed before checkpoints: a put between the two lists saves its
            # blobs and checkpoint in one batch, so it is either in neither list or its
            # blobs are referenced by a checkpoint seen here.
            blob_keys = await self.store.keys(_keys.prefix_pattern(BLOB, thread_id, ns))
            if not blob_keys:
                continue
            cp_keys = await self.store.keys(_keys.prefix_pattern(CHECKPOINT, thread_id, ns))
            referenced: set[str] = set()
            for key, data in (await self.store.get_many(cp_keys)).items() if cp_keys else ():
                checkpoint = self.serde.loads_typed(_record(data, key).checkpoint)
                for ch, ver in checkpoint.get("channel_versions", {}).items():
                    referenced.add(_keys.blob_key(thread_id, ns, ch, ver))
            garbage = [k for k in blob_keys if k not in referenced]
            if garbage:
                await self.store.delete_many(garbage)

    async def _delete_checkpoints(self, targets: Sequence[Target]) -> None:
        if not targets:
            return
        await self.store.delete_many(_keys.checkpoint_key(*t) for t in targets)
        writes: list[str] = []
        for target in targets:
            writes.extend(await self.store.keys(_keys.prefix_pattern(WRITE, *target)))
        if writes:
            await self.store.delete_many(writes)
        await self._collect_blobs((t.thread_id, t.ns) for t in targets)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = _thread_ids(run_ids)
        targets: list[Target] = []
        for run_id in runs:
            for key in await self.store.find_by_tag(RUN_TAG, _keys.part(run_id)):
                if key.startswith(f"{CHECKPOINT}:"):
                    targets.append(Target(*_keys.decode_parts(key)))
        await self._delete_checkpoints(targets)

    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source = _text(source_thread_id, "source_thread_id")
        target = _text(target_thread_id, "target_thread_id")
        if source == target:
            return
        moved: dict[str, bytes] = {}
        for kind in (BLOB, WRITE):
            keys = await self._thread_keys(source, kind)
            if keys:
                for key, data in (await self.store.get_many(keys)).items():
                    moved[":".join((kind, _keys.part(target), *key.split(":")[2:]))] = data
        if moved:
            await self.store.set_many(moved)
        # Checkpoints last (so a copied checkpoint always finds its values), each batch
        # with the tag of its run so delete_for_runs finds the copies too.
        cp_keys = await self._thread_keys(source, CHECKPOINT)
        by_run: dict[str | None, dict[str, bytes]] = {}
        for key, data in (await self.store.get_many(cp_keys)).items() if cp_keys else ():
            tags = await self.store.get_tags(key)
            new_key = ":".join((CHECKPOINT, _keys.part(target), *key.split(":")[2:]))
            by_run.setdefault(tags.get(RUN_TAG), {})[new_key] = data
        for run, items in by_run.items():
            await self.store.set_many(items, tags=None if run is None else {RUN_TAG: run})

    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        threads = _thread_ids(thread_ids)
        if strategy not in PRUNE_STRATEGIES:
            raise dmem.InvalidArgumentError(
                f"unknown prune strategy {strategy!r} (one of {', '.join(PRUNE_STRATEGIES)})"
            )
        if strategy == "delete":
            for thread_id in threads:
                await self.delete_thread(thread_id)
            return
        plans: list[list[Target]] = []
        delta_threads: list[str] = []
        for thread_id in threads:
            targets = await self._targets(thread_id, None)
            if not targets:
                continue
            keys = [_keys.checkpoint_key(*t) for t in targets]
            records = await self.store.get_many(keys)
            if any(_record(data, key).delta for key, data in records.items()):
                delta_threads.append(thread_id)
                continue
            latest: dict[str, str] = {}
            for t in targets:
                if t.checkpoint_id > latest.get(t.ns, ""):
                    latest[t.ns] = t.checkpoint_id
            plans.append([t for t in targets if t.checkpoint_id != latest[t.ns]])
        if delta_threads:
            # keep_latest would cut the chain a DeltaChannel rebuilds its value from.
            raise dmem.NotSupportedError(
                "keep_latest can't prune threads that use a DeltaChannel: "
                + ", ".join(sorted(delta_threads))
            )
        for plan in plans:
            await self._delete_checkpoints(plan)
