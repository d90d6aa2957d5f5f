"""Telling a user why their session ended, at their next request.

When the agent deletes a signed-in session because it was killed (an administrator,
a ``session.kill`` push), evicted (a dangling session made room) or replaced (the
user signed in elsewhere), it notes the reason and the time in the shared cache
under the session's id, that is its keyed hash: the raw session key is not kept.
The browser still sends the old session cookie with its next request; the
middleware finds that the session is gone, hashes the cookie's key, finds the
note and tells the user ("You were signed out at 14:03 by an administrator."),
through Django's messages framework when the site has it, and as
``notice_for(request)`` for any view. A note is shown once.

A sign-in refused at ``login()`` (``enforcement.admit_at_login``) is told the same way.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings as django_settings
from django.utils import formats, timezone
from django.utils.translation import gettext

from . import conf, shared
from .sessions import parse_rfc3339, rfc3339

log = logging.getLogger("headcount_django")

SESSION_KEY = "_headcount_notice"
NOTICE_ATTR = "headcount_notice"
# the longest a note waits for its browser: a session cookie lives SESSION_COOKIE_AGE at most
MAX_KEEP = 30 * 24 * 3600

TEXTS = {
    "killed": "You were signed out at {time} by an administrator.",
    "evicted": "You were signed out at {time}: your session had been unused for a long time and its place was needed.",
    "replaced": "You were signed out at {time} because you signed in elsewhere.",
}


def _key(ref: str) -> str:
    return f"headcount:{conf.get().site}:ended:{ref}"


def remember_end(ref: str, reason: str, at: dt.datetime) -> None:
    """Note why a session ended, under its hashed id, for its browser's next request."""
    if reason not in TEXTS:
        return
    keep = min(int(getattr(django_settings, "SESSION_COOKIE_AGE", MAX_KEEP)), MAX_KEEP)
    shared.set(_key(ref), {"reason": reason, "at": rfc3339(at)}, keep)


def remember_refusal(request: Any, message: str) -> None:
    session = getattr(request, "session", None)
    if session is not None:
        session[SESSION_KEY] = message


def text(reason: str, at: dt.datetime | None) -> str:
    when = _format(at) if at is not None else gettext("an unknown time")
    return gettext(TEXTS[reason]).format(time=when)


def _format(at: dt.datetime) -> str:
    local = timezone.localtime(at, timezone.get_default_timezone())
    if not getattr(django_settings, "USE_TZ", False):
        local = timezone.make_naive(local, timezone.get_default_timezone())
    return formats.date_format(local, "DATETIME_FORMAT")


def take(request: Any, stored_too: bool = True) -> str | None:
    """The notice for this request, if any (each is given once)."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    cookie = request.COOKIES.get(getattr(django_settings, "SESSION_COOKIE_NAME", "sessionid"))
    stored = session.get(SESSION_KEY)  # loads the session: a vanished one loses its key here
    if stored and stored_too:
        del session[SESSION_KEY]
        return str(stored)
    if not cookie or session.session_key is not None:
        return None
    ref = conf.get().session_ref(cookie)
    note = shared.get(_key(ref))
    if not isinstance(note, dict) or note.get("reason") not in TEXTS:
        return None
    shared.delete(_key(ref))
    noted_at = note.get("at")
    at = parse_rfc3339(noted_at) if isinstance(noted_at, str) else None
    return text(note["reason"], at)


def notice_for(request: Any) -> str | None:
    """What the user was told at this request about their ended session or refused sign-in."""
    return getattr(request, NOTICE_ATTR, None)


def deliver(request: Any) -> str | None:
    """Find the notice for this request and pass it on (Django's messages, ``notice_for``)."""
    lino = _keeps_for_lino()
    notice = take(request, stored_too=not lino)
    if not notice:
        return None
    setattr(request, NOTICE_ATTR, notice)
    if lino:
        # Lino's front end shows it as an alert with the answer to the sign-in (``lino_support``)
        remember_refusal(request, notice)
    elif hasattr(request, "_messages"):
        from django.contrib import messages

        messages.warning(request, notice)
    return notice


def pop_stored(request: Any) -> str | None:
    session = getattr(request, "session", None)
    if session is None:
        return None
    return session.pop(SESSION_KEY, None)


def _keeps_for_lino() -> bool:
    return conf.is_lino_site()
