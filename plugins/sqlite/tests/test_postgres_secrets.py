"""No piece of a PostgreSQL password shows: messages, reprs, health reports, CLI output.

Passwords are drawn over a wide alphabet (URL delimiters, '%', brackets, spaces, non-ASCII,
digit runs) and put into the URL as they are, which breaks its shape in every way an
unencoded '/', '?', '#' or '@' can (a '?' even moves the rest into the options), and
percent-encoded. Every outcome is checked: the error (str, repr, its whole __cause__ and
__context__ chain), the provider's and the store's repr, health(), and what ``dmem health``
and ``dmem get`` print. A password is only drawn if none of its 4-character pieces is
fixed text that a message may hold anyway (the URL's other parts, the sources of dmem and
asyncpg, OS error texts, what the same calls print for a harmless password). The checks and
the cuttable relay are the test kit's (``dmem_conformance.testkit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dmem
import pytest
from click.testing import CliRunner
from dmem.cli import main as cli
from dmem_conformance import testkit
from dmem_conformance.testkit import (
    TcpRelay,
    assert_secret_hidden,
    exception_texts,
    lasting_port,
    scrub_noise,
    secret_pieces,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgserver import PostgresServer, PostgresUnavailable

asyncpg = pytest.importorskip("asyncpg")

ROLE = "dmem_pw"
ROLE_PASSWORD = "Role-Known-1"  # the role's password for the wrong-password case
ADMIN_PASSWORD = "Admin-Known-1"
HARMLESS = "Harmless-Pw-1"
RELAY_PORT = lasting_port()  # bound again and again over the module: not an ephemeral port

_SPECIAL = [*"?/#@:%[]&=+;,'\"\\ \t\n\x00", "%2F", "%3F", "%40", "%00", "%zz", "%"]
_CHUNKS = st.one_of(
    st.sampled_from(_SPECIAL),
    st.from_regex(r"[0-9]{1,8}", fullmatch=True),  # digit-looking text: ports, ids
    st.text(st.characters(codec="ascii", min_codepoint=32), min_size=1, max_size=6),
    st.text(
        st.characters(min_codepoint=0xA0, max_codepoint=0x2FFFF, exclude_categories=("Cs",)),
        min_size=1,
        max_size=4,
    ),
)


def _package_texts(*modules: str) -> str:
    import importlib

    texts = []
    for name in modules:
        root = Path(importlib.import_module(name).__file__ or "").parent
        for pattern in ("*.py", "*.pyx", "*.pxd", "*.pxi"):
            texts += [p.read_text(errors="replace") for p in sorted(root.rglob(pattern))]
    return "\n".join(texts)


_SOURCES = "\n".join(
    [
        _package_texts("dmem", "dmem_sqlite", "asyncpg"),
        *(os.strerror(code) for code in sorted(errno.errorcode)),
        "Name or service not known; Temporary failure in name resolution",
    ]
)


def _passwords(fixed: set[str]) -> st.SearchStrategy[str]:
    return (
        st.lists(_CHUNKS, min_size=2, max_size=12)
        .map("".join)
        .filter(lambda p: len(p) >= 8 and not secret_pieces(p) & fixed)
    )


def _urls(password: str, port: int, user: str = ROLE) -> list[str]:
    """The URL with the password unencoded, and percent-encoded."""
    return [
        f"postgresql://{user}:{password}@127.0.0.1:{port}/postgres",
        f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{port}/postgres",
    ]


def _cli_texts(*argv: str) -> list[str]:
    result = CliRunner().invoke(cli, list(argv))
    texts = [result.output, getattr(result, "stderr", "")]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        texts += exception_texts(result.exception)
    return texts


async def _open_texts(url: str) -> tuple[list[str], dmem.Store | None]:
    try:
        store = await dmem.open(url)
    except Exception as exc:  # noqa: BLE001 - every outcome is checked, whatever it is
        return exception_texts(exc), None
    return [repr(store), repr(store.provider)], store


async def _store_texts(store: dmem.Store) -> list[str]:
    texts = [repr(store), repr(store.provider), str((await store.health()).to_dict())]
    try:
        await store.set("k", 1)
        texts.append(repr(await store.get("k")))
    except Exception as exc:  # noqa: BLE001
        texts += exception_texts(exc)
    return texts


async def _provider_texts(url: str) -> list[str]:
    """Built without I/O (as dmem.open does), then health() of the never-opened provider."""
    try:
        provider = dmem.create_provider(url, {})
    except Exception as exc:  # noqa: BLE001
        return exception_texts(exc)
    texts = [repr(provider), repr(dmem.Store(provider, url=url))]
    texts.append(str((await provider.health()).to_dict()))
    return texts


def _outcomes_without_server(url: str) -> list[str]:
    async def go() -> list[str]:
        texts, store = await _open_texts(url)
        if store is not None:  # nothing listens: it cannot open
            await store.aclose()
            texts.append("opened")
        return texts + await _provider_texts(url)

    texts = asyncio.run(go())
    for argv in (["health", url], ["get", url, "k"]):
        texts += _cli_texts(*argv)
    return texts


@contextlib.asynccontextmanager
async def _admin(server: PostgresServer) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(server.url)
    try:
        yield conn
    finally:
        await conn.close()


async def _set_role_password(server: PostgresServer, password: str) -> None:
    async with _admin(server) as conn:
        # ALTER ROLE takes no parameters: quote the literal on the server.
        sql = await conn.fetchval(
            "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", ROLE, password
        )
        await conn.execute(sql)


def _outcomes_with_server(server: PostgresServer, password: str) -> list[str]:
    texts: list[str] = []
    asyncio.run(_set_role_password(server, ROLE_PASSWORD))
    for url in _urls(password, server.port):  # a wrong password
        texts += asyncio.run(_open_texts(url))[0]
        for argv in (["health", url], ["get", url, "k"]):
            texts += _cli_texts(*argv)
    if "\x00" in password:  # PostgreSQL cannot store it: no right-password case
        return texts
    asyncio.run(_set_role_password(server, password))

    async def opened(url: str, must_open: bool) -> list[str]:
        # Always on the same port (RELAY_PORT), which is fixed text like the server's: a
        # port drawn anew for each example could match a run of digits of the password.
        relay = TcpRelay(server.port, RELAY_PORT)
        await relay.start()
        relayed = url.replace(f":{server.port}/", f":{relay.port}/")
        found, store = await _open_texts(relayed)
        if store is None:
            assert not must_open, found
            await relay.cut()
            return found
        try:
            found += await _store_texts(store)
            await relay.cut()  # the server is gone: the report and the calls fail
            report = await store.health()
            assert not report.ok
            found.append(str(report.to_dict()))
            try:
                await store.get("k")
            except Exception as exc:  # noqa: BLE001
                found += exception_texts(exc)
        finally:
            await store.aclose()
        return found

    raw, encoded = _urls(password, server.port)
    texts += asyncio.run(opened(raw, must_open=False))
    # Percent-encoded, any password opens (SCRAM's SASLprep is the same on both ends for
    # ASCII; other text is not asserted to open).
    texts += asyncio.run(opened(encoded, must_open=password.isascii()))
    for argv in (["health", encoded], ["get", encoded, "k"]):
        texts += _cli_texts(*argv)
    return texts


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    with testkit.closed_port() as port:
        yield port


@pytest.fixture(scope="module")
def fixed_without_server(closed_port: int) -> set[str]:
    texts = [_SOURCES, f"postgresql://{ROLE}@127.0.0.1:{closed_port}/postgres dmem_kv"]
    for url in _urls(HARMLESS, closed_port):
        texts += _outcomes_without_server(url)
    return secret_pieces("\n".join(map(scrub_noise, texts)))


@pytest.fixture(scope="module")
def password_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start(password=ADMIN_PASSWORD)
    except (PostgresUnavailable, OSError) as exc:
        from dmem_conformance._env import backend_missing

        backend_missing(f"cannot start a throwaway PostgreSQL: {exc}")
    try:

        async def create_role() -> None:
            async with _admin(server) as conn:
                await conn.execute(f"CREATE ROLE {ROLE} LOGIN")
                await conn.execute(f"GRANT CREATE ON SCHEMA public TO {ROLE}")

        asyncio.run(create_role())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fixed_with_server(password_server: PostgresServer) -> set[str]:
    texts = [
        _SOURCES,
        f"postgresql://{ROLE}@127.0.0.1:{password_server.port}/postgres dmem_kv {RELAY_PORT}",
    ]
    texts += _outcomes_with_server(password_server, HARMLESS)
    return secret_pieces("\n".join(map(scrub_noise, texts)))


def test_the_check_sees_a_password_that_shows() -> None:
    """The assertion itself: a message quoting a piece of the password fails it."""
    with pytest.raises(AssertionError, match="shows in"):
        assert_secret_hidden("Qx7#vW2!", ["bad port 'x7#v'"])
    assert_secret_hidden("Qx7#vW2!", ["postgresql://u:***@h (12.5 ms)"])
    assert_secret_hidden("12345678", ["{'latency_ms': 0.1234567}", "(1.23456 ms)"])


@pytest.mark.parametrize(
    "password",
    # The shapes of the issue: each moved a piece of the password into asyncpg's messages.
    ["r1tZ9?x@wq-opt=v", "Sek/ret-pw", "ab:Sek#x-pw", "Sek@ab@cd-pw", "a[b]c-pw-x", "Sek?ret&x=y"],
)
def test_known_leaks_are_closed(password: str, closed_port: int) -> None:
    for url in _urls(password, closed_port):
        assert_secret_hidden(password, _outcomes_without_server(url))


def test_no_piece_of_a_password_shows_without_a_server(
    closed_port: int, fixed_without_server: set[str]
) -> None:
    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(password=_passwords(fixed_without_server))
    def check(password: str) -> None:
        for url in _urls(password, closed_port):
            assert_secret_hidden(
                password, _outcomes_without_server(url), fixed=fixed_without_server
            )

    check()


def test_no_piece_of_a_password_shows_with_a_password_server(
    password_server: PostgresServer, fixed_with_server: set[str]
) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(password=_passwords(fixed_with_server))
    def check(password: str) -> None:
        assert_secret_hidden(
            password, _outcomes_with_server(password_server, password), fixed=fixed_with_server
        )

    check()
