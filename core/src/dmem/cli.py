"""The ``dmem`` command: plugins, health, get/set/delete/keys/ttl, copy, conformance.

Values on the command line are JSON (``dmem set URL k '{"a": 1}'``); ``--string``
stores the argument as a str instead. Errors print one line to stderr (never a
secret: URLs are redacted) and exit with status 1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click

from ._health import redact_url
from ._open import open as open_store
from ._registry import registry
from ._store import Store
from .errors import DmemError

__all__ = ["main"]

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except DmemError as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


def _with_store(url: str, action: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        async with open_store(url) as store:
            return await action(store)

    return _run(go())


def _to_json(value: Any) -> str:
    if isinstance(value, bytes):
        return json.dumps({"$bytes_base64": base64.b64encode(value).decode("ascii")})
    return json.dumps(value, ensure_ascii=False)


@click.group()
@click.version_option(package_name="dmem")
def main() -> None:
    """dmem: one async memory API over pluggable backends."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List installed plugins, what they provide, and any that failed to load."""
    reg = registry()
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in reg.plugins], indent=2))
        return
    for info in reg.plugins:
        version = f" {info.version}" if info.version else ""
        click.echo(f"{info.name}{version} ({info.distribution or info.module})")
        for label, items in (
            ("providers", info.providers),
            ("middleware", info.middleware),
            ("embedders", info.embedders),
        ):
            if items:
                click.echo(f"  {label}: {', '.join(items)}")
        if info.error:
            click.echo(f"  FAILED: {info.error}")


@main.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def health(url: str, as_json: bool) -> None:
    """Check a backend; exit 1 unless it is healthy."""

    async def check(store: Store) -> Any:
        return await store.health()

    report = _with_store(url, check)
    if as_json:
        click.echo(json.dumps({"url": redact_url(url), **report.to_dict()}, indent=2))
    else:
        latency = "" if report.latency_ms is None else f" ({report.latency_ms:.2f} ms)"
        click.echo(f"{report.status}: {report.provider} {report.message}{latency}")
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("url")
@click.argument("key")
def get(url: str, key: str) -> None:
    """Print the value of KEY as JSON (bytes as {"$bytes_base64": ...}); exit 1 if missing."""
    missing = object()

    async def read(store: Store) -> Any:
        return await store.get(key, missing)

    value = _with_store(url, read)
    if value is missing:
        click.echo(f"error: key {key!r} not found", err=True)
        sys.exit(1)
    click.echo(_to_json(value))


@main.command(name="set")
@click.argument("url")
@click.argument("key")
@click.argument("value")
@click.option("--ttl", type=float, default=None, help="Seconds until the key expires.")
@click.option("--tag", "tags", multiple=True, help="NAME=VALUE (repeatable).")
@click.option("--nx", is_flag=True, help="Only if the key does not exist (if_not_exists).")
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as a str, not JSON.")
def set_command(
    url: str,
    key: str,
    value: str,
    ttl: float | None,
    tags: tuple[str, ...],
    nx: bool,
    as_string: bool,
) -> None:
    """Store VALUE (JSON unless --string) under KEY; exit 1 if --nx and it exists."""
    if as_string:
        parsed: Any = value
    else:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON ({exc}); use --string for text") from None
    tag_map: dict[str, str] = {}
    for item in tags:
        name, sep, tag_value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"--tag takes NAME=VALUE, got {item!r}")
        tag_map[name] = tag_value

    async def write(store: Store) -> bool:
        return await store.set(key, parsed, ttl=ttl, if_not_exists=nx, tags=tag_map or None)

    written = _with_store(url, write)
    click.echo("written" if written else "not written (key exists)")
    sys.exit(0 if written else 1)


@main.command()
@click.argument("url")
@click.argument("keys", nargs=-1, required=True)
def delete(url: str, keys: tuple[str, ...]) -> None:
    """Delete KEYS; print how many were live."""

    async def remove(store: Store) -> int:
        return await store.delete_many(keys)

    click.echo(str(_with_store(url, remove)))


@main.command()
@click.argument("url")
@click.argument("pattern", default="*")
def keys(url: str, pattern: str) -> None:
    """List live keys matching PATTERN (glob), one per line, sorted."""

    async def listing(store: Store) -> list[str]:
        return await store.keys(pattern)

    for key in sorted(_with_store(url, listing)):
        click.echo(key)


@main.command()
@click.argument("url")
@click.argument("key")
def ttl(url: str, key: str) -> None:
    """Print seconds left for KEY, or 'none' when it never expires."""

    async def remaining(store: Store) -> float | None:
        return await store.ttl(key)

    left = _with_store(url, remaining)
    click.echo("none" if left is None else f"{left:.3f}")


@main.command()
@click.argument("source")
@click.argument("destination")
@click.option("--pattern", default="*", help="Only keys matching this glob.")
@click.option("--batch", default=500, show_default=True, help="Keys per write batch.")
def copy(source: str, destination: str, pattern: str, batch: int) -> None:
    """Copy live keys (values, tags, remaining ttl) from SOURCE to DESTINATION."""

    async def go() -> int:
        copied = 0
        async with open_store(source) as src, open_store(destination) as dst:
            total = await src.count(pattern)
            with click.progressbar(length=total, label="copying", file=sys.stderr) as bar:
                async for key, value in src.scan(pattern):
                    try:
                        tags = await src.get_tags(key)
                        left = await src.ttl(key)
                    except DmemError:
                        continue  # expired or deleted meanwhile
                    await dst.set(key, value, ttl=left if left else None, tags=tags or None)
                    copied += 1
                    bar.update(1)
        return copied

    click.echo(f"copied {_run(go())} keys")


@main.command()
@click.argument("url")
@click.option("--ops", default=2000, show_default=True, help="Operations per measurement.")
@click.option("--size", default=100, show_default=True, help="Value size in characters.")
def bench(url: str, ops: int, size: int) -> None:
    """Measure single set/get and batch throughput against URL (in a scratch namespace)."""

    async def go() -> list[tuple[str, float]]:
        rows: list[tuple[str, float]] = []
        async with open_store(url, namespace=f"dmem-bench-{time.time_ns()}") as store:
            value = "x" * size
            keys = [f"bench:{i}" for i in range(ops)]
            start = time.perf_counter()
            for key in keys:
                await store.set(key, value)
            rows.append(("set", ops / (time.perf_counter() - start)))
            start = time.perf_counter()
            for key in keys:
                await store.get(key)
            rows.append(("get", ops / (time.perf_counter() - start)))
            start = time.perf_counter()
            await store.set_many({key: value for key in keys})
            rows.append((f"set_many of {ops} (keys/s)", ops / (time.perf_counter() - start)))
            start = time.perf_counter()
            await store.get_many(keys)
            rows.append((f"get_many of {ops} (keys/s)", ops / (time.perf_counter() - start)))
            await store.clear()
        return rows

    for name, rate in _run(go()):
        click.echo(f"{name:32} {rate:12,.0f} /s")


@main.command()
@click.argument("url")
@click.option("--profile", default="ci", show_default=True, help="Hypothesis profile.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def conformance(url: str, profile: str, pytest_args: tuple[str, ...]) -> None:
    """Run the conformance suite against URL and print a clause-by-clause table."""
    try:
        from dmem_conformance.runner import main as run_suite
    except ImportError:
        click.echo("error: the suite is not installed: pip install 'dmem[conformance]'", err=True)
        sys.exit(2)
    sys.exit(run_suite(url, profile, list(pytest_args)))
