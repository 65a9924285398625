"""Calls with arguments of any type: what the ``errors.any-argument`` clauses draw and run.

A :class:`Call` is one method call on a store (``Store`` or ``VectorStore``) with its
arguments; :func:`call_lists` draws them from a table of signatures, each parameter with a
strategy of valid values and one of near misses. Every call is drawn in one of three
modes: all arguments valid (so calls also succeed and change the store), exactly one
argument bad (the others valid: a bad ttl beside a good batch must still write
nothing), or every argument valid or anything at all (:func:`~.strategies.anything`).
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from .strategies import anything

__all__ = ["Call", "Param", "call_lists", "safe_repr"]

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def safe_repr(obj: object) -> str:
    """A short repr that never raises (the drawn objects include ones whose repr does)."""
    try:
        return _REPR.repr(obj)
    except Exception:  # noqa: BLE001 - an int of 5000 digits, a failing __repr__
        return f"<{type(obj).__name__} object>"


class Call:
    """``method(*args, **kwargs)`` on a store; ``await call.run(store)`` makes it.

    Not a dataclass: Hypothesis prints a failing example with its own pretty printer,
    which would repr every argument plainly; this repr (and ``_repr_pretty_``) never
    raises.
    """

    __slots__ = ("args", "kwargs", "method")

    def __init__(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.method = method
        self.args = args
        self.kwargs = kwargs

    async def run(self, target: Any) -> Any:
        """The call's result; ``scan`` (an async iterator) is read to the end."""
        result = getattr(target, self.method)(*self.args, **self.kwargs)
        if self.method == "scan":
            return [item async for item in result]
        return await result

    def __repr__(self) -> str:
        shown = [safe_repr(arg) for arg in self.args]
        shown += [f"{name}={safe_repr(value)}" for name, value in self.kwargs.items()]
        return f"{self.method}({', '.join(shown)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


class Param:
    """One parameter: how to pass it, valid values, and bad values beyond ``anything()``."""

    __slots__ = ("bad", "keyword", "name", "optional", "valid")

    def __init__(
        self,
        name: str,
        valid: st.SearchStrategy[Any],
        bad: st.SearchStrategy[Any] | None = None,
        *,
        keyword: bool = False,
        optional: bool = False,
    ) -> None:
        self.name = name
        self.valid = valid
        self.bad = anything() if bad is None else st.one_of(bad, anything())
        self.keyword = keyword
        self.optional = optional or keyword


_MODES = ("valid", "one-bad", "any")


@st.composite
def _call(draw: st.DrawFn, signatures: Mapping[str, Sequence[Param]]) -> Call:
    method = draw(st.sampled_from(sorted(signatures)))
    params = signatures[method]
    mode = draw(st.sampled_from(_MODES)) if params else "valid"
    bad = draw(st.integers(0, len(params) - 1)) if mode == "one-bad" else -1
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for index, param in enumerate(params):
        if index != bad and param.optional and draw(st.booleans()):
            if not param.keyword:
                break  # an optional positional left out: so are the ones after it
            continue
        if index == bad or (mode == "any" and draw(st.booleans())):
            value = draw(param.bad)
        else:
            value = draw(param.valid)
        if param.keyword:
            kwargs[param.name] = value
        else:
            args.append(value)
    return Call(method, *args, **kwargs)


def call_lists(
    signatures: Mapping[str, Sequence[Param]], *, max_calls: int = 4
) -> st.SearchStrategy[list[Call]]:
    """One to ``max_calls`` calls of the methods in ``signatures``."""
    return st.lists(_call(signatures), min_size=1, max_size=max_calls)
