"""``dmem rekey``: re-encrypt every value of a namespace under the primary key, in place.

Each key is read as stored (the envelope, with its remaining ttl and its tags), decrypted,
encrypted under the primary key, and written back with the backend's ``compare_and_set``
against the exact envelope read. So a value a concurrent writer stored in between is never
overwritten with the old one: the swap fails, and the key is read again. The ttl written is
what was left at the read less the time since (a key never expires earlier than it would
have, and at most a ms or so later); the tags are those read. Keys already under the
primary key are left alone, so running it twice does nothing the second time.

Keys come from ``--key ID=env:NAME`` or ``--key ID=file:PATH`` (as
:class:`~dmem.middleware.Encryption` takes them), never as bytes on the command line, where
they would be in the shell's history and in every process listing.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import click

from ._cli_common import (
    EXIT_ERROR,
    EXIT_USAGE,
    Progress,
    batch_option,
    fail,
    namespace_option,
    open_url,
    refuse_memory_write,
    run,
)
from .errors import (
    CorruptValueError,
    DmemError,
    KeyNotFoundError,
    NotSupportedError,
    ProviderError,
)
from .middleware._encryption import Encryption, envelope_key_id
from .provider import KVProvider

__all__ = ["rekey"]

# Keys in flight at once: hides a network round trip, stays within any connection pool.
_CONCURRENCY = 16
# A key another writer keeps changing is given up after this many lost swaps (reported).
_ATTEMPTS = 20
_SHOWN = 5  # keys named in the report of each kind of problem


@dataclass
class _Counts:
    rekeyed: int = 0
    current: int = 0  # already under the primary key
    vanished: int = 0  # deleted or expired while rekey ran
    plain: list[str] = field(default_factory=list)  # not an envelope
    unreadable: list[str] = field(default_factory=list)  # unknown key id, fails authentication
    busy: list[str] = field(default_factory=list)  # lost every swap to other writers


def _parse_keys(given: tuple[str, ...], primary: str | None) -> Encryption:
    keys: dict[str, bytes | str] = {}
    for item in given:
        key_id, eq, source = item.partition("=")
        if not eq or not source.startswith(("env:", "file:")):
            # Not quoted: the value may be a key pasted in.
            fail(
                f"--key {key_id if eq else '...'}=...: give ID=env:NAME or ID=file:PATH; a "
                "key is never taken on the command line (it would show in the shell's "
                "history and in process listings)",
                EXIT_USAGE,
            )
        if key_id in keys:
            fail(f"--key {key_id!r} given twice", EXIT_USAGE)
        keys[key_id] = source
    if not keys:
        fail("give at least one --key ID=env:NAME or ID=file:PATH", EXIT_USAGE)
    try:
        return Encryption(keys=keys, primary=primary)
    except DmemError as exc:
        fail(f"{type(exc).__name__}: {exc}", EXIT_USAGE)


async def _call(coro: Any) -> Any:
    """Await a raw provider call, with a backend's own exception as a ProviderError (the
    store does that for calls that go through it; rekey talks to the provider directly)."""
    try:
        return await coro
    except DmemError:
        raise
    except Exception as exc:
        raise ProviderError(
            f"backend error: {type(exc).__module__}.{type(exc).__name__}: {exc}"
        ) from exc


async def _rekey_one(
    provider: KVProvider, spec: Encryption, key: str, counts: _Counts, adopt: bool
) -> None:
    # An optional member (contract v1.1), so not on KVProvider; go() checked it is there.
    swap: Any = getattr(provider, "compare_and_set", None)
    namespace = provider.namespace
    for _ in range(_ATTEMPTS):
        entry = await _call(provider.get_entry(key))
        read_at = time.monotonic()
        if entry is None:
            counts.vanished += 1
            return
        stored, left_ms = entry
        try:
            key_id = envelope_key_id(stored)
        except CorruptValueError:
            if not adopt:
                counts.plain.append(key)
                return
            plaintext = stored  # --include-plaintext: written before encryption was on
        else:
            if key_id == spec.primary:
                counts.current += 1
                return
            try:
                plaintext = spec.open(namespace, key, stored)
            except CorruptValueError:
                counts.unreadable.append(key)
                return
        try:
            tags = await _call(provider.get_tags(key))
        except KeyNotFoundError:
            counts.vanished += 1
            return
        ttl_ms = None
        if left_ms is not None:
            ttl_ms = math.ceil(left_ms - (time.monotonic() - read_at) * 1000)
            if ttl_ms <= 0:
                counts.vanished += 1
                return
        sealed = spec.seal(namespace, key, plaintext)
        if await _call(swap(key, stored, sealed, ttl_ms=ttl_ms, tags=tags)):
            counts.rekeyed += 1
            return
        # Another writer changed the key since the read: look again.
    counts.busy.append(key)


async def _rekey_all(
    provider: KVProvider,
    spec: Encryption,
    keys: list[str],
    batch: int,
    adopt: bool,
    progress: Progress,
) -> _Counts:
    counts = _Counts()
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(key: str) -> None:
        async with gate:
            await _rekey_one(provider, spec, key, counts, adopt)

    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        await asyncio.gather(*(one(key) for key in chunk))
        progress.update(len(chunk))
    return counts


def _named(keys: list[str]) -> str:
    shown = ", ".join(repr(key) for key in sorted(keys)[:_SHOWN])
    return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


@click.command()
@click.argument("url")
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="ID=env:NAME|ID=file:PATH",
    help="A key id and where its key is (repeatable): every key given decrypts.",
)
@click.option("--primary", default=None, metavar="ID", help="The key id to encrypt under.")
@click.option("--pattern", default="*", show_default=True, help="Only keys matching this glob.")
@click.option(
    "--include-plaintext",
    is_flag=True,
    help="Also encrypt values stored without encryption (else they are reported).",
)
@batch_option("Keys per progress step.")
@namespace_option
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def rekey(
    url: str,
    keys: tuple[str, ...],
    primary: str | None,
    pattern: str,
    include_plaintext: bool,
    batch: int,
    namespace: str | None,
    quiet: bool,
) -> None:
    """Re-encrypt every value of URL under the primary key, keeping ttls and tags.

    Run it after adding a new primary key (docs/encryption.md, "Rotation"); once it
    reports nothing left under an old key id, that key can be dropped. Safe to run while
    the store is in use, and again. Exit 1 when some value could not be re-encrypted.
    """
    refuse_memory_write(url, "cannot rekey")
    spec = _parse_keys(keys, primary)

    async def go() -> _Counts:
        async with open_url(url, namespace, create=False) as store:
            provider = store.provider
            if not callable(getattr(provider, "compare_and_set", None)):
                kind = type(provider)
                raise NotSupportedError(
                    f"{kind.__module__}.{kind.__qualname__} has no compare_and_set, which "
                    "rekey needs so that it never overwrites a concurrent write"
                )
            found = await store.keys(pattern)
            with Progress("rekeying", len(found), quiet=quiet) as progress:
                return await _rekey_all(provider, spec, found, batch, include_plaintext, progress)

    counts = run(go(), url)
    click.echo(
        f"rekeyed {counts.rekeyed} keys to key id {spec.primary!r}; {counts.current} were "
        f"already under it, {counts.vanished} went away while rekey ran"
    )
    problems = []
    if counts.plain:
        problems.append(
            f"{len(counts.plain)} values are not encrypted (left alone; --include-plaintext "
            f"encrypts them): {_named(counts.plain)}"
        )
    if counts.unreadable:
        problems.append(
            f"{len(counts.unreadable)} values cannot be decrypted with the keys given (an "
            f"unknown key id, or changed bytes): {_named(counts.unreadable)}"
        )
    if counts.busy:
        problems.append(
            f"{len(counts.busy)} keys changed on every one of {_ATTEMPTS} attempts (run "
            f"rekey again): {_named(counts.busy)}"
        )
    if problems:
        fail("; ".join(problems), EXIT_ERROR, urls=(url,))
