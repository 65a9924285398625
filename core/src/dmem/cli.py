"""The ``dmem`` command. Every subcommand is documented in docs/cli.md.

Values on the command line are JSON (``dmem set URL k '{"a": 1}'``); ``--string``
stores the argument as a str instead. Errors print one line to stderr (never a
secret: URLs are redacted) and exit with status 1; a command refused before doing
anything (bad options, a write into ``memory://``) exits with status 2.

Subcommands that plugins bring (``dmem conformance`` from dmem-conformance) come
through the ``dmem_register_commands`` hook, loaded only when a command name is not a
core one (or for ``--help`` and ``dmem plugins``): the core imports no plugin.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from . import _cli_common as common
from ._cli_common import (
    EXIT_ERROR,
    EXIT_USAGE,
    Record,
    Seconds,
    export_line,
    fail,
    namespace_option,
    open_url,
    parse_json,
    refuse_memory_write,
    run,
)
from ._cli_plugin_new import plugin
from ._cli_rekey import rekey
from ._cli_transfer import copy, export, import_command
from ._health import HealthStatus, redact_url
from ._open import split_url
from ._registry import registry
from ._store import Store
from .errors import DmemError

__all__ = ["main"]

T = TypeVar("T")

# Commands that plugins bring, with the root extra that installs each: asked for while
# missing, they name the install command instead of click's "No such command".
_EXTRA_FOR_COMMAND = {"conformance": "conformance"}


class _Main(click.Group):
    """The ``dmem`` group: core commands at once, plugin commands on first need."""

    _plugins_added = False

    def add_plugin_commands(self) -> None:
        if not self._plugins_added:
            self._plugins_added = True
            registry().register_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self.add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in _EXTRA_FOR_COMMAND:
            return _missing_plugin_command(cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return super().list_commands(ctx)


def _missing_plugin_command(name: str) -> click.Command:
    def explain(args: tuple[str, ...]) -> None:
        fail(
            f"'dmem {name}' comes with a plugin that is not installed or not loaded: "
            f"pip install 'dmem[{_EXTRA_FOR_COMMAND[name]}]' (if it is installed, see "
            "'dmem plugins' and DMEM_LOAD_PLUGINS)",
            EXIT_USAGE,
        )

    return click.Command(
        name,
        callback=explain,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True},
        add_help_option=False,
    )


def _versions(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: dmem's version, then each plugin distribution's (not loading any)."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"dmem {_version('dmem')}")
    names: dict[str, list[str]] = {}
    for entry_point in importlib.metadata.entry_points(group="dmem"):
        dist = entry_point.dist
        if dist is not None and dist.name != "dmem":
            names.setdefault(dist.name, []).append(entry_point.name)
    for dist_name in sorted(names):
        plugins = ", ".join(sorted(set(names[dist_name])))
        click.echo(f"{dist_name} {_version(dist_name)} (plugin: {plugins})")
    ctx.exit()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


@click.group(cls=_Main)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_versions,
    help="Show the version of dmem and of each installed plugin, and exit.",
)
def main() -> None:
    """dmem: one async memory API over pluggable backends (docs/cli.md)."""


def _with_store(
    url: str,
    namespace: str | None,
    action: Callable[[Store], Awaitable[T]],
    *,
    create: bool = False,
) -> T:
    """Run ``action`` on the store at ``url``; only commands that write pass ``create=True``
    (a missing SQLite file or Chroma directory is otherwise an error, not created)."""

    async def go() -> T:
        async with open_url(url, namespace, create=create) as store:
            return await action(store)

    return run(go(), url)


def _to_json(value: Any) -> str:
    if isinstance(value, bytes):
        return json.dumps({"$bytes_base64": base64.b64encode(value).decode("ascii")})
    return json.dumps(value, ensure_ascii=False)


_TTL = Seconds()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List installed plugins, what they provide, and any that failed to load."""
    reg = registry()
    main.add_plugin_commands()  # so each plugin's commands (and their errors) show
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
            ("commands", info.commands),
        ):
            if items:
                click.echo(f"  {label}: {', '.join(items)}")
        if info.error:
            click.echo(f"  FAILED: {info.error}")


