"""dmem-sqlite: the SQLite (embedded default) and PostgreSQL backend of dmem.

Use it through ``dmem.open("sqlite:///path/to.db")`` or
``dmem.open("postgresql://user@host/db")``; see docs/backends/sqlite.md.
"""

from __future__ import annotations

from ._config import PostgresConfig, SQLiteConfig
from ._sqlite import SQLiteProvider

__all__ = ["PostgresConfig", "SQLiteConfig", "SQLiteProvider"]
