"""The Encryption middleware on real backends: memory, SQLite files, Redis and PostgreSQL.

What it must do (docs/encryption.md): round trips through every value-carrying call, key
rotation, refusing a ciphertext moved to another key or namespace, tampered / truncated /
foreign values (each CorruptValueError), the chain order rule, key checks before any I/O,
and never showing a key. Then the KV conformance suite under
``[Cache(), Compression(), Encryption()]`` on memory and SQLite.

Redis: ``DMEM_TEST_REDIS_URL``, or a throwaway redis-server on a free loopback port.
PostgreSQL: ``DMEM_TEST_POSTGRES_URL``, else the server on 127.0.0.1:5432 (database
``test``); missing, it skips (fails under ``DMEM_REQUIRE_BACKENDS=1``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import dmem
import dmem_conformance
import pytest
from dmem import Cache, Compression
from dmem.middleware import Encryption, EncryptionProvider
from dmem.middleware._encryption import ENVELOPE_MAGIC, envelope_key_id
from dmem_conformance import testkit
from dmem_conformance.testkit import alternating_factory, assert_secret_hidden

KEY1 = os.urandom(32)
KEY2 = os.urandom(32)
BACKENDS = ("memory", "sqlite", "redis", "postgres")


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://enc-{uuid.uuid4().hex}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'enc.db'}"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def namespace() -> str:
    return f"enc-{uuid.uuid4().hex[:12]}"


def chain(
    *,
    keys: Mapping[str, bytes | str] | None = None,
    primary: str | None = None,
    cache: bool = False,
) -> list[Any]:
    """Compression then Encryption; a Cache in front only with ``cache=True``: these tests
    change stored bytes behind the store's back, which a cache would (rightly) not see."""
    enc = Encryption(keys=keys or {"k1": KEY1}, primary=primary)
    return [*([Cache()] if cache else []), Compression(threshold=16), enc]


@pytest.fixture
async def stores(url: str, namespace: str) -> AsyncIterator[tuple[dmem.Store, dmem.Store]]:
    """(encrypted store, raw store) on the same backend and namespace; cleared after."""
    async with (
        dmem.open(url, namespace=namespace, middleware=chain()) as enc,
        dmem.open(url, namespace=namespace) as raw,
    ):
        yield enc, raw
        await raw.clear()


async def raw_bytes(store: dmem.Store, key: str) -> bytes:
    stored = await store.provider.get(key)
    assert stored is not None, f"{key!r} is not stored"
    return stored


async def put_raw(store: dmem.Store, key: str, data: bytes) -> None:
    await store.provider.set(key, data, ttl_ms=None, if_not_exists=False, tags={})


# --- round trips ------------------------------------------------------------------------------
async def test_round_trip_every_call(stores: tuple[dmem.Store, dmem.Store]) -> None:
    enc, raw = stores
    doc = {"name": "Ada", "notes": "private " * 200}
    await enc.set("doc", doc, ttl=300, tags={"team": "a"})
    await enc.set_many({"m1": [1, 2], "m2": "two", "m3": b"\x00\xffbytes"}, tags={"team": "b"})
    assert await enc.set("doc", "other", if_not_exists=True) is False
    assert await enc.set_many({"m1": 0, "new": 1}, if_not_exists=True) == 1
    assert await enc.get("doc") == doc
    got = await enc.get_with_ttl("doc")
    assert got is not None and got[0] == doc and got[1] is not None and 0 < got[1] <= 300
    assert await enc.get_many(["m1", "m2", "m3", "new", "missing"]) == {
        "m1": [1, 2],
        "m2": "two",
        "m3": b"\x00\xffbytes",
        "new": 1,
    }
    assert dict([item async for item in enc.scan("m*")]) == {
        "m1": [1, 2],
        "m2": "two",
        "m3": b"\x00\xffbytes",
    }
    assert sorted(await enc.find_by_tag("team", "b")) == ["m1", "m2", "m3"]
    assert await enc.get_tags("doc") == {"team": "a"}

    # What the backend holds: envelopes under key id k1, nothing readable; the large
    # compressible value was compressed before it was encrypted (far smaller than its JSON).
    for key in ("doc", "m1", "m2", "m3", "new"):
        stored = await raw_bytes(raw, key)
        assert stored.startswith(ENVELOPE_MAGIC) and envelope_key_id(stored) == "k1"
        assert b"Ada" not in stored and b"bytes" not in stored
    assert len(await raw_bytes(raw, "doc")) < len("private " * 200) // 4
    with pytest.raises(dmem.CorruptValueError):
        await raw.get("doc")


