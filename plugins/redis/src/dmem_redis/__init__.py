"""dmem-redis: the dmem key-value contract on Redis (standalone, TLS, Sentinel, Cluster).

Installed, it registers the URL schemes ``redis``, ``rediss``, ``unix``,
``redis+sentinel``, ``rediss+sentinel``, ``redis+cluster`` and ``rediss+cluster``::

    kv = await dmem.open("redis://localhost:6379/0", namespace="app")

See docs/backends/redis.md for the options, the key layout and what is atomic where.
"""

from __future__ import annotations

from ._config import SCHEMES, RedisConfig, parse_config
from ._provider import RedisProvider
from .plugin import create_redis_provider

__all__ = ["SCHEMES", "RedisConfig", "RedisProvider", "create_redis_provider", "parse_config"]
