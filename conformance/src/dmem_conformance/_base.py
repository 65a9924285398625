"""Fixtures every suite class shares: the event loop bridge, the profile, fresh stores.

Backends supply ``store_factory`` (see :mod:`._factory`); the suite derives
``store`` (an empty, initialized store in a unique namespace), ``dmem_stores``
(more stores on the same backend, for the multi-connection and namespace
clauses), and cleans every namespace it used at teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, NoReturn

import dmem
import pytest
from hypothesis import settings

from ._bridge import LoopBridge
from ._clauses import CAPABILITIES
from ._factory import StoreFactory
from ._marks import OPTIONAL_SKIP_PREFIX, clause_of, override_problems
from ._profiles import profile_settings, selected_profile

__all__ = ["StorePool", "SuiteBase"]

GUARD_TEST = "test_suite_tests_not_overridden"


class StorePool:
    """Stores a test opened through the backend's factory; all cleared and closed at teardown."""

    def __init__(self, factory: StoreFactory, middleware: Sequence[Any], namespace: str) -> None:
        self.factory = factory
        self.middleware = tuple(middleware)
        self.namespace = namespace
        self._opened: list[dmem.Store] = []

    async def open(
        self, suffix: str = "", *, middleware: Sequence[Any] | None = None
    ) -> dmem.Store:
        """A new store (connection) on namespace ``self.namespace + suffix``."""
        chosen = self.middleware if middleware is None else tuple(middleware)
        store = await self.factory(self.namespace + suffix, middleware=chosen)
        if not isinstance(store, dmem.Store):
            raise TypeError(f"store_factory returned {type(store).__name__}, not a dmem.Store")
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        """Empty every namespace the test used (so servers are left clean), close everything.

        A namespace whose every store the test closed itself (``lifecycle.closed`` writes,
        then closes) is emptied through a fresh store from the factory.
        """
        cleaned: set[str] = set()
        first_error: BaseException | None = None
        for store in self._opened:
            try:
                if store.namespace not in cleaned:
                    await store.clear()
                    cleaned.add(store.namespace)
            except dmem.NotInitializedError:
                pass  # the test closed it on purpose: emptied below if no other store can
            except Exception as exc:  # noqa: BLE001 - close the others, then report it
                cleaned.add(store.namespace)
                first_error = first_error or exc
            try:
                await store.aclose()
            except Exception as exc:  # noqa: BLE001
                first_error = first_error or exc
        for namespace in dict.fromkeys(store.namespace for store in self._opened):
            if namespace in cleaned:
                continue
            try:
                fresh = await self.factory(namespace, middleware=self.middleware)
                try:
                    await fresh.clear()
                finally:
                    await fresh.aclose()
            except Exception as exc:  # noqa: BLE001
                first_error = first_error or exc
        self._opened.clear()
        if first_error is not None:
            raise first_error


def _suite_tests(cls: type) -> dict[str, object]:
    """Suite tests as defined by the dmem suite classes in ``cls``'s bases."""
    found: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if (
            not getattr(klass, "_dmem_suite_class", False)
            or klass.__dict__.get("_dmem_suite_class") is not True
        ):
            continue
        for name, value in vars(klass).items():
            if name.startswith("test") and clause_of(value) is not None:
                found[name] = value
    return found


class SuiteBase:
    """Shared fixtures. Subclass a suite (``KVSuite``), not this."""

    _dmem_suite_class: ClassVar[bool] = True

    lacks: ClassVar[Mapping[str, str]] = {}
    """Capabilities this backend lacks, ``{name: why}``; only their tests may skip."""

    requires_members: ClassVar[frozenset[str]] = frozenset()
    """Optional provider members (``footprint``, ``max_value_bytes``) this backend must
    have: their clauses fail, instead of reporting "not run", when the provider lacks one.
    The project's own backends list them all."""

    def lacks_optional(self, member: str, why: str) -> NoReturn:
        """End a clause that needs optional provider member ``member``: not run, or failed
        when the suite class lists the member in ``requires_members``."""
        if member in type(self).requires_members:
            pytest.fail(f"the provider must have {member} (requires_members): {why}")
        pytest.skip(f"{OPTIONAL_SKIP_PREFIX} {member}: {why}")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_dmem_suite_class") is True:
            return
        unknown = sorted(set(cls.lacks) - set(CAPABILITIES))
        if unknown:
            raise TypeError(
                f"{cls.__name__}.lacks names unknown capabilities {unknown}; "
                f"known: {sorted(CAPABILITIES)}"
            )
        for name, why in cls.lacks.items():
            if not isinstance(why, str) or not why.strip():
                raise TypeError(f"{cls.__name__}.lacks[{name!r}] needs a reason")
        if GUARD_TEST in _suite_tests(cls) and GUARD_TEST in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override {GUARD_TEST}")

    @classmethod
    def dmem_override_problems(cls) -> list[str]:
        """What the guard test reports: suite tests replaced without xfail(reason=...)."""
        return override_problems(cls, _suite_tests(cls))

    # --- fixtures ---------------------------------------------------------------------------
    @pytest.fixture
    def middleware(self) -> Sequence[Any]:
        """The middleware chain every suite store gets; override with params to run chains."""
        return ()

    @pytest.fixture
    def unreachable_store_factory(self) -> StoreFactory | None:
        """Override to return a factory whose stores point at a backend that is down."""
        return None

    @pytest.fixture
    def dmem_bridge(self) -> Iterator[LoopBridge]:
        with LoopBridge() as bridge:
            yield bridge

    @pytest.fixture
    def dmem_profile(self, request: pytest.FixtureRequest) -> str:
        """The Hypothesis profile name: --dmem-profile, DMEM_HYPOTHESIS_PROFILE, or ci."""
        try:
            option = request.config.getoption("dmem_profile")
        except ValueError:  # the pytest plugin is not loaded
            option = None
        return selected_profile(option)

    @pytest.fixture
    def dmem_settings(self, dmem_profile: str) -> settings:
        return profile_settings(dmem_profile)

    @pytest.fixture
    def dmem_namespace(self) -> str:
        return f"dmemc-{uuid.uuid4().hex[:16]}"

    @pytest.fixture
    def dmem_stores(
        self,
        dmem_bridge: LoopBridge,
        store_factory: StoreFactory,
        middleware: Sequence[Any],
        dmem_namespace: str,
    ) -> Iterator[StorePool]:
        pool = StorePool(store_factory, middleware, dmem_namespace)
        try:
            yield pool
        finally:
            dmem_bridge.run(pool.close_all())

    @pytest.fixture
    def store(self, dmem_bridge: LoopBridge, dmem_stores: StorePool) -> dmem.Store:
        """An initialized, EMPTY store in a namespace of its own."""
        created = dmem_bridge.run(dmem_stores.open())
        leftover = dmem_bridge.run(created.count())
        if leftover:
            pytest.fail(
                f"store_factory must give an empty store in a fresh namespace; "
                f"{created.namespace!r} already holds {leftover} key(s)"
            )
        return created

    @pytest.fixture
    def dmem_secrets(self, store_factory: StoreFactory) -> tuple[str, ...]:
        found = getattr(store_factory, "secrets", ())
        return tuple(found) if isinstance(found, (tuple, list)) else ()
