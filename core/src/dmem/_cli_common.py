"""What every ``dmem`` subcommand shares: running a coroutine, errors, options, progress.

Errors: a :class:`DmemError` becomes one line ``error: TypeName: message`` on stderr and
exit status 1; a refused command (``memory://`` writes, copying a store onto itself) is one
line and exit status 2, as click's own usage errors are. Every message goes through
:func:`scrub` first, so a password given on the command line never shows, even if a
backend's message were to repeat it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlsplit

import click
import orjson

from ._codec import MAX_DEPTH, encode
from ._health import redact_url
from ._open import open as open_store
from ._store import Store
from ._validation import check_key, check_tags, ttl_to_ms
from .errors import DmemError, InvalidValueError

__all__ = [
    "EXIT_ERROR",
    "LineError",
    "Record",
    "export_line",
    "parse_line",
    "EXIT_USAGE",
    "PROGRESS_INTERVAL",
    "Progress",
    "Seconds",
    "batch_option",
    "fail",
    "is_memory_url",
    "namespace_option",
    "open_url",
    "parse_json",
    "refuse_memory_write",
    "run",
    "scrub",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1  # the operation failed: a DmemError, a missing key, an unhealthy backend
EXIT_USAGE = 2  # the command was refused before doing anything (click uses 2 as well)

# Seconds between two progress lines when stderr is not a terminal (a log, a pipe).
PROGRESS_INTERVAL = 2.0

_SECRET_NAMES = re.compile(r"(?i)^(password|passwd|pwd|token|secret|api_key|apikey)$")


def _secrets(url: str) -> list[str]:
    """The secret parts of ``url`` as typed: userinfo password, secret query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    query = parse_qsl(parts.query, keep_blank_values=True)
    found += [value for name, value in query if _SECRET_NAMES.match(name)]
    # Longest first, so a secret that contains another is replaced whole.
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(message: str, urls: Iterable[str]) -> str:
    """``message`` on one line, with each URL redacted and each of its secrets replaced.

    Providers already redact their URLs; this is the second lock, for a message that
    quotes a password some other way (a driver's error text, a URL given twice).
    """
    for url in urls:
        message = message.replace(url, redact_url(url))
        for secret in _secrets(url):
            message = message.replace(secret, "***")
    return " ".join(message.split()) if "\n" in message or "\r" in message else message


def fail(message: str, code: int = EXIT_ERROR, *, urls: Iterable[str] = ()) -> NoReturn:
    """Print ``error: message`` (one line, scrubbed) to stderr and exit with ``code``."""
    click.echo(f"error: {scrub(message, urls)}", err=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T], *urls: str) -> T:
    """Run ``coro``; a DmemError from it is one ``error:`` line and exit status 1."""
    try:
        return asyncio.run(coro)
    except DmemError as exc:
        fail(f"{type(exc).__name__}: {exc}", urls=urls)


def open_url(
    url: str, namespace: str | None, *, create: bool = True
) -> AbstractAsyncContextManager[Store]:
    """``dmem.open(url)``, with ``namespace`` only when the user gave one.

    Without it the provider's own default applies (and ``?namespace=`` in the URL works);
    with both, ``dmem.open`` refuses the option given twice. ``create=False`` for commands
    that only read or remove: a SQLite file or Chroma directory that does not exist is
    then an error (StoreNotFoundError), and nothing is created (a typo in a path used to
    leave an empty database behind).
    """
    options: dict[str, Any] = {} if create else {"create": False}
    if namespace is not None:
        options["namespace"] = namespace
    return open_store(url, **options)


def namespace_option(function: F) -> F:
    """The ``--namespace`` option every command that opens a store takes."""
    return click.option(
        "--namespace",
        "-n",
        default=None,
        metavar="NS",
        help="Namespace to use (default: the backend's default namespace).",
    )(function)


def batch_option(help_text: str) -> Callable[[F], F]:
    """The ``--batch`` option of copy, export and import: keys per call, at least 1."""
    return click.option(
        "--batch",
        default=500,
        show_default=True,
        type=click.IntRange(min=1),
        help=help_text,
    )


def is_memory_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == "memory" if "://" in url else False


def refuse_memory_write(url: str, what: str) -> None:
    """Exit 2 when ``url`` is an in-process memory store: the write would die with us."""
    if is_memory_url(url):
        fail(
            f"{what} {redact_url(url)}: a memory:// store (named or not) lives inside one "
            "process, and this command's process exits when it is done, so what it wrote "
            "would be lost at once; use a store that outlives the process, such as "
            "sqlite:///path/to.db",
            EXIT_USAGE,
        )


