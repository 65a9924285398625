"""The ``@clause`` decorator that turns an async suite method into a sync pytest test.

A suite test is written ``async def test_x(self, store, ...)`` and decorated
``@clause("ttl.expiry")``. The decorator returns a *sync* test that takes the
suite's ``dmem_bridge`` (one event loop) and ``dmem_settings`` (the Hypothesis
profile) fixtures plus the method's own fixtures, and runs the coroutine on the
bridge. With ``given=``, a Hypothesis test is built at run time (so it uses the
profile chosen for this run) and runs every example on the same loop and the
same store, cleared before each example.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import example as hypothesis_example
from hypothesis import given as hypothesis_given
from hypothesis import settings as hypothesis_settings
from hypothesis.strategies import SearchStrategy

from ._bridge import LoopBridge
from ._clauses import CAPABILITIES, CLAUSES, OPTIONAL_SKIP_PREFIX

__all__ = [
    "CAPABILITY_SKIP_PREFIX",
    "OPTIONAL_SKIP_PREFIX",
    "SuiteTest",
    "check_capabilities",
    "clause",
    "clause_of",
    "override_problems",
    "xfail",
]

AsyncTest = Callable[..., "Coroutine[Any, Any, None] | None"]
SuiteTest = Callable[..., None]

CAPABILITY_SKIP_PREFIX = "dmem: backend declares it lacks capability"
_BRIDGE = "dmem_bridge"
_SETTINGS = "dmem_settings"


def clause(
    name: str,
    *,
    requires: str | Iterable[str] = (),
    given: Mapping[str, SearchStrategy[Any]] | None = None,
    examples: Sequence[Mapping[str, Any]] = (),
    max_examples: int | None = None,
) -> Callable[[AsyncTest], SuiteTest]:
    """Mark an async suite method as the test of contract clause ``name``.

    ``examples``: with ``given``, cases run before the drawn ones under every profile
    (Hypothesis's ``@example``), for the classic mistakes a clause must always catch.
    """
    if name not in CLAUSES:
        raise ValueError(f"unknown contract clause {name!r}")
    needs = (requires,) if isinstance(requires, str) else tuple(requires)
    for cap in needs:
        if cap not in CAPABILITIES:
            raise ValueError(f"unknown capability {cap!r}")
    drawn = dict(given or {})
    if examples and not drawn:
        raise ValueError("examples= needs given=")

    def decorate(fn: AsyncTest) -> SuiteTest:
        params = list(inspect.signature(fn).parameters.values())
        is_async = inspect.iscoroutinefunction(fn)
        if not is_async:
            # A sync body (the state machine) drives the bridge itself.
            if [p.name for p in params[1:3]] != [_BRIDGE, _SETTINGS] or drawn or examples:
                raise TypeError(
                    f"sync suite test {fn.__name__} must take (self, {_BRIDGE}, "
                    f"{_SETTINGS}, ...) and no given= or examples="
                )
            params = [params[0], *params[3:]]
        fixture_params = [p for p in params[1:] if p.name not in drawn]

        def test(self: Any, dmem_bridge: LoopBridge, dmem_settings: Any, **fixtures: Any) -> None:
            check_capabilities(type(self), needs)
            if not is_async:
                fn(self, dmem_bridge, dmem_settings, **fixtures)
                return
            if not drawn:
                dmem_bridge.run(_coroutine(fn(self, **fixtures)))
                return
            store = fixtures.get("store")

            def example(**values: Any) -> None:
                if store is not None:
                    # Reuse the test's store (one connection), emptied per example.
                    dmem_bridge.run(store.clear())
                dmem_bridge.run(_coroutine(fn(self, **fixtures, **values)))

            example.__name__ = fn.__name__
            example.__qualname__ = fn.__qualname__
            example.__module__ = fn.__module__
            # Keeps example-database keys (thorough profile) apart per suite test.
            example._hypothesis_internal_add_digest = (  # type: ignore[attr-defined]
                f"{fn.__module__}.{fn.__qualname__}".encode()
            )
            chosen = dmem_settings
            if max_examples is not None:
                chosen = hypothesis_settings(
                    dmem_settings, max_examples=min(max_examples, dmem_settings.max_examples)
                )
            drawn_test = hypothesis_given(**drawn)(example)
            for case in reversed(examples):  # decorators apply bottom-up: keep the order
                drawn_test = hypothesis_example(**case)(drawn_test)
            runner = chosen(drawn_test)
            runner()

        bridge = inspect.Parameter(_BRIDGE, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        prof = inspect.Parameter(_SETTINGS, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [params[0], bridge, prof, *fixture_params]
        )
        test.__name__ = fn.__name__
        test.__qualname__ = fn.__qualname__
        test.__module__ = fn.__module__
        test.__doc__ = fn.__doc__
        test._dmem_clause = name  # type: ignore[attr-defined]
        test._dmem_requires = needs  # type: ignore[attr-defined]
        marked: SuiteTest = pytest.mark.dmem_clause(name)(test)
        if needs:
            marked = pytest.mark.dmem_requires(*needs)(marked)
        return marked

    return decorate


def _coroutine(result: Coroutine[Any, Any, None] | None) -> Coroutine[Any, Any, None]:
    if result is None:
        raise TypeError("an async suite test returned no coroutine")
    return result


def clause_of(obj: object) -> str | None:
    """The clause a suite test checks, or None for anything else."""
    found = getattr(obj, "_dmem_clause", None)
    return found if isinstance(found, str) else None


def check_capabilities(cls: type, needs: Iterable[str]) -> None:
    """Skip (the only allowed skip) when the suite class declares it lacks a capability."""
    lacks: Mapping[str, str] = getattr(cls, "lacks", {}) or {}
    for cap in needs:
        if cap in lacks:
            pytest.skip(f"{CAPABILITY_SKIP_PREFIX} {cap!r}: {lacks[cap]}")


def xfail(test: SuiteTest, *, reason: str) -> SuiteTest:
    """A copy of suite test ``test`` marked ``xfail(reason=...)``, to assign in a subclass.

    ``test_x = dmem_conformance.xfail(KVSuite.test_x, reason="...")``: the only
    sanctioned way to opt out of a suite test (the guard fails anything else).
    The original function is left untouched, so other subclasses still run it.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("xfail needs a non-empty reason")
    if clause_of(test) is None:
        raise ValueError(f"{test!r} is not a dmem suite test")

    def copy(*args: Any, **kwargs: Any) -> None:
        test(*args, **kwargs)

    copy.__signature__ = inspect.signature(test)  # type: ignore[attr-defined]
    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(copy, attr, getattr(test, attr))
    copy._dmem_clause = clause_of(test)  # type: ignore[attr-defined]
    copy._dmem_requires = getattr(test, "_dmem_requires", ())  # type: ignore[attr-defined]
    # A new list: pytest.mark stores marks on the function object itself.
    copy.pytestmark = list(getattr(test, "pytestmark", []))  # type: ignore[attr-defined]
    marked: SuiteTest = pytest.mark.xfail(reason=reason, strict=False)(copy)
    return marked


def _has_xfail_reason(obj: object) -> bool:
    for mark in getattr(obj, "pytestmark", []) or []:
        if getattr(mark, "name", None) != "xfail":
            continue
        reason = mark.kwargs.get("reason")
        if isinstance(reason, str) and reason.strip():
            return True
    return False


def override_problems(cls: type, suite_tests: Mapping[str, object]) -> list[str]:
    """Suite tests that ``cls`` replaced or deleted without ``xfail(reason=...)``."""
    problems: list[str] = []
    for name, original in sorted(suite_tests.items()):
        current = getattr(cls, name, None)
        if current is original:
            continue
        if current is None:
            problems.append(f"{name} is deleted (set to None); use dmem_conformance.xfail")
        elif not _has_xfail_reason(current):
            problems.append(f"{name} is overridden without pytest.mark.xfail(reason=...)")
    return problems
