"""Adapters that let other libraries' storage interfaces run on dmem.

Each lives in its own module and imports its library only there, so ``import dmem`` never
needs them: ``dmem.integrations.pykv`` (``pip install 'dmem[pykv]'``) is a py-key-value store,
the storage layer FastMCP uses. See docs/integrations/.
"""

from __future__ import annotations

__all__: list[str] = []
