"""Plugin loading through real entry points: failures are isolated and shown.

Each test "installs" throwaway plugins the way pip does, as a module plus a
``*.dist-info`` folder with ``entry_points.txt`` on ``sys.path``, and runs
``python -m dmem`` in a subprocess so the process-wide registry starts fresh.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import requires
from pathlib import Path

import pytest
from dmem._open import _missing_plugin_message
from dmem._registry import EXTRA_FOR_SCHEME, Registry, registry

GOOD_PLUGIN = """
import dmem
from dmem.backends.memory import create_memory_provider

@dmem.hookimpl
def dmem_register_providers(register):
    register(dmem.ProviderSpec(name="good", schemes=("good",), factory=create_memory_provider))
"""


def _install(site: Path, name: str, source: str) -> None:
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[dmem]\n{name} = {name}\n")


def _plugins_json(site: Path, **env: str) -> list[dict[str, object]]:
    environ = {k: v for k, v in os.environ.items() if k != "DMEM_LOAD_PLUGINS"}
    environ.update(PYTHONPATH=str(site), **env)
    out = subprocess.run(
        [sys.executable, "-m", "dmem", "plugins", "--json"],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    data: list[dict[str, object]] = json.loads(out.stdout)
    return data


@pytest.fixture
def site(tmp_path: Path) -> Path:
    _install(tmp_path, "broken_plugin", "raise ImportError('broken on purpose')\n")
    _install(tmp_path, "good_plugin", GOOD_PLUGIN)
    _install(
        tmp_path,
        "bad_hook_plugin",
        """
        import dmem

        @dmem.hookimpl
        def dmem_register_providers(register):
            raise RuntimeError("hook blew up")
        """,
    )
    return tmp_path


def test_builtins_are_listed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dmem", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    builtins = next(p for p in json.loads(out.stdout) if p["name"] == "builtins")
    assert builtins["providers"] == ["memory (kv: memory)", "memory-vector (vector: memory)"]
    assert builtins["middleware"] == ["cache", "compression", "encryption"]
    assert builtins["error"] is None


def test_a_broken_plugin_is_shown_and_does_not_break_the_others(site: Path) -> None:
    plugins = {p["name"]: p for p in _plugins_json(site)}
    assert plugins["broken_plugin"]["error"] == "ImportError: broken on purpose"
    assert plugins["bad_hook_plugin"]["error"] == "RuntimeError: hook blew up"
    assert plugins["good_plugin"]["error"] is None
    assert plugins["good_plugin"]["providers"] == ["good (kv: good)"]
    assert plugins["builtins"]["middleware"] == ["cache", "compression", "encryption"]


def test_dmem_load_plugins_limits_what_loads(site: Path) -> None:
    names = {p["name"] for p in _plugins_json(site, DMEM_LOAD_PLUGINS="good_plugin")}
    assert names == {"builtins", "good_plugin"}
    names = {p["name"] for p in _plugins_json(site, DMEM_LOAD_PLUGINS="")}
    assert names == {"builtins"}


def test_a_plugin_provider_is_usable_and_failures_are_named(site: Path) -> None:
    code = textwrap.dedent(
        """
        import asyncio, dmem
        async def main():
            async with dmem.open("good://") as kv:
                await kv.set("a", 1)
                print(await kv.get("a"))
            try:
                await dmem.open("redis://localhost")
            except dmem.PluginNotFoundError as exc:
                print(exc)
        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(site), "DMEM_LOAD_PLUGINS": "good_plugin,broken_plugin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    first, second = out.stdout.strip().splitlines()
    assert first == "1"
    assert "pip install 'dmem[redis]'" in second
    assert "broken_plugin (ImportError: broken on purpose)" in second


def test_every_scheme_of_our_plugins_names_its_extra() -> None:
    """PluginNotFoundError names the extra: every scheme our plugins register has one, and
    that root extra really installs the plugin's distribution."""
    ours = {"dmem-sqlite", "dmem-redis", "dmem-chroma"}
    reg = registry()
    loaded = {p.distribution for p in reg.plugins if p.error is None}
    assert ours <= loaded, f"plugins not loaded: {ours - loaded}"
    extras: dict[str, set[str]] = {}  # root extra -> distributions it installs
    for requirement in requires("dmem") or []:
        marker = re.search(r"extra == ['\"]([\w-]+)['\"]", requirement)
        if marker:
            name = re.split(r"[\[=<>~!;, ]", requirement, maxsplit=1)[0]
            extras.setdefault(marker.group(1), set()).add(name)

    checked = 0
    for (_kind, scheme), spec in reg.providers.items():
        plugin = next(
            p for p in reg.plugins if any(s.startswith(f"{spec.name} (") for s in p.providers)
        )
        if plugin.distribution not in ours:
            continue
        assert scheme in EXTRA_FOR_SCHEME, f"{scheme}:// ({plugin.distribution}) has no extra"
        extra = EXTRA_FOR_SCHEME[scheme]
        assert plugin.distribution in extras.get(extra, set()), (scheme, extra, extras)
        checked += 1
    assert checked >= 13  # sqlite 4, redis 7, chroma 3 (kv) + 3 (vector)


def test_missing_plugin_message_names_the_extra() -> None:
    empty = Registry()
    message = _missing_plugin_message(empty, "kv", "postgresql+asyncpg")
    assert "pip install 'dmem[postgresql]'" in message
    message = _missing_plugin_message(empty, "kv", "rediss+sentinel")
    assert "pip install 'dmem[redis]'" in message
