"""Optional: make plain Django sites record activity the way Lino does.

Django saves a session only when it changed (or on every request with
``SESSION_SAVE_EVERY_REQUEST``), so a signed-in user who only reads pages never
causes a save, and headcount would see the session go idle. This middleware marks
the session of a signed-in user at most once per ``ACTIVITY_INTERVAL``; Django then
saves it, which slides its expiry and is reported as ``session.activity``. Lino
sites do not need it: Lino records activity in the session by itself.

Place it after ``AuthenticationMiddleware``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.urls import NoReverseMatch, reverse

from . import conf
from .adminstatus import warning_for
from .notices import deliver

log = logging.getLogger("headcount_django")

SEEN_KEY = "_headcount_seen"


class ActivityMiddleware:
    def __init__(self, get_response: Callable[[Any], Any]):
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        try:
            self.mark(request)
        except Exception:
            log.exception("headcount: could not record activity")
        return response

    def mark(self, request: Any) -> None:
        settings = conf.get()
        session = getattr(request, "session", None)
        user = getattr(request, "user", None)
        if not settings.enabled or session is None or user is None or not user.is_authenticated:
            return
        if not session.session_key:
            return  # signed out during this request
        current = int(time.time())
        last = session.get(SEEN_KEY)
        if not isinstance(last, int) or current - last >= settings.activity_interval:
            session[SEEN_KEY] = current


class NoticeMiddleware:
    """Tell a user at their next request why their session ended (killed, evicted, replaced).

    Place it after ``SessionMiddleware``, ``AuthenticationMiddleware`` and (when the
    site uses it) ``MessageMiddleware``; see ``notices``.
    """

    def __init__(self, get_response: Callable[[Any], Any]):
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        try:
            if conf.get().enabled:
                deliver(request)
                self.warn_admins(request)
        except Exception:
            log.exception("headcount: could not look for a notice")
        return self.get_response(request)

    def warn_admins(self, request: Any) -> None:
        """On the pages of Django's admin, a banner for site administrators (``adminstatus``)."""
        if not hasattr(request, "_messages") or not request.path.startswith(_admin_prefix()):
            return
        text = warning_for(getattr(request, "user", None))
        if text:
            messages.warning(request, text)


def _admin_prefix() -> str:
    try:
        return reverse("admin:index")
    except NoReverseMatch:
        return "\0"  # no admin: no path starts with it
