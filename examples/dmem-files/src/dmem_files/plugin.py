"""The module named by the entry point ``files = "dmem_files.plugin"`` (group ``dmem``).

``files:///DIR`` (absolute) or ``files://DIR`` (relative to the current directory): a
plain directory, one file per key. Options (URL query parameters or keyword arguments of
``dmem.open``): ``namespace``; ``fsync`` (default true: every write is on disk when the
call returns); ``sweep_interval`` (seconds between two purges of expired files, default
10); ``timeout`` (seconds a write waits for the namespace's lock, default 10); ``create``
(given by dmem: false opens only a directory that exists).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import dmem

__all__ = ["create_provider", "dmem_register_providers", "unreachable_twin"]

SCHEME = "files"


def create_provider(url: str, options: dict[str, Any]) -> dmem.BaseKVProvider:
    """Validate the URL and the options, build the provider; no I/O (initialize() does it)."""
    from .provider import FilesProvider

    opts = dmem.ProviderOptions(options, provider=SCHEME)
    namespace = opts.namespace()
    create = opts.bool("create", True)  # only given to a spec with creates_storage=True
    fsync = opts.bool("fsync", True)
    sweep_interval = opts.float("sweep_interval", 10.0)
    timeout = opts.float("timeout", 10.0)
    opts.done()
    path = unquote(url.partition("://")[2])
    if not path.strip("/") or "\x00" in path:
        raise dmem.InvalidArgumentError(
            f"{SCHEME}:// needs a directory: files:///abs/dir or files://rel/dir, "
            f"not {dmem.redact_url(url)!r}"
        )
    return FilesProvider(
        Path(path),
        namespace=namespace,
        create=create,
        fsync=fsync,
        sweep_interval=sweep_interval,
        timeout=timeout,
    )


def unreachable_twin(url: str) -> str | None:
    """A files:// URL with the same options on a directory that cannot be reached: under
    the null device, so opening fails at once (a directory's analogue of a server that is
    down, as SQLite's twin is). For the conformance suite's down-backend clause; no I/O."""
    query = url.partition("?")[2]
    # create=false would turn "cannot reach" into "does not exist": not what is tested.
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "create"]
    return f"files://{os.devnull}/dmem-unreachable" + (f"?{urlencode(kept)}" if kept else "")


@dmem.hookimpl
def dmem_register_providers(register: Callable[[dmem.ProviderSpec], None]) -> None:
    register(
        dmem.ProviderSpec(
            name="files",
            schemes=(SCHEME,),
            kind="kv",
            factory=create_provider,
            description="a plain directory, one file per key (files:///path/to/dir)",
            # Opening may create the directory: dmem passes the create option, false for
            # the dmem commands that only read.
            creates_storage=True,
            # `dmem conformance files:///DIR` tests the down-backend clause on this twin.
            unreachable_url=unreachable_twin,
        )
    )