def parse_json(text: str) -> Any:
    """``json.loads``, with a nesting too deep for Python's parser as InvalidValueError.

    The standard parser, not orjson: it keeps integers beyond 64 bits as ints (orjson turns
    them into floats silently), so the codec then refuses them instead of storing a float.
    Its C scanner recurses once per level and raises RecursionError well before any value
    the codec would take (64 levels) could need that many.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidValueError(f"value is nested deeper than {MAX_DEPTH} levels") from None


class Seconds(click.FloatRange):
    """A number of seconds > 0 (``--ttl``, ``expire SECONDS``): finite, unlike FloatRange's.

    ``nan`` passes every range check (all its comparisons are false), ``inf`` any without
    a maximum: both are refused here, as click refuses other bad values (exit 2).
    """

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return seconds


class Progress:
    """Progress on stderr: a bar on a terminal, else a line every ``PROGRESS_INTERVAL`` s.

    Stdout stays free for data (``dmem export``). ``quiet`` shows nothing but the final
    line; ``done`` may pass ``total`` (keys written while a copy runs), the bar then stays
    full.
    """

    def __init__(self, label: str, total: int | None, *, quiet: bool = False) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._quiet = quiet
        self._start = time.perf_counter()
        self._last = self._start
        self._bar: Any = None
        # A bar needs a length: without a total (lines still to check) lines are shown.
        if not quiet and total is not None and sys.stderr.isatty():
            self._bar = click.progressbar(
                length=total,
                label=label,
                file=sys.stderr,
                show_pos=True,
                show_percent=True,
                show_eta=True,
            )

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)

    def update(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            if self.total is not None and self._bar.pos + count > self.total:
                count = max(0, self.total - self._bar.pos)
            self._bar.update(count)
            return
        now = time.perf_counter()
        if not self._quiet and now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            click.echo(f"{self.label}: {self._position()}", err=True)

    def _position(self) -> str:
        elapsed = time.perf_counter() - self._start
        rate = f", {self.done / elapsed:,.0f} keys/s" if elapsed > 0 else ""
        if self.total:
            percent = min(100, 100 * self.done // self.total)
            return f"{self.done:,}/{self.total:,} keys ({percent}%){rate}"
        return f"{self.done:,} keys{rate}"

    def seconds(self) -> float:
        return time.perf_counter() - self._start


# --- the export format (docs/cli.md) -------------------------------------------------------
_FIELDS = frozenset(("key", "value", "bytes", "tags", "ttl"))


@dataclass
class Record:
    """One key as read: ``ttl_ms`` left at ``read_at`` (``time.monotonic()``), or None."""

    key: str
    value: Any
    tags: dict[str, str]
    ttl_ms: int | None
    read_at: float

    def left_ms(self, now: float) -> int | None:
        """Whole ms left at monotonic time ``now`` (rounded up; <= 0: expired)."""
        if self.ttl_ms is None:
            return None
        return math.ceil(self.ttl_ms - (now - self.read_at) * 1000)


def export_line(record: Record, now: float) -> bytes | None:
    """One line of the export format for ``record``; None if it expired by ``now``."""
    left = record.left_ms(now)
    if left is not None and left <= 0:
        return None
    line: dict[str, Any] = {"key": record.key}
    if isinstance(record.value, bytes):
        line["bytes"] = base64.b64encode(record.value).decode("ascii")
    else:
        line["value"] = record.value
    line["tags"] = record.tags
    line["ttl"] = None if left is None else left / 1000
    return orjson.dumps(line) + b"\n"


class LineError(Exception):
    """A line of an import file that is not a valid record."""


def parse_line(line: bytes) -> tuple[str, Any, dict[str, str], int | None] | None:
    """``(key, value, tags, ttl_ms)`` from one line of the export format; None if blank.

    Raises LineError (or a DmemError from the store's own checks) for a bad line.
    """
    if not line.strip():
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        record = parse_json(text)
    except ValueError as exc:  # json.JSONDecodeError; InvalidValueError (too deep)
        raise LineError(f"not JSON: {exc}") from None
    if type(record) is not dict:
        raise LineError(f"not a JSON object but {type(record).__name__}")
    unknown = record.keys() - _FIELDS
    if unknown:
        raise LineError(f"unknown field(s) {', '.join(sorted(unknown))}")
    if "key" not in record:
        raise LineError('no "key"')
    key = record["key"]
    check_key(key)
    if ("value" in record) == ("bytes" in record):
        raise LineError('needs exactly one of "value" and "bytes"')
    if "bytes" in record:
        data = record["bytes"]
        if type(data) is not str:
            raise LineError(f'"bytes" must be a base64 str, not {type(data).__name__}')
        try:
            value: Any = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise LineError(f'"bytes" is not base64: {exc}') from None
    else:
        value = record["value"]
        encode(value)  # InvalidValueError now, not halfway through the import
    tags = check_tags(record.get("tags"))
    ttl = record.get("ttl")
    return key, value, tags, None if ttl is None else ttl_to_ms(ttl)
