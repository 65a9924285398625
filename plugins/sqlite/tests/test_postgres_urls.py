"""PostgreSQL URLs that worked when asyncpg parsed them still work now that dmem does.

dmem hands asyncpg keyword arguments instead of the URL (see test_postgres_secrets.py for
why). For every URL shape asyncpg accepted, the keyword arguments must make asyncpg reach the
same addresses with the same user, password and database as the URL did.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dmem
import pytest
from dmem import InvalidArgumentError
from dmem_sqlite._config import parse_postgres
from pgserver import PostgresServer

asyncpg = pytest.importorskip("asyncpg")
from asyncpg import connect_utils  # noqa: E402 - only with asyncpg installed

WORKING = [
    "postgresql://app:secret@db.internal:5432/appdb",
    "postgresql://app@db.internal/appdb",
    "postgresql://db.internal",
    "postgresql://db.internal/",
    "postgresql://db.internal:6543",
    "postgresql://:secret@db.internal/appdb",
    "postgresql://app:@db.internal/appdb",
    "postgresql://app:pa%3Fss%2Fw%23rd%40x@db.internal/appdb",
    "postgresql://ap%40p:pw@db.internal/app%2Fdb",
    "postgresql://app:p:w@db.internal/appdb",
    "postgresql://app:secret@[::1]:5433/appdb",
    "postgresql://app:secret@[::1]/appdb",
    "postgresql://app:secret@[fe80::1%25eth0]:5432/appdb",
    "postgresql://%2Fvar%2Frun%2Fpostgresql/appdb",
    "postgresql://app@%2Ftmp:5433/appdb",
    "postgresql:///appdb",
    "postgresql://",
    "postgresql://a:5432,b:5433/appdb",
    "postgresql://a,b,c/appdb",
    "postgresql://a:5433,b/appdb",
    "postgresql://app:secret@db.internal:5432/appdb#ignored",
    "postgresql://us%C3%A9r:p%C3%A4ss@d%C3%A9.example/d%C3%A9",
    "postgresql://app:pw with spaces@db.internal/my db",
]


@pytest.fixture
def no_pg_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """asyncpg fills what a URL leaves out from PG* variables and ~/.pgpass: none here."""
    import os

    for name in list(os.environ):
        if name.startswith("PG"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    monkeypatch.setenv("PGUSER", "envuser")  # so a URL without a user resolves the same


def _asyncpg_reads(**kwargs: Any) -> tuple[Any, ...]:
    """What asyncpg makes of a DSN or of keyword arguments: addresses, user, password,
    database (its internal parser, the one connect() runs)."""
    parameters = inspect.signature(connect_utils._parse_connect_dsn_and_args).parameters
    given = {name: None for name in parameters}
    given.update(kwargs)
    addrs, params = connect_utils._parse_connect_dsn_and_args(**given)
    return addrs, params.user, params.password, params.database


@pytest.mark.usefixtures("no_pg_environment")
@pytest.mark.parametrize("url", WORKING)
def test_keyword_arguments_reach_what_the_url_reached(url: str) -> None:
    expected = _asyncpg_reads(dsn=url)
    config = parse_postgres(url, {})
    assert _asyncpg_reads(**config.connect_kwargs()) == expected
    assert "secret" not in repr(config) and "secret" not in config.display


@pytest.mark.usefixtures("no_pg_environment")
def test_ports_of_a_host_list_follow_pgport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPORT", "6000")
    for url in ("postgresql://a:5433,b/appdb", "postgresql://a,b/appdb", "postgresql://a/db"):
        config = parse_postgres(url, {})
        assert _asyncpg_reads(**config.connect_kwargs()) == _asyncpg_reads(dsn=url)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://app:secret@db.internal/appdb",
        "postgresql+asyncpg://app:secret@db.internal/appdb",
        "POSTGRESQL://app:secret@db.internal/appdb",
    ],
)
def test_scheme_spellings(url: str) -> None:
    config = parse_postgres(url, {})
    assert config.connect_kwargs()["host"] == "db.internal"
    assert config.display == "postgresql://app:***@db.internal/appdb"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:secret@db:port/appdb", "bad port"),
        ("postgresql://app:secret@db:0/appdb", "bad port"),
        ("postgresql://app:secret@db:70000/appdb", "bad port"),
        ("postgresql://app:secret@::1/appdb", "IPv6 addresses go in brackets"),
        ("postgresql://app:secret@[::1]x/appdb", "bad IPv6 host"),
        ("postgresql://app:secret@a,,b/appdb", "empty host"),
        ("postgresql://app:secret@db/app\tdb", "tab or line break"),
        ("postgresql://app:se/cret@db/appdb", "has an '@' after its host part"),
        ("postgresql://app:se#cret@db/appdb", "has an '@' after its host part"),
        ("postgresql://app:se\x00cret@db/appdb", "NUL"),
    ],
)
def test_bad_urls_are_refused_before_connecting(url: str, shown: str) -> None:
    with pytest.raises(InvalidArgumentError, match=shown) as info:
        parse_postgres(url, {})
    assert "secret" not in str(info.value) and "cret" not in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_an_email_namespace_is_a_namespace() -> None:
    config = parse_postgres("postgresql://app:pw@db/appdb", {"namespace": "ada@example.org"})
    assert config.namespace == "ada@example.org"
    with pytest.raises(InvalidArgumentError, match="namespace has an '@'") as info:
        parse_postgres("postgresql://app:pw@db/appdb", {"namespace": "a@b", "table": "x y"})
    assert "x y" not in str(info.value)


async def test_url_shapes_open_a_real_store(pg_server: PostgresServer | None) -> None:
    if pg_server is None:
        pytest.skip("needs the suite's own server (its socket directory and port)")
    port, socket_dir = pg_server.port, quote(str(pg_server.root), safe="")
    for url in (
        f"postgresql://postgres@127.0.0.1:{port}/postgres",
        f"postgres://postgres@127.0.0.1:{port}/postgres",
        f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres",
        f"postgresql://postgres@{socket_dir}:{port}/postgres",  # the unix socket
        f"postgresql://postgres@127.0.0.1:1,127.0.0.1:{port}/postgres",  # the second answers
    ):
        async with dmem.open(url, namespace="urls") as kv:
            assert await kv.set("k", url)
            assert await kv.get("k") == url
            await kv.clear()
