"""What the site's administrators are warned of in the site itself.

Two numbers, with a warning when either calls for one:

- the sessions counted now by headcount's rule (the site's own ``django_session``
  under the config held), against the limit: from 80 % on;
- the sign-ins the limit refused in the last 24 hours (counted by the agent in
  hourly buckets of the shared cache, whichever worker refused): from 1 on.

Django: ``NoticeMiddleware`` adds it to the messages of the admin's pages for
users with the ``admin`` role (a banner at the top of each page). Lino: it
comes with the answer to a site administrator's sign-in (an alert).
Each warning ends with where to look: Lino's table of user sessions (in a Lino
site) and the site's page in headcount's dashboard (``STATUS_URL``).
The numbers are computed at most once a minute per process for Django's admin
pages, and afresh for each sign-in of a Lino site administrator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext, ngettext

from . import conf, shared
from .config import current
from .counting import count_sessions
from .roles import roles_of

UTILIZATION_WARNING = 0.8
HOUR = 3600
STATUS_EVERY = 60.0

_cached: tuple[float, str, Status | None] = (0.0, "", None)


@dataclass(frozen=True)
class Status:
    counted: int | None
    limit: int | None
    refused_24h: int

    @property
    def utilization(self) -> float | None:
        if self.counted is None or not self.limit:
            return None
        return self.counted / self.limit

    def warning(self) -> str | None:
        """The text for administrators, or None when nothing calls for one."""
        parts = []
        share = self.utilization
        if share is not None and share >= UTILIZATION_WARNING:
            parts.append(
                gettext("%(counted)d of %(limit)d user sessions are in use (%(percent)d %%).")
                % {"counted": self.counted, "limit": self.limit, "percent": round(share * 100)}
            )
        if self.refused_24h:
            parts.append(
                ngettext(
                    "%(refused)d sign-in was refused by the sessions limit in the last 24 hours.",
                    "%(refused)d sign-ins were refused by the sessions limit in the last 24 hours.",
                    self.refused_24h,
                )
                % {"refused": self.refused_24h}
            )
        return " ".join(parts) or None


def _bucket_key(hour: int) -> str:
    return f"headcount:{conf.get().site}:refused:{hour}"


def note_refusal() -> None:
    """Count one sign-in the limit refused (any mode; in the hour's bucket)."""
    try:
        shared.incr(_bucket_key(int(time.time() // HOUR)), 25 * HOUR)
    except Exception:  # counting must never fail a sign-in
        pass
    reset()


def reset() -> None:
    """Forget the numbers computed last (after a refusal; tests)."""
    global _cached
    _cached = (0.0, "", None)


def refused_last_24h() -> int:
    hour = int(time.time() // HOUR)
    total = 0
    # the current hour and the 23 before it
    for bucket in range(hour - 23, hour + 1):
        value = shared.get(_bucket_key(bucket))
        if isinstance(value, int):
            total += value
    return total


def status(fresh: bool = False, own_key: str | None = None) -> Status:
    """The numbers; ``own_key``: the session of a sign-in in progress, counted whether or not
    its row has been saved yet (Lino saves it when the sign-in's answer is sent)."""
    global _cached
    taken, site, cached = _cached
    if not fresh and cached is not None and site == conf.get().site and time.monotonic() - taken < STATUS_EVERY:
        return cached
    config = current()
    counted = limit = None
    if config is not None:
        counted = count_sessions(config, own_key).counted + (1 if own_key else 0)
        limit = config.session_limit
    result = Status(counted, limit, refused_last_24h())
    _cached = (time.monotonic(), conf.get().site, result)
    return result


def where_to_look() -> str:
    """The sentence that tells administrators where the details are (empty: nowhere known)."""
    places = []
    if conf.is_lino_site():
        # Lino's own table of the site's sessions (lino.modlib.users.Sessions, site administrators only)
        places.append(gettext("the signed-in sessions in the menu Site → User sessions"))
    url = conf.get().status_url
    if url:
        places.append(gettext("the sessions and refused sign-ins on the site's page in headcount, %(url)s") % {"url": url})
    if not places:
        return ""
    return gettext("Where to look: %(places)s.") % {"places": "; ".join(places)}


def warning_for(user: Any, fresh: bool = False, own_key: str | None = None) -> str | None:
    """The warning for this user when they administer the site, else None (``fresh``: numbers of
    now; ``own_key``: the session this user has just signed in with, see ``status``)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    roles = roles_of(user)
    if "admin" not in roles:
        return None
    config = current()
    if own_key and config is not None and config.is_exempt(roles):
        own_key = None  # an exempt account's session takes no place
    text = status(fresh=fresh, own_key=own_key).warning()
    if not text:
        return None
    where = where_to_look()
    return f"{text} {where}" if where else text
