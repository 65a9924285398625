"""Backends that ship with the core: the in-process memory backend."""

from __future__ import annotations

from .memory import MemoryProvider

__all__ = ["MemoryProvider"]
