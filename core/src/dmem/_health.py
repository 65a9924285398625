"""Health reports, and the URL redaction every report and message goes through."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = ["HealthStatus", "redact_url"]

Status = Literal["healthy", "degraded", "unhealthy"]


@dataclass(frozen=True)
class HealthStatus:
    """What ``health()`` returns. It never carries a secret (see :func:`redact_url`)."""

    status: Status
    provider: str
    message: str = ""
    latency_ms: float | None = None
    details: Mapping[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "healthy"

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "provider": self.provider,
            "message": self.message,
            "latency_ms": self.latency_ms,
            "details": dict(self.details),
        }


_SECRET_QUERY = re.compile(r"(?i)((?:password|passwd|pwd|token|secret|api_key|apikey)=)[^&]*")


def redact_url(url: str) -> str:
    """``url`` with any password (userinfo or query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}" if ":" in userinfo else f"{user}@{hostinfo}"
        if not user and ":" in userinfo:
            netloc = f":***@{hostinfo}"
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