@main.command()
@click.argument("url")
@namespace_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def health(url: str, namespace: str | None, as_json: bool) -> None:
    """Check a backend; exit 1 unless it is healthy (also when it cannot be opened)."""

    async def check() -> HealthStatus:
        try:
            async with open_url(url, namespace, create=False) as store:
                return await store.health()
        except DmemError as exc:
            # A backend that is down fails already when opened: that is a health report
            # too, and a script reading --json gets one either way.
            message = common.scrub(f"cannot open: {type(exc).__name__}: {exc}", (url,))
            return HealthStatus("unhealthy", _provider_name(url), message)

    report = run(check(), url)
    if as_json:
        click.echo(json.dumps({"url": redact_url(url), **report.to_dict()}, indent=2))
    else:
        latency = "" if report.latency_ms is None else f" ({report.latency_ms:.2f} ms)"
        click.echo(f"{report.status}: {report.provider} {report.message}{latency}")
    sys.exit(0 if report.ok else EXIT_ERROR)


def _provider_name(url: str) -> str:
    try:
        scheme = split_url(url)[0]
    except DmemError:
        return "unknown"
    spec = registry().provider_for("kv", scheme)
    return spec.name if spec is not None else scheme


@main.command()
@click.argument("url")
@click.argument("key")
@namespace_option
@click.option("--meta", is_flag=True, help="Print key, value, tags and ttl as one JSON object.")
def get(url: str, key: str, namespace: str | None, meta: bool) -> None:
    """Print the value of KEY as JSON (bytes as {"$bytes_base64": ...}); exit 1 if missing.

    With --meta: one object in the export format (docs/cli.md), with "ttl" the seconds
    left (null: no expiry) and "bytes" (base64) instead of "value" for bytes.
    """
    missing = object()

    async def read(store: Store) -> tuple[Any, dict[str, str], float | None]:
        value = await store.get(key, missing)
        if value is missing or not meta:
            return value, {}, None
        return value, await store.get_tags(key), await store.ttl(key)

    value, tags, left = _with_store(url, namespace, read)
    if value is missing:
        fail(f"key {key!r} not found")
    if meta:
        ttl_ms = None if left is None else max(1, round(left * 1000))
        line = export_line(Record(key, value, tags, ttl_ms, time.monotonic()), time.monotonic())
        click.echo((line or b"").decode("utf-8"), nl=False)
        return
    click.echo(_to_json(value))


@main.command(name="set")
@click.argument("url")
@click.argument("key")
@click.argument("value")
@namespace_option
@click.option("--ttl", type=_TTL, default=None, help="Seconds until the key expires (> 0).")
@click.option("--tag", "tags", multiple=True, help="NAME=VALUE (repeatable).")
@click.option("--nx", is_flag=True, help="Only if the key does not exist (if_not_exists).")
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as a str, not JSON.")
def set_command(
    url: str,
    key: str,
    value: str,
    namespace: str | None,
    ttl: float | None,
    tags: tuple[str, ...],
    nx: bool,
    as_string: bool,
) -> None:
    """Store VALUE (JSON unless --string) under KEY; exit 1 if --nx and it exists."""
    refuse_memory_write(url, "cannot set a key in")
    tag_map: dict[str, str] = {}
    for item in tags:
        name, sep, tag_value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"--tag takes NAME=VALUE, got {item!r}")
        tag_map[name] = tag_value
    if as_string:
        parsed: Any = value
    else:
        try:
            parsed = parse_json(value)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON ({exc}); use --string for text") from None
        except DmemError as exc:
            fail(f"{type(exc).__name__}: {exc}")

    async def write(store: Store) -> bool:
        return await store.set(key, parsed, ttl=ttl, if_not_exists=nx, tags=tag_map or None)

    written = _with_store(url, namespace, write, create=True)
    click.echo("written" if written else "not written (key exists)")
    sys.exit(0 if written else EXIT_ERROR)


@main.command()
@click.argument("url")
@click.argument("keys", nargs=-1, required=True)
@namespace_option
def delete(url: str, keys: tuple[str, ...], namespace: str | None) -> None:
    """Delete KEYS; print how many were live."""
    refuse_memory_write(url, "cannot delete from")

    async def remove(store: Store) -> int:
        return await store.delete_many(keys)

    click.echo(str(_with_store(url, namespace, remove)))


@main.command()
@click.argument("url")
@click.argument("pattern", default="*")
@namespace_option
def keys(url: str, pattern: str, namespace: str | None) -> None:
    """List live keys matching PATTERN (glob), one per line, sorted."""

    async def listing(store: Store) -> list[str]:
        return await store.keys(pattern)

    for key in sorted(_with_store(url, namespace, listing)):
        click.echo(key)