async def test_coordination_ops(stores: tuple[dmem.Store, dmem.Store]) -> None:
    enc, raw = stores
    await enc.set("v", {"n": 1}, ttl=600, tags={"t": "x"})
    assert await enc.compare_and_set("v", {"n": 2}, "no") is False
    assert await enc.compare_and_set("v", {"n": 1}, {"n": 2}, tags={"t": "y"}) is True
    assert await enc.get("v") == {"n": 2} and await enc.get_tags("v") == {"t": "y"}
    assert await enc.compare_and_set("missing", 1, 2) is False
    assert await enc.compare_and_delete("v", {"n": 1}) is False
    assert await enc.compare_and_delete("v", {"n": 2}) is True
    assert await enc.get("v") is None

    # Counters are encrypted too; incr keeps the expiry and tags of an existing key.
    assert await enc.incr("c", 5, ttl=600) == 5
    await enc.set("c2", 10, ttl=100, tags={"kind": "counter"})
    assert await enc.incr("c2", 3) == 13
    assert await enc.decr("c2") == 12
    assert await enc.get_tags("c2") == {"kind": "counter"}
    left = await enc.ttl("c2")
    assert left is not None and 90 < left <= 100
    assert envelope_key_id(await raw_bytes(raw, "c2")) == "k1"
    await enc.set("text", "not a number")
    with pytest.raises(dmem.InvalidValueError):
        await enc.incr("text")
    assert await enc.get("text") == "not a number"
    await enc.set("tagged", 1, tags={"drop": "me"})
    assert await enc.delete_by_tag("drop", "me") == 1


