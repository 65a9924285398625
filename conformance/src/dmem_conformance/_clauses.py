"""The clauses of the contract (CONTRACT.md) the suite checks, by stable id.

Every suite test names exactly one clause; the pytest plugin and the runner
report results clause by clause, so a failure says which promise is broken.
"""

from __future__ import annotations

__all__ = [
    "CAPABILITIES",
    "CLAUSES",
    "OPTIONAL_MEMBERS",
    "OPTIONAL_SKIP_PREFIX",
    "V1_1_OPERATIONS",
]

OPTIONAL_SKIP_PREFIX = "dmem: not run, the provider lacks"
"""A clause that checks an optional provider member (docs/plugin-authors.md) skips with
this prefix when the provider does not have it (``SuiteBase.lacks_optional``): reported
as not run, never as passed."""

CLAUSES: dict[str, str] = {
    "keys.exact": "Keys: case-sensitive and byte-exact, any character but NUL (incl. *?[]\\:)",
    "values.roundtrip": "Values: exact round trip in value and type (tuple->list)",
    "values.awkward": "Values: '', b'', '123', -0.0, True, None stay what they are",
    "values.none-is-live": "Values: a stored None is a live key (exists, not default)",
    "values.large": "Values: up to at least 4 MiB encoded",
    "errors.invalid-key": "Errors: bad key -> InvalidKeyError before any I/O",
    "errors.invalid-value": "Errors: bad value -> InvalidValueError before any I/O",
    "errors.invalid-argument": "Errors: bad ttl/tags/flag -> InvalidArgumentError",
    "errors.invalid-pattern": "Errors: malformed glob -> InvalidPatternError",
    "errors.batch-validation": "Batches: one invalid item and nothing is written",
    "errors.any-argument": (
        "Errors: any argument of any type -> a result or InvalidArgumentError, nothing written"
    ),
    "errors.key-not-found": "Errors: ttl()/get_tags() of a missing key -> KeyNotFoundError",
    "ops.return-values": "Operations: set/delete/expire/persist return what the table says",
    "batch.get-many": "get_many: the live keys only, duplicates allowed",
    "batch.set-many": "set_many: returns keys written; replaces value, tags, expiry",
    "batch.delete-many": "delete_many: distinct live keys removed",
    "batch.refused": (
        "A value over the provider's max_value_bytes -> InvalidValueError; "
        "with atomic_batches a batch holding one writes nothing"
    ),
    "nx.semantics": "if_not_exists: writes only if not live; False changes nothing",
    "nx.ttl": "if_not_exists with ttl: both apply atomically",
    "nx.concurrent-tasks": "if_not_exists: exactly one winner among concurrent tasks",
    "nx.connections": "if_not_exists: exactly one winner across independent connections",
    "nx.batch-tasks": "set_many(if_not_exists): each key won exactly once among concurrent tasks",
    "nx.batch-connections": (
        "set_many(if_not_exists): each key won exactly once across independent connections"
    ),
    "counter.exact": "incr (v1.1): 8 connections x 500 increments = exactly 4,000",
    "counter.semantics": (
        "incr (v1.1): starts at 0, ttl only on create, keeps expiry and tags; "
        "non-int or 64-bit overflow -> InvalidValueError, unchanged"
    ),
    "cas.semantics": (
        "compare_and_set/delete (v1.1): act only on equal encoded bytes of a live key"
    ),
    "cas.contenders": "compare_and_set/delete (v1.1): exactly one winner among contenders",
    "get-or-set.single-flight": (
        "get_or_set (v1.1): one factory call for concurrent callers, errors to all, "
        "nothing stored on error; lock=True across connections"
    ),
    "lock.exclusive": (
        "Store.lock (v1.1): one holder at a time across connections; only the owner "
        "releases or extends; a lost lock is reported"
    ),
    "ttl.expiry": "TTL: live for at least t-10ms, gone after t+50ms",
    "ttl.absent-everywhere": "TTL: an expired key is absent for every call",
    "ttl.remaining": "ttl(): seconds left (ms resolution, rounded up), None without expiry",
    "ttl.never-zero": "ttl() and the provider's get_entry never say 0 left for a live key",
    "ttl.expire": "expire(): sets a new expiry on a live key only",
    "ttl.persist": "persist(): removes the expiry of a live key only",
    "ttl.set-replaces": "set: replaces the expiry (no ttl means none)",
    "tags.replace": "Tags: set replaces a key's tags; no tags means none",
    "tags.delete": "Tags: delete drops them; find_by_tag never returns a deleted key",
    "tags.expiry": "Tags: expiry drops them",
    "tags.delete-by-tag": (
        "delete_by_tag (v1.1): removes the live keys with that tag, counts them, "
        "not expired, retagged or other namespaces' keys"
    ),
    "tags.values": "Tags: names and values with ':' and any character, never confused",
    "patterns.match": "Patterns: keys/count/scan equal the core matcher on the data",
    "patterns.unicode": "Patterns: '?' is one code point, also on non-ASCII keys",
    "patterns.escapes": "Patterns: classes, ranges, negation and backslash escapes",
    "namespaces.isolation": "Namespaces: keys, counts, tags and clear never cross",
    "namespaces.prefix": "Namespaces: 'a' and 'ab' (and separator look-alikes) never leak",
    "namespaces.rule": (
        "Namespaces: any str without NUL or lone surrogates, up to 1 KiB; others -> "
        "InvalidArgumentError at open"
    ),
    "namespaces.bookkeeping": "Namespaces: the provider's bookkeeping never shows in listings",
    "scan.once": "scan/keys: each stable live key exactly once, no duplicates",
    "listing.pages": (
        "scan/keys/count/find_by_tag/delete_many/clear over 2,500 keys: each exactly once"
    ),
    "scan.memory": "scan: streams in constant memory",
    "scan.early-exit": "scan: leaving the iteration early leaves the store usable",
    "storage.bounded": (
        "Storage: after churn of tagged keys with short ttls, footprint() returns to "
        "its baseline once purged"
    ),
    "clear.namespace": "clear(): removes this namespace's live keys and returns how many",
    "invalidation.delivery": (
        "open_invalidation (optional): a write through another connection reaches the "
        "listener, on the loop's thread, within the channel's bound"
    ),
    "concurrency.tasks": "Lifecycle: a store is safe for many concurrent tasks on one loop",
    "health.report": "health(): a HealthStatus, never raises",
    "health.secrets": "Errors/health: no secret in any repr, report or message",
    "lifecycle.idempotent": "Lifecycle: initialize()/aclose() idempotent, async with works",
    "lifecycle.closed": "Lifecycle: calls after aclose() raise NotInitializedError",
    "errors.unavailable": "Errors: unreachable backend -> ProviderUnavailableError, no hang",
    "model.state-machine": "Everything together: random call sequences agree with a dict model",
    "suite.guard": "Suite: tests are not overridden or deleted without xfail(reason=...)",
}

V1_1_OPERATIONS = ("incr", "compare_and_set", "compare_and_delete", "delete_by_tag")
"""The provider operations contract v1.1 adds; optional, each with its clauses."""

OPTIONAL_MEMBERS = frozenset({"footprint", "max_value_bytes", *V1_1_OPERATIONS})
"""Every optional provider member a clause checks: what ``requires_members`` may list,
and what the project's own backends all have. Not ``open_invalidation``
(``invalidation.delivery``): a backend may have no channel in some configurations
(``sqlite://`` in memory), so its clause reports "not run" there."""

CAPABILITIES: dict[str, str] = {
    "shared_connections": (
        "store_factory calls give stores on the same data (two stores on one namespace "
        "see each other's writes), some of them on independent connections"
    ),
    "unreachable": (
        "the suite can open a store on a backend that is down (fixture unreachable_store_factory)"
    ),
}
