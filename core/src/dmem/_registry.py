"""Plugin loading: entry points in group ``dmem``, one at a time, into one registry.

Loading is lazy and happens once per process (``registry()``), like ``llm``'s.
A plugin whose import or hook fails is recorded with its error and does not
stop the others; ``dmem plugins`` shows it. ``DMEM_LOAD_PLUGINS`` (a comma
separated list of entry point names; empty means none) limits which
third-party plugins load. The built-ins (memory backend, Cache, Compression)
register through the very same hooks.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import pluggy

from . import hookspecs

__all__ = [
    "EXTRA_FOR_SCHEME",
    "EmbedderSpec",
    "MiddlewareSpec",
    "PluginInfo",
    "ProviderSpec",
    "Registry",
    "registry",
]

ProviderKind = Literal["kv", "vector"]


@dataclass(frozen=True)
class ProviderSpec:
    """A provider factory and the URL schemes it serves.

    ``factory(url, options)`` gets the URL without its query string and the
    options (URL query parameters merged with keyword arguments; query values
    are str). It must validate them, raise ``InvalidArgumentError`` for an
    unknown or bad option, and do no I/O: connecting is ``initialize()``'s job.
    """

    name: str
    schemes: tuple[str, ...]
    factory: Callable[[str, dict[str, Any]], Any]
    kind: ProviderKind = "kv"
    description: str = ""
    creates_storage: bool = False
    """True when opening may create local storage (a file, a directory). Then the factory
    receives the ``create`` option (a bool; ``False``: raise :class:`StoreNotFoundError`
    at ``initialize()`` rather than create anything). Providers without it never get the
    option: a server's database is there or not, whatever the client asks."""
    shares_connections: bool = False
    """True when stores of this process opened on the same backend share one connection
    (client, pool, worker thread; see :mod:`dmem.sharing`). Then the factory receives the
    ``share_connection`` option (a bool; ``False``: this store gets a connection of its
    own). Providers without it never get the option: each of their stores is its own
    connection already."""
    unreachable_url: Callable[[str], str | None] | None = None
    """Given a URL this provider serves, the same kind of URL pointing at a backend that is
    down (same scheme and options, a closed loopback port), or None when there is none. The
    conformance suite's URL runs use it to test the down-backend clauses; no I/O."""


@dataclass(frozen=True)
class MiddlewareSpec:
    """A middleware class (or factory) by name: ``factory(**options)`` has ``wrap(inner)``."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class EmbedderSpec:
    """An embedding function factory by name: ``factory(**options)`` returns an embedder."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``dmem plugins`` shows it."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    providers: list[str] = field(default_factory=list)
    middleware: list[str] = field(default_factory=list)
    embedders: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "providers": self.providers,
            "middleware": self.middleware,
            "embedders": self.embedders,
            "commands": self.commands,
            "error": self.error,
        }


# Which root extra installs the plugin for a scheme, for PluginNotFoundError. Every scheme
# our plugins register must be here (tests/test_plugins.py checks it against the registry).
EXTRA_FOR_SCHEME = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "redis+sentinel": "redis",
    "rediss+sentinel": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "sqlite": "sqlite",
    # dmem[postgresql] installs dmem-sqlite with asyncpg; dmem[sqlite] alone cannot connect.
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+asyncpg": "postgresql",
    "chroma": "chroma",
    "chroma+http": "chroma",
    "chroma+https": "chroma",
}


