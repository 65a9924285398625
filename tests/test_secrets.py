"""The core's URL handling never shows a password: redact_url, split_url, open, repr, health.

Each plugin tests its own parser the same way (test_redis_secrets.py, the PostgreSQL and
Chroma secret tests); these are the parts every URL goes through first.
"""

from __future__ import annotations

from urllib.parse import quote

import dmem
import pytest
from click.testing import CliRunner
from dmem._open import split_url
from dmem.backends import MemoryProvider
from dmem.cli import main as cli
from dmem_conformance.testkit import assert_secret_hidden, secret_pieces
from hypothesis import assume, given, settings
from hypothesis import strategies as st

# Characters that split URLs ('?', '/', '#', '@', ':', '%', '[', ']', '&', '='), white space
# that urlsplit deletes (tab, newline), and, for the recognizable rest, capital Latin and
# Greek letters: messages are English prose, where three capitals in a row are rare (and
# listed in _FIXED), so a piece of three of them in a message is the password's.
_GREEK = "".join(chr(c) for c in range(0x391, 0x3AA) if c != 0x3A2)  # capital alpha..omega
_ALPHABET = st.sampled_from(list("?/#@:%[]&= \t\n")) | st.sampled_from(
    list("ABCDEFGHIJKLMNOPQRSTUVWXYZ" + _GREEK + _GREEK.lower())
)


def _forms(password: str) -> list[str]:
    encoded = quote(password, safe="")
    return [
        f"redis://user:{password}@example.com:6379/0",
        f"redis://user:{encoded}@example.com:6379/0",
        f"postgresql://user:{password}@example.com:5432/db?namespace=n",
        f"redis+sentinel://:{password}@h1:26379,h2:26379/mymaster",
        f"chroma+http://example.com:8000/?token={password}",
        f"memory://user:{password}@example.com/x",
    ]


# The text around a password in the URLs and messages: a password with a piece of it would
# seem to leak when the fixed text shows, so such passwords are not drawn.
_FIXED = " ".join(_forms("")) + " URL TLS SSL NUL API JSON UTF HTTP TCP DNS SCRAM MD5"
passwords = (
    st.text(_ALPHABET, min_size=8, max_size=24)
    .filter(lambda p: sum(c.isalpha() for c in p) >= 6)  # enough of it to be recognizable
    .filter(lambda p: not any(p[i : i + 4] in _FIXED for i in range(len(p) - 3)))
)


def _assert_hidden(text: str, secret: str) -> None:
    """No 4-character piece of the secret that holds at least 3 letters shows in ``text``
    (the others may be URL punctuation that any message holds)."""
    weak = {p for p in secret_pieces(secret) if sum(c.isalpha() for c in p) < 3}
    assert_secret_hidden(secret, [text], fixed=weak, percent_encoded=False)


@settings(max_examples=300)
@given(passwords)
def test_redact_url_hides_every_password(password: str) -> None:
    for url in _forms(password):
        _assert_hidden(dmem.redact_url(url), password)


@settings(max_examples=200, deadline=None)
@given(passwords)
def test_url_errors_of_the_core_never_show_a_password(password: str) -> None:
    for url in _forms(password):
        try:
            split_url(url)
            if url.startswith("memory"):  # the only plugin the core itself holds
                dmem.create_provider(url, {"namespace": "n", "timeout": 1})
        except dmem.DmemError as exc:
            _assert_hidden(f"{exc} {exc!r}", password)


@settings(max_examples=100, deadline=None)
@given(passwords)
def test_a_store_repr_and_health_never_show_a_password(password: str) -> None:
    import asyncio

    async def check() -> None:
        for url in _forms(password):
            store = dmem.Store(MemoryProvider(), url=url)
            _assert_hidden(repr(store), password)
            await store.initialize()
            report = await store.health()
            _assert_hidden(str(report.to_dict()), password)
            await store.aclose()

    asyncio.run(check())


@pytest.mark.parametrize(
    "url",
    [
        "memory://user:Hk7?qZp9Wm@host/x",  # '?' in the password: urlsplit ends the user part
        "memory://user:Hk7\tqZp9Wm@host/x",  # a tab: urlsplit deletes it
        "memory://user:Hk7/qZp9Wm@host/x",
        "memory://user:Hk7#qZp9Wm@host/x",
    ],
)
def test_cases_urlsplit_gets_wrong(url: str) -> None:
    shown = dmem.redact_url(url)
    assert "qZp9" not in shown and "Hk7" not in shown, shown


@settings(max_examples=25, deadline=None)
@given(passwords)
def test_cli_output_never_shows_a_password(password: str) -> None:
    assume("\n" not in password and "\t" not in password)  # one command-line argument
    runner = CliRunner()
    for url in (
        f"redis://user:{password}@127.0.0.1:1/0?timeout=0.5",
        f"postgresql://user:{password}@127.0.0.1:1/db?timeout=0.5",
    ):
        for args in (["health", url], ["health", "--json", url], ["get", url, "k"]):
            result = runner.invoke(cli, args)
            assert result.exit_code != 0
            _assert_hidden(result.output + str(result.exception or ""), password)


def test_a_string_that_is_not_a_url_is_not_echoed_when_it_may_hold_a_password() -> None:
    with pytest.raises(dmem.InvalidArgumentError) as caught:
        split_url("redis:/user:Hk7qZp9Wm@host")  # one slash: no '://'
    assert "qZp9" not in str(caught.value)
    with pytest.raises(dmem.InvalidArgumentError, match="not a dmem URL: 'nothing-here'"):
        split_url("nothing-here")
