"""The site's signed-in sessions counted by headcount's rule, from its own ``django_session``.

What local mode decides with (``local``), what a self-service offer in local mode
checks, and what the administrators' warning (``adminstatus``) reports. A session
counts when it is signed in and not expired; with ``count_mode: live`` a dangling one
(``rules.is_dangling``) does not; an exempt account's never does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from . import rules
from .config import SiteConfig
from .roles import exempt_user_ids
from .sessions import LocalSession, authenticated_sessions, now


@dataclass
class LocalCount:
    """What the local rule sees: counted sessions, the dangling ones, the user's counted ones."""

    counted: int = 0
    dangling: list[tuple[dt.datetime, str]] = field(default_factory=list)  # (last activity, key), most idle first
    own: list[LocalSession] = field(default_factory=list)  # the user's sessions, counted or not
    own_counted: list[tuple[dt.datetime, str]] = field(default_factory=list)  # most idle first
    replacing: int = 0  # counted sessions among those to replace


def count_sessions(
    config: SiteConfig, exclude_key: str | None, user_id: str | None = None, replace_keys: frozenset[str] = frozenset()
) -> LocalCount:
    """Count the site's signed-in sessions by headcount's rule (see ``rules``).

    ``exclude_key``: the session of the sign-in being decided (it is not one of the
    others); ``user_id``: whose own sessions to collect; ``replace_keys``: sessions the
    sign-in asks to end, never offered for eviction.
    """
    current = now()
    result = LocalCount()
    sessions = list(authenticated_sessions(exclude_key=exclude_key))
    exempt = exempt_user_ids(config, {session.user_id for session in sessions})
    for session in sessions:
        if session.user_id in exempt:
            continue  # an exempt account's session takes no place, and is never evicted or replaced
        last = session.last_activity(current)
        dangling = rules.is_dangling(last, session.expire_date, current, config.idle_timeout_seconds)
        counts = not (config.count_mode == "live" and dangling)
        if dangling and counts and session.key not in replace_keys:
            result.dangling.append((last, session.key))
        if user_id is not None and session.user_id == user_id:
            result.own.append(session)
            if counts:
                result.own_counted.append((last, session.key))
        if counts:
            result.counted += 1
            if session.key in replace_keys:
                result.replacing += 1
    result.dangling.sort()
    result.own_counted.sort()
    return result
