"""Full snapshots: tell headcount every signed-in session the site has, so it converges."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from . import client, conf, shared
from .sessions import authenticated_sessions, now, rfc3339, user_refs

log = logging.getLogger("headcount_django")


def build() -> dict[str, Any]:
    settings = conf.get()
    current = now()
    local = list(authenticated_sessions())
    users = user_refs(s.user_id for s in local)
    sessions = []
    for session in local:
        row: dict[str, Any] = {
            "session": settings.session_ref(session.key),
            "last_activity_at": rfc3339(session.last_activity(current)),
            "expires_at": rfc3339(session.expire_date),
        }
        started = session.started_at()
        if started is not None:
            row["started_at"] = rfc3339(min(started, session.last_activity(current)))
        user = users.get(session.user_id)
        if user is not None:
            row["user"] = user
        sessions.append(row)
    # A login in progress has told headcount about its session before its row holds the
    # user; as_of a little in the past keeps such a session from being reconciled away.
    as_of = current - dt.timedelta(seconds=settings.snapshot_grace)
    return {"as_of": rfc3339(as_of), "sessions": sessions}


def round_lock() -> bool:
    """Take this round's periodic snapshot lock in the shared cache; False when another process has it.

    Only periodic rounds take it, so that workers of one running site do not send the
    same round twice. Start-up and recovery snapshots never look at it: a lock left by
    processes that ran before this one must not keep a restarted site from converging.
    """
    settings = conf.get()
    lock_timeout = max(1, int(settings.snapshot_interval * 0.9))
    return bool(shared.add(f"headcount:{settings.site}:snapshot-lock", 1, lock_timeout))


def send(periodic: bool = False) -> dict[str, Any] | None:
    """Send a snapshot; returns headcount's answer (None when another worker has this round)."""
    settings = conf.get()
    if periodic and settings.snapshot_interval and not round_lock():
        return None
    body = build()
    response = client.put_sessions(body)
    log.info("headcount: snapshot of %d sessions sent", len(body["sessions"]))
    return response.body if isinstance(response.body, dict) else {}
