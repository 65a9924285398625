"""dmem-sqlite: SQLite and PostgreSQL backend for dmem (work in progress)."""