@main.command()
@click.argument("url")
@click.argument("pattern", default="*")
@namespace_option
def count(url: str, pattern: str, namespace: str | None) -> None:
    """Print how many live keys match PATTERN (glob)."""

    async def counting(store: Store) -> int:
        return await store.count(pattern)

    click.echo(str(_with_store(url, namespace, counting)))


@main.command()
@click.argument("url")
@click.argument("key")
@namespace_option
def ttl(url: str, key: str, namespace: str | None) -> None:
    """Print seconds left for KEY, or 'none' when it never expires; exit 1 if missing."""

    async def remaining(store: Store) -> float | None:
        return await store.ttl(key)

    left = _with_store(url, namespace, remaining)
    click.echo("none" if left is None else f"{left:.3f}")


@main.command()
@click.argument("url")
@click.argument("key")
@namespace_option
def tags(url: str, key: str, namespace: str | None) -> None:
    """Print the tags of KEY as a JSON object; exit 1 if missing."""

    async def reading(store: Store) -> dict[str, str]:
        return await store.get_tags(key)

    click.echo(json.dumps(_with_store(url, namespace, reading), ensure_ascii=False))


@main.command(name="find-by-tag")
@click.argument("url")
@click.argument("name")
@click.argument("value")
@namespace_option
def find_by_tag(url: str, name: str, value: str, namespace: str | None) -> None:
    """List live keys tagged NAME=VALUE, one per line, sorted."""

    async def finding(store: Store) -> list[str]:
        return await store.find_by_tag(name, value)

    for key in sorted(_with_store(url, namespace, finding)):
        click.echo(key)


@main.command()
@click.argument("url")
@click.argument("key")
@click.argument("seconds", type=_TTL)
@namespace_option
def expire(url: str, key: str, seconds: float, namespace: str | None) -> None:
    """Make KEY expire SECONDS from now; exit 1 if it is not live."""
    refuse_memory_write(url, "cannot change a key in")

    async def expiring(store: Store) -> bool:
        return await store.expire(key, seconds)

    if not _with_store(url, namespace, expiring):
        fail(f"key {key!r} not found")
    click.echo("expiry set")


@main.command()
@click.argument("url")
@click.argument("key")
@namespace_option
def persist(url: str, key: str, namespace: str | None) -> None:
    """Remove KEY's expiry; exit 1 if it is not live."""
    refuse_memory_write(url, "cannot change a key in")

    async def persisting(store: Store) -> bool:
        return await store.persist(key)

    if not _with_store(url, namespace, persisting):
        fail(f"key {key!r} not found")
    click.echo("expiry removed")


@main.command()
@click.argument("url")
@namespace_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def clear(url: str, namespace: str | None, yes: bool) -> None:
    """Remove every key of the namespace; ask first unless --yes. Print how many."""
    refuse_memory_write(url, "cannot clear")

    async def clearing(store: Store) -> int:
        if not yes:
            live = await store.count()
            # abort=True: "no" (or no answer, e.g. stdin at its end) exits 1 with "Aborted!".
            click.confirm(
                f"Remove all {live} keys of namespace {store.namespace!r} in {redact_url(url)}?",
                abort=True,
                err=True,
            )
        return await store.clear()

    click.echo(str(_with_store(url, namespace, clearing)))


@main.command()
@click.argument("url")
@namespace_option
@click.option(
    "--ops",
    default=2000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Operations per measurement.",
)
@click.option(
    "--size",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Value size in characters.",
)
def bench(url: str, namespace: str | None, ops: int, size: int) -> None:
    """Measure single set/get and batch throughput against URL.

    It writes into a scratch namespace and clears it afterwards; --namespace names that
    namespace, which must then be empty.
    """
    scratch = namespace if namespace is not None else f"dmem-bench-{time.time_ns()}"

    async def go() -> list[tuple[str, float]]:
        rows: list[tuple[str, float]] = []
        async with open_url(url, scratch) as store:
            if namespace is not None and await store.count():
                fail(
                    f"namespace {namespace!r} is not empty, and bench clears its namespace "
                    "when done; name an empty one, or leave --namespace out",
                    EXIT_USAGE,
                    urls=(url,),
                )
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

    for name, rate in run(go(), url):
        click.echo(f"{name:32} {rate:12,.0f} /s")


main.add_command(copy)
main.add_command(export)
main.add_command(import_command)
main.add_command(rekey)
main.add_command(plugin)  # dmem plugin new NAME