class Registry:
    """Everything the loaded plugins registered."""

    def __init__(self) -> None:
        self.providers: dict[tuple[ProviderKind, str], ProviderSpec] = {}
        self.middleware: dict[str, MiddlewareSpec] = {}
        self.embedders: dict[str, EmbedderSpec] = {}
        self.plugins: list[PluginInfo] = []
        self.manager = pluggy.PluginManager("dmem")
        self.manager.add_hookspecs(hookspecs)

    def provider_for(self, kind: ProviderKind, scheme: str) -> ProviderSpec | None:
        return self.providers.get((kind, scheme))

    def failed_plugins(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error is not None]

    # --- loading ---------------------------------------------------------------------------
    def load(self, module: ModuleType, info: PluginInfo) -> None:
        """Register ``module``'s hooks and collect what it registers; errors go into ``info``."""
        self.plugins.append(info)
        try:
            self.manager.register(module, name=info.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
            info.error = f"{type(exc).__name__}: {exc}"
            return
        hooks = self.manager.hook
        steps: list[tuple[Any, Callable[[Any], None]]] = [
            (hooks.dmem_register_providers, lambda spec: self._add_provider(spec, info)),
            (hooks.dmem_register_middleware, lambda spec: self._add_middleware(spec, info)),
            (hooks.dmem_register_embedders, lambda spec: self._add_embedder(spec, info)),
        ]
        for caller, register in steps:
            for impl in caller.get_hookimpls():
                if impl.plugin is not module:
                    continue
                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001
                    info.error = f"{type(exc).__name__}: {exc}"

    def register_commands(self, cli: Any) -> None:
        """Let each loaded plugin add subcommands to ``cli`` (the ``dmem`` click group).

        Separate from :meth:`load` because only the command line needs it (``dmem.open``
        never builds a click group). As for the other hooks, each plugin's hook runs on its
        own: one that raises is recorded in its ``PluginInfo`` and the others still run. A
        command named like one ``cli`` already had (a core command) is put back: a plugin
        may add commands, not replace ``dmem get``.
        """
        commands: dict[str, Any] = cli.commands
        infos = {info.name: info for info in self.plugins}
        for impl in self.manager.hook.dmem_register_commands.get_hookimpls():
            info = infos.get(impl.plugin_name)
            before = dict(commands)
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
                if info is not None:
                    info.error = f"{type(exc).__name__}: {exc}"
            for name, command in before.items():
                if commands.get(name) is not command:
                    commands[name] = command
                    if info is not None:
                        info.error = f"command {name!r} already exists; ignored"
            if info is not None:
                info.commands.extend(sorted(commands.keys() - before.keys()))

    def _add_provider(self, spec: ProviderSpec, info: PluginInfo) -> None:
        for scheme in spec.schemes:
            key = (spec.kind, scheme.lower())
            if key in self.providers:
                info.error = (
                    f"scheme {scheme!r} ({spec.kind}) is already served by "
                    f"{self.providers[key].name!r}; ignored"
                )
                continue
            self.providers[key] = spec
        info.providers.append(f"{spec.name} ({spec.kind}: {', '.join(spec.schemes)})")

    def _add_middleware(self, spec: MiddlewareSpec, info: PluginInfo) -> None:
        if spec.name in self.middleware:
            info.error = f"middleware {spec.name!r} is already registered; ignored"
            return
        self.middleware[spec.name] = spec
        info.middleware.append(spec.name)

    def _add_embedder(self, spec: EmbedderSpec, info: PluginInfo) -> None:
        if spec.name in self.embedders:
            info.error = f"embedder {spec.name!r} is already registered; ignored"
            return
        self.embedders[spec.name] = spec
        info.embedders.append(spec.name)


_lock = threading.Lock()
_registry: Registry | None = None


def registry(*, reload: bool = False) -> Registry:
    """The process-wide registry, loading plugins on first use."""
    global _registry
    with _lock:
        if _registry is None or reload:
            _registry = _load_all()
        return _registry


def _load_all() -> Registry:
    from . import _builtins

    reg = Registry()
    version = _version("dmem")
    reg.load(_builtins, PluginInfo("builtins", _builtins.__name__, "dmem", version))
    allowed = _allowed_names()
    seen: set[str] = set()
    for entry_point in sorted(
        importlib.metadata.entry_points(group="dmem"), key=lambda ep: ep.name
    ):
        if entry_point.name in seen or (allowed is not None and entry_point.name not in allowed):
            continue
        seen.add(entry_point.name)
        dist = entry_point.dist.name if entry_point.dist is not None else None
        dist_version = entry_point.dist.version if entry_point.dist is not None else None
        info = PluginInfo(entry_point.name, entry_point.value, dist, dist_version)
        try:
            module = entry_point.load()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            info.error = f"{type(exc).__name__}: {exc}"
            reg.plugins.append(info)
            continue
        reg.load(module, info)
    return reg


def _allowed_names() -> set[str] | None:
    raw = os.environ.get("DMEM_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
