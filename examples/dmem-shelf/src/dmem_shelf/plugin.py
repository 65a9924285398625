"""The module named by dmem-shelf's entry point (``shelf = "dmem_shelf.plugin"``, group dmem).

dmem imports this module when it loads plugins and calls its hooks. A hook is
synchronous, does no I/O and imports no heavy driver: it only hands
:class:`dmem.ProviderSpec` objects to ``register``. The factories run when a
store is opened: they validate the URL and the options (raising
``InvalidArgumentError``) and build the provider, without connecting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dmem

from .broken import BrokenShelfProvider
from .provider import ShelfProvider

__all__ = ["create_broken_shelf_provider", "create_shelf_provider", "dmem_register_providers"]


def _parse(url: str, options: dict[str, Any], provider: str) -> dict[str, Any]:
    """Keyword arguments of ShelfProvider from ``shelf://NAME`` and the options."""
    # ``url`` arrives without its query string; the query parameters are in ``options``
    # (as str), merged with the keyword arguments of dmem.open(). ProviderOptions
    # converts them and done() rejects any option nobody read.
    opts = dmem.ProviderOptions(options, provider=provider)
    namespace = opts.namespace()  # str, no NUL or lone surrogates: the rule every backend shares
    sweep_interval = opts.float("sweep_interval", 1.0)
    opts.done()
    name = url.split("://", 1)[1].strip("/")
    if "/" in name:
        raise dmem.InvalidArgumentError(
            f"{provider}://NAME takes a name, not a path ({dmem.redact_url(url)}): "
            "a shelf lives in this process, not in a file"
        )
    return {"shelf": name, "namespace": namespace, "sweep_interval": sweep_interval}


def create_shelf_provider(url: str, options: dict[str, Any]) -> ShelfProvider:
    """``shelf://NAME[?sweep_interval=SECONDS]``: every store on NAME shares its data."""
    return ShelfProvider(**_parse(url, options, "shelf"))


def create_broken_shelf_provider(url: str, options: dict[str, Any]) -> BrokenShelfProvider:
    """``shelf+broken://NAME``: a teaching aid that fails the conformance suite (broken.py)."""
    return BrokenShelfProvider(**_parse(url, options, "shelf+broken"))


@dmem.hookimpl
def dmem_register_providers(register: Callable[[dmem.ProviderSpec], None]) -> None:
    register(
        dmem.ProviderSpec(
            name="shelf",
            schemes=("shelf",),
            kind="kv",
            factory=create_shelf_provider,
            description="example plugin: in-process dict per shelf://NAME",
        )
    )
    register(
        dmem.ProviderSpec(
            name="shelf-broken",
            schemes=("shelf+broken",),
            kind="kv",
            factory=create_broken_shelf_provider,
            description="example plugin, BROKEN ON PURPOSE: reads '' back as missing",
        )
    )
