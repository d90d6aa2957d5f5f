"""What the agent tells headcount about a session: the event types and the client's details.

Pure values and functions of the request; queueing and delivery are ``sender``'s.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from . import conf

STARTED = "session.started"
ACTIVITY = "session.activity"
ENDED = "session.ended"
REFUSED = "session.refused"


def client_info(settings: conf.AgentSettings, request: Any) -> dict[str, Any]:
    """The user agent and address of the request, as far as ``REPORT_USER_AGENT`` and ``REPORT_IP`` allow."""
    meta = getattr(request, "META", {}) or {}
    info: dict[str, Any] = {}
    if settings.report_user_agent:
        agent = printable(meta.get("HTTP_USER_AGENT"), 1024)
        if agent:
            info["user_agent"] = agent
    if settings.report_ip:
        raw = meta.get(settings.ip_meta_key)
        if raw:
            # a forwarded-for header lists the client first; headcount takes only an address
            candidate = str(raw).split(",")[0].strip()
            try:
                info["ip"] = str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return info


def printable(value: Any, limit: int) -> str | None:
    """Text without control characters, cut to the length headcount accepts."""
    if value is None:
        return None
    text = "".join(ch for ch in str(value) if ch.isprintable())
    return text[:limit] or None
