"""dmem-files: a dmem backend plugin for ``files://`` URLs.

    import dmem

    async with dmem.open("files://demo", namespace="app") as kv:
        await kv.set("greeting", "hello", ttl=60, tags={"lang": "en"})

``plugin.py`` registers the provider with dmem (the entry point in pyproject.toml names
it); ``provider.py`` is the provider.
"""

from __future__ import annotations

from .provider import FilesProvider

__all__ = ["FilesProvider"]
