"""The hooks a dmem plugin implements (pluggy project name ``"dmem"``).

Hooks are synchronous, do no I/O and only hand factories over through the
``register`` callback they receive; nothing connects until a store is opened.
A plugin is a module with an entry point in group ``dmem``::

    # pyproject.toml
    [project.entry-points.dmem]
    foo = "dmem_foo.plugin"

    # dmem_foo/plugin.py
    import dmem

    @dmem.hookimpl
    def dmem_register_providers(register):
        register(dmem.ProviderSpec(name="foo", schemes=("foo",), kind="kv", factory=make_foo))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from ._registry import EmbedderSpec, MiddlewareSpec, ProviderSpec

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("dmem")
hookimpl = pluggy.HookimplMarker("dmem")


@hookspec
def dmem_register_providers(register: Callable[[ProviderSpec], None]) -> None:
    """Register provider factories (key-value or vector) with the URL schemes they serve."""


@hookspec
def dmem_register_middleware(register: Callable[[MiddlewareSpec], None]) -> None:
    """Register middleware specs (classes whose instances have ``wrap(inner)``)."""


@hookspec
def dmem_register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    """Register embedding functions for text queries on vector providers."""


@hookspec
def dmem_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``dmem`` command (a :class:`click.Group`), as llm's
    ``register_commands`` does: ``@cli.command()`` on a function, or ``cli.add_command``.

    Called only when the command line needs plugin commands, never by ``dmem.open``; import
    anything heavy inside the command, not at module level. A name that a core command
    already has is ignored (and recorded as the plugin's error in ``dmem plugins``).
    """
