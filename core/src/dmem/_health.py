"""Health reports, and the URL redaction every report and message goes through."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

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
    """``url`` with any password (userinfo or query parameter) replaced by ``***``.

    Only the secret parts change; the rest of the URL stays byte for byte
    (``urlunsplit`` would turn ``sqlite:///a`` into ``sqlite:/a``).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    redacted = url
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        redacted = redacted.replace(f"{userinfo}@", f"{user}:***@", 1)
    return _SECRET_QUERY.sub(r"\1***", redacted)
