"""Typed reading of provider options (URL query strings arrive as str).

Plugins use it so every backend treats options alike::

    opts = ProviderOptions(options, provider="redis")
    timeout = opts.float("timeout", 5.0)
    opts.done()   # InvalidArgumentError naming any option nobody read
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidArgumentError

__all__ = ["ProviderOptions"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ProviderOptions:
    """Options of one provider; each read removes the option, ``done()`` rejects the rest."""

    def __init__(self, options: dict[str, Any], *, provider: str) -> None:
        self._options = dict(options)
        self._provider = provider

    def _bad(self, name: str, expected: str, value: object) -> InvalidArgumentError:
        shown = "***" if "password" in name or "token" in name else repr(value)
        return InvalidArgumentError(
            f"{self._provider} option {name!r} must be {expected}, got {shown}"
        )

    def str(self, name: str, default: str) -> str:
        value = self._options.pop(name, default)
        if not isinstance(value, str):
            raise self._bad(name, "a str", value)
        return value

    def optional_str(self, name: str) -> str | None:
        value = self._options.pop(name, None)
        if value is not None and not isinstance(value, str):
            raise self._bad(name, "a str", value)
        return value

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        value = self._options.pop(name, default)
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise self._bad(name, "an int", value) from None
        if type(value) is not int or (minimum is not None and value < minimum):
            raise self._bad(name, f"an int >= {minimum}" if minimum is not None else "an int", value)
        return value

    def float(self, name: str, default: float, *, positive: bool = True) -> float:
        value = self._options.pop(name, default)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self._bad(name, "a number", value) from None
        if type(value) not in (int, float) or not math.isfinite(value):
            raise self._bad(name, "a finite number", value)
        if positive and value <= 0:
            raise self._bad(name, "a number > 0", value)
        return float(value)

    def bool(self, name: str, default: bool) -> bool:
        value = self._options.pop(name, default)
        if isinstance(value, str):
            lowered = value.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        if type(value) is not bool:
            raise self._bad(name, "a bool (true/false)", value)
        return value

    def raw(self, name: str, default: Any = None) -> Any:
        return self._options.pop(name, default)

    def done(self) -> None:
        """Raise InvalidArgumentError if any option was not read."""
        if self._options:
            raise InvalidArgumentError(
                f"unknown {self._provider} option(s): {', '.join(sorted(self._options))}"
            )
