"""Health reports, and the URL redaction every report and message goes through."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["SECRET_OPTION_NAMES", "HealthStatus", "redact_url"]

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


SECRET_OPTION_NAMES = r"password|passwd|pwd|token|secret|api_?key"
"""The option names whose values are secrets (a regex alternation, matched without case)."""
# A secret option's value runs to the end of the URL: an unencoded '&' inside a token would
# otherwise start what looks like another option, and show the rest of the token.
_SECRET_QUERY = re.compile(rf"(?is)(?:{SECRET_OPTION_NAMES})=(.*)")


def redact_url(url: str) -> str:
    """``url`` with any password (userinfo or query parameter) replaced by ``***``.

    Only the secret parts change; the rest of the URL stays byte for byte
    (``urlunsplit`` would turn ``sqlite:///a`` into ``sqlite:/a``).

    The parts are found on the raw text, not through ``urlsplit``: a password may hold an
    unencoded ``?``, ``#``, ``/`` or ``@`` (which ``urlsplit`` takes for the start of the
    query, fragment or path, or the end of the user part) or a tab or newline (which it
    deletes), and must be hidden all the same. So the user part runs from ``://`` to the
    last ``@`` when it holds a ``:``, a secret query value runs to the end of the URL (an
    unencoded ``&`` may be part of it), and where the two overlap (an ``@`` inside a
    token) their union is hidden: more than the secret at worst, never less.
    """
    spans = [match.span(1) for match in _SECRET_QUERY.finditer(url)]
    scheme, sep, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        start = len(scheme) + len(sep)
        user = userinfo.split(":", 1)[0]
        # A user name holds no '/', '?' or '#': then that ':' was not its end; hide it all.
        shown_user = 0 if any(c in user for c in "/?#") else len(user) + 1
        spans.append((start + shown_user, start + len(userinfo)))
    if not spans:
        return url
    out: list[str] = []
    end = 0
    for lo, hi in sorted(spans):
        if lo > end:
            out.append(url[end:lo])
            out.append("***")
        elif out:
            pass  # overlaps the span before: already hidden
        else:
            out.append("***")
        end = max(end, hi)
    out.append(url[end:])
    return "".join(out)
