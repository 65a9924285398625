"""Typed reading of provider options (URL query strings arrive as str).

Plugins use it so every backend treats options alike::

    opts = ProviderOptions(options, provider="redis")
    namespace = opts.namespace()  # str, no NUL, no lone surrogates
    timeout = opts.float("timeout", 5.0)
    opts.done()   # InvalidArgumentError naming any option nobody read
"""

from __future__ import annotations

import builtins
import math
import re
from typing import Any

from ._validation import check_namespace
from .errors import InvalidArgumentError
from .provider import MIN_VALUE_LIMIT

__all__ = ["ProviderOptions", "unknown_options_message"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ProviderOptions:
    """Options of one provider; each read removes the option, ``done()`` rejects the rest."""

    def __init__(self, options: dict[str, Any], *, provider: builtins.str) -> None:
        self._options = dict(options)
        self._provider = provider

    def _bad(
        self, name: builtins.str, expected: builtins.str, value: object
    ) -> InvalidArgumentError:
        # An '@' in a value from the URL may be the end of a password that an unencoded '?'
        # cut into the query: such a value is not shown either.
        hidden = "password" in name or "token" in name or "@" in builtins.str(value)
        shown = "***" if hidden else repr(value)
        return InvalidArgumentError(
            f"{self._provider} option {name!r} must be {expected}, got {shown}"
        )

    def str(self, name: builtins.str, default: builtins.str) -> builtins.str:
        value = self._options.pop(name, default)
        if not isinstance(value, builtins.str):
            raise self._bad(name, "a str", value)
        return value

    def optional_str(self, name: builtins.str) -> builtins.str | None:
        value = self._options.pop(name, None)
        if value is not None and not isinstance(value, builtins.str):
            raise self._bad(name, "a str", value)
        return value

    def int(
        self, name: builtins.str, default: builtins.int, *, minimum: builtins.int | None = None
    ) -> builtins.int:
        value = self._options.pop(name, default)
        if isinstance(value, builtins.str):
            try:
                value = builtins.int(value)
            except ValueError:
                raise self._bad(name, "an int", value) from None
        if type(value) is not builtins.int or (minimum is not None and value < minimum):
            raise self._bad(
                name, f"an int >= {minimum}" if minimum is not None else "an int", value
            )
        return value

    def float(
        self, name: builtins.str, default: builtins.float, *, positive: builtins.bool = True
    ) -> builtins.float:
        value = self._options.pop(name, default)
        if isinstance(value, builtins.str):
            try:
                value = builtins.float(value)
            except ValueError:
                raise self._bad(name, "a number", value) from None
        if type(value) not in (builtins.int, builtins.float) or not math.isfinite(value):
            raise self._bad(name, "a finite number", value)
        if positive and value <= 0:
            raise self._bad(name, "a number > 0", value)
        return builtins.float(value)

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        value = self._options.pop(name, default)
        if isinstance(value, builtins.str):
            lowered = value.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        if type(value) is not builtins.bool:
            raise self._bad(name, "a bool (true/false)", value)
        return value

    def namespace(self, name: builtins.str = "namespace") -> builtins.str:
        """The store's namespace (default ``""``), by the rule of ``check_namespace``.

        ``dmem.open`` and the Store check it too; a plugin reading it here gets the same
        rule and message.
        """
        value = self.str(name, "")
        return check_namespace(value, f"{self._provider} option {name!r}")

    def max_value_bytes(self, name: builtins.str = "max_value_bytes") -> builtins.int | None:
        """The largest encoded value the store may accept, or None (the backend's own).

        At least 4 MiB: the contract promises values up to that size on every backend.
        """
        if self._options.get(name) is None:
            self._options.pop(name, None)
            return None
        return self.int(name, 0, minimum=MIN_VALUE_LIMIT)

    def raw(self, name: builtins.str, default: Any = None) -> Any:
        return self._options.pop(name, default)

    def done(self) -> None:
        """Raise InvalidArgumentError if any option was not read."""
        if self._options:
            raise InvalidArgumentError(unknown_options_message(self._provider, self._options))


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def unknown_options_message(
    provider: builtins.str, unknown: dict[builtins.str, Any]
) -> builtins.str:
    """The error for options nobody read, naming them only when that cannot show a secret.

    A password with an unencoded ``?`` turns the rest of the URL, up to the ``@`` that ends
    the user part, into query options: then a "name" (or value) holds a piece of it. So the
    names are shown only when each is a plain identifier and no value holds an ``@``.
    """
    plain = all(
        _PLAIN_NAME.fullmatch(name) and "@" not in builtins.str(value)
        for name, value in unknown.items()
    )
    if plain:
        return f"unknown {provider} option(s): {', '.join(sorted(unknown))}"
    return (
        f"unknown {provider} option(s), not named: one is not a plain name or holds an '@', "
        "so it may be a piece of a password with an unencoded '?' (percent-encode secrets "
        "in URLs)"
    )