async def test_concurrent_counters_across_connections(tmp_path: Path) -> None:
    """incr through Encryption is a CAS loop on the exact envelope: no increment is lost
    when two connections (two SQLite threads + connections) race."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    async with (
        dmem.open(url, middleware=chain(cache=True), share_connection=False) as a,
        dmem.open(url, middleware=chain(cache=True), share_connection=False) as b,
    ):
        await asyncio.gather(*(store.incr("n") for _ in range(25) for store in (a, b)))
        assert await a.get("n") == 50

        # Two compare_and_sets from the same expected value: exactly one wins.
        await a.set("slot", "free")
        won = await asyncio.gather(
            a.compare_and_set("slot", "free", "a"), b.compare_and_set("slot", "free", "b")
        )
        assert sorted(won) == [False, True]
        assert await a.get("slot") == ("a" if won[0] else "b")


# --- rotation ---------------------------------------------------------------------------------
async def test_rotation(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rot.db'}"
    async with dmem.open(url, middleware=chain()) as old:
        await old.set("a", "written under k1")
    rotated = {"k1": KEY1, "k2": KEY2}
    async with (
        dmem.open(url, middleware=chain(keys=rotated, primary="k2")) as new,
        dmem.open(url) as raw,
    ):
        assert await new.get("a") == "written under k1"
        await new.set("b", "written under k2")
        assert envelope_key_id(await raw_bytes(raw, "a")) == "k1"
        assert envelope_key_id(await raw_bytes(raw, "b")) == "k2"
    async with dmem.open(url, middleware=chain(keys={"k2": KEY2})) as only_new:
        assert await only_new.get("b") == "written under k2"
        with pytest.raises(dmem.CorruptValueError, match="key id 'k1'") as caught:
            await only_new.get("a")
        assert "k2" in str(caught.value)  # which ids it has, never the keys


# --- values that must not decrypt ---------------------------------------------------------------
async def test_moved_ciphertext_is_refused(url: str, namespace: str) -> None:
    async with (
        dmem.open(url, namespace=namespace, middleware=chain()) as enc,
        dmem.open(url, namespace=namespace + "-b", middleware=chain()) as other_ns,
        dmem.open(url, namespace=namespace) as raw,
        dmem.open(url, namespace=namespace + "-b") as raw_other,
    ):
        try:
            await enc.set("alice", {"balance": 100})
            await enc.set("bob", {"balance": 0})
            stolen = await raw_bytes(raw, "alice")
            await put_raw(raw, "bob", stolen)  # another key, same namespace
            with pytest.raises(dmem.CorruptValueError, match="another key or namespace"):
                await enc.get("bob")
            await put_raw(raw_other, "alice", stolen)  # same key, another namespace
            with pytest.raises(dmem.CorruptValueError, match="another key or namespace"):
                await other_ns.get("alice")
            assert await enc.get("alice") == {"balance": 100}
        finally:
            await raw.clear()
            await raw_other.clear()


async def test_tampered_truncated_and_foreign_values(stores: tuple[dmem.Store, dmem.Store]) -> None:
    enc, raw = stores
    await enc.set("x", "some secret text")
    good = await raw_bytes(raw, "x")
    header = len(ENVELOPE_MAGIC) + 2 + len("k1")
    # One flipped bit anywhere: magic, version, key id, nonce, ciphertext, tag.
    for position in (0, 2, 4, header, header + 12, len(good) - 17, len(good) - 1):
        bad = bytearray(good)
        bad[position] ^= 0x01
        await put_raw(raw, "x", bytes(bad))
        with pytest.raises(dmem.CorruptValueError):
            await enc.get("x")
    for cut in (1, 3, header, header + 12, header + 27, len(good) - 1):
        await put_raw(raw, "x", good[:cut])
        with pytest.raises(dmem.CorruptValueError):
            await enc.get("x")
    await put_raw(raw, "x", good + b"\x00")
    with pytest.raises(dmem.CorruptValueError):
        await enc.get("x")
    # A value written without Encryption (here by the raw store), and an unknown key id.
    await raw.set("plain", "hello")
    with pytest.raises(dmem.CorruptValueError, match="not encrypted"):
        await enc.get("plain")
    foreign = Encryption(keys={"zz": KEY2}).seal(raw.namespace, "x", b'"hi"')
    await put_raw(raw, "x", foreign)
    with pytest.raises(dmem.CorruptValueError, match="key id 'zz'"):
        await enc.get("x")
    # Every read path says so, and coordination does too, instead of a silent mismatch.
    with pytest.raises(dmem.CorruptValueError):
        await enc.get_many(["x"])
    with pytest.raises(dmem.CorruptValueError):
        [item async for item in enc.scan("x")]
    with pytest.raises(dmem.CorruptValueError):
        await enc.compare_and_set("x", "hi", "new")
    with pytest.raises(dmem.CorruptValueError):
        await enc.incr("x")
    await put_raw(raw, "x", good)
    assert await enc.get("x") == "some secret text"


# --- the chain's order -------------------------------------------------------------------------
async def test_encrypting_before_compressing_is_refused_before_io(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    for wrong in (
        [Encryption(keys={"k1": KEY1}), Compression()],
        [Cache(), Encryption(keys={"k1": KEY1}), Cache(), Compression(threshold=16)],
    ):
        with pytest.raises(dmem.InvalidArgumentError, match="put Compression before Encryption"):
            async with dmem.open(f"sqlite:///{path}", middleware=wrong):
                pass
        assert not path.exists(), "the refused open touched the database"
    async with dmem.open(f"sqlite:///{path}", middleware=chain()) as ok:
        await ok.set("k", "v")


# --- keys -------------------------------------------------------------------------------------
def test_keys_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "needs keys="),
        ({"keys": {}}, "non-empty mapping"),
        ({"keys": [("k1", KEY1)]}, "non-empty mapping"),
        ({"keys": {"k1": KEY1[:16]}}, "16 bytes; AES-256 needs 32"),
        ({"keys": {"k1": 12345}}, "must be bytes"),
        ({"keys": {"bad id": KEY1}}, "key ids must be"),
        ({"keys": {"": KEY1}}, "key ids must be"),
        ({"keys": {"k1": KEY1, "k2": KEY2}}, "say which one encrypts"),
        ({"keys": {"k1": KEY1}, "primary": "k9"}, "not one of its key ids"),
        ({"keys": {"k1": "env:DMEM_TEST_NO_SUCH_VAR"}}, "is not set"),
        ({"keys": {"k1": f"file:{tmp_path / 'missing'}"}}, "cannot read key file"),
    ]
    for kwargs, message in bad:
        with pytest.raises(dmem.InvalidArgumentError, match=message):
            Encryption(**kwargs)
    # Keys and ids swapped by mistake: the key is in the id's (or primary's) place.
    hex_key = KEY1.hex()
    for kwargs in ({"keys": {hex_key + "!": KEY1}}, {"keys": {"k1": KEY1}, "primary": hex_key}):
        with pytest.raises(dmem.InvalidArgumentError) as swapped:
            Encryption(**kwargs)
        assert_secret_hidden(hex_key, testkit.exception_texts(swapped.value), size=8)
    # A str that is neither env: nor file: may be the key itself: the error never quotes it.
    pasted = base64.b64encode(KEY1).decode()
    with pytest.raises(dmem.InvalidArgumentError) as caught:
        Encryption(keys={"k1": pasted})
    assert_secret_hidden(pasted, testkit.exception_texts(caught.value), percent_encoded=False)

    monkeypatch.setenv("DMEM_TEST_KEY_B64", base64.urlsafe_b64encode(KEY1).decode().rstrip("="))
    monkeypatch.setenv("DMEM_TEST_KEY_HEX", KEY2.hex())
    monkeypatch.setenv("DMEM_TEST_KEY_SHORT", base64.b64encode(KEY1[:31]).decode())
    assert Encryption.key_from_env("DMEM_TEST_KEY_B64") == KEY1
    assert Encryption.key_from_env("DMEM_TEST_KEY_HEX") == KEY2
    with pytest.raises(dmem.InvalidArgumentError, match="DMEM_TEST_KEY_SHORT") as short:
        Encryption(keys={"k1": "env:DMEM_TEST_KEY_SHORT"})
    assert_secret_hidden(
        os.environ["DMEM_TEST_KEY_SHORT"], testkit.exception_texts(short.value), size=8
    )
    (tmp_path / "raw.key").write_bytes(KEY1)
    (tmp_path / "text.key").write_text(Encryption.generate_key() + "\n")
    (tmp_path / "junk.key").write_bytes(os.urandom(40))
    assert Encryption.key_from_file(tmp_path / "raw.key") == KEY1
    assert len(Encryption.key_from_file(str(tmp_path / "text.key"))) == 32
    with pytest.raises(dmem.InvalidArgumentError, match=r"junk\.key"):
        Encryption.key_from_file(tmp_path / "junk.key")
    enc = Encryption(
        keys={"a": "env:DMEM_TEST_KEY_B64", "b": f"file:{tmp_path / 'raw.key'}", "c": KEY2},
        primary="c",
    )
    assert enc.key_ids == ("a", "b", "c") and enc.primary == "c"


async def test_by_registered_name_it_asks_for_keys() -> None:
    # A name in a chain gets no options, and an Encryption without keys cannot work.
    with pytest.raises(dmem.InvalidArgumentError, match="needs keys="):
        async with dmem.open("memory://", middleware=["cache", "encryption"]):
            pass


def test_missing_cryptography_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import raise ImportError, as if it were not installed.
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(dmem.InvalidArgumentError, match=r"pip install 'dmem\[encryption\]'"):
        Encryption(keys={"k1": KEY1})


async def test_max_value_bytes_counts_the_envelope() -> None:
    limit = 4 * 1024 * 1024
    url = f"memory://enc-{uuid.uuid4().hex}?max_value_bytes={limit}"
    enc = Encryption(keys={"k1": KEY1})
    async with dmem.open(url, middleware=[enc]) as store:
        top = enc.wrap(store.provider)
        assert top.max_value_bytes == limit - enc.overhead == limit - 4 - 2 - 12 - 16
        fits = os.urandom(limit - enc.overhead - 2)  # bytes are encoded with a 2-byte marker
        await store.set("fits", fits)
        assert await store.get("fits") == fits
        with pytest.raises(dmem.InvalidValueError, match="max_value_bytes"):
            await store.set("over", fits + b"x")
        with pytest.raises(dmem.InvalidValueError):
            await store.set_many({"a": 1, "over": fits + b"x"})
        assert not await store.exists("over") and not await store.exists("a")


# --- secrets ----------------------------------------------------------------------------------
async def test_keys_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DMEM_TEST_SECRET_KEY", base64.b64encode(KEY2).decode())
    url = f"sqlite:///{tmp_path / 'secret.db'}"
    texts: list[str] = []
    enc = Encryption(keys={"k1": KEY1, "k2": "env:DMEM_TEST_SECRET_KEY"}, primary="k2")
    async with dmem.open(url, middleware=[Compression(), enc]) as store:
        await store.set("a", "v" * 5000, tags={"t": "x"})
        await store.get("a")
        await store.incr("n")
        texts += [repr(enc), str(enc), repr(store), repr(store.middleware), str(store.middleware)]
        texts += [repr(await store.health()), str(await store.health())]
        top = enc.wrap(store.provider)
        texts += [repr(top), str(vars(top)), str(vars(enc))]
        async with dmem.open(url) as raw:
            await put_raw(raw, "a", b"\x00E\x01\x02k2" + os.urandom(40))
        with pytest.raises(dmem.CorruptValueError) as corrupt:
            await store.get("a")
        texts += testkit.exception_texts(corrupt.value)
    async with dmem.open(url, middleware=[Encryption(keys={"k1": KEY1})]) as other:
        with pytest.raises(dmem.CorruptValueError) as unknown:
            await other.get("n")
        texts += testkit.exception_texts(unknown.value)
    with pytest.raises(dmem.InvalidArgumentError) as short:
        Encryption(keys={"k1": KEY1[:31]})
    texts += testkit.exception_texts(short.value)
    texts += [record.getMessage() for record in caplog.records] + [caplog.text]
    assert caplog.records, "nothing was logged at DEBUG: the check would prove nothing"
    for key in (KEY1, KEY2):
        for shown in (key.hex(), base64.b64encode(key).decode(), repr(key)[2:-1]):
            assert_secret_hidden(shown, texts, size=8, percent_encoded=False)
        assert not any(key[:8].decode("latin-1") in text for text in texts)


# --- the conformance suite under [Cache(), Compression(), Encryption()] ----------------------
CONFORMANCE_CHAIN: Sequence[Any] = (
    Cache(),
    Compression(threshold=16),
    Encryption(keys={"k1": KEY1, "k2": KEY2}, primary="k2"),
)


class TestEncryptedMemoryConformance(dmem_conformance.KVSuite):
    lacks: ClassVar[dict[str, str]] = {
        "unreachable": "the memory backend is in-process: it cannot be down"
    }
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture
    def middleware(self) -> Sequence[Any]:
        return CONFORMANCE_CHAIN

    @pytest.fixture
    def store_factory(self) -> dmem_conformance.StoreFactory:
        return dmem_conformance.url_factory("memory://dmem-enc-conformance?max_value_bytes=5242880")


class TestEncryptedSQLiteConformance(dmem_conformance.KVSuite):
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture
    def middleware(self) -> Sequence[Any]:
        return CONFORMANCE_CHAIN

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        return alternating_factory(
            f"sqlite:///{tmp_path / 'conformance.db'}", max_value_bytes=5 * 1024 * 1024
        )

    @pytest.fixture
    def unreachable_store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        return dmem_conformance.url_factory(f"sqlite:///{blocker / 'x.db'}", timeout=2)


def test_wraps_any_provider() -> None:
    from dmem.backends.memory import MemoryProvider

    enc = Encryption(keys={"k1": KEY1})
    wrapped = enc.wrap(MemoryProvider())
    assert isinstance(wrapped, EncryptionProvider) and wrapped.spec is enc
