"""dmem-files: a dmem backend plugin for ``files:///path/to/dir``, one file per key.

    import dmem

    async with dmem.open("files:///var/lib/myapp/kv", namespace="app") as kv:
        await kv.set("greeting", "hello", ttl=60, tags={"lang": "en"})

``plugin.py`` registers the provider with dmem (the entry point in pyproject.toml names
it); ``provider.py`` is the provider; ``_disk.py`` the layout on disk and its locking.
"""

from __future__ import annotations

from .provider import FilesProvider

__all__ = ["FilesProvider"]
