"""Enforcing the sessions limit at sign-in: the authentication backend, and the check at ``login()``.

``SessionLimitBackend`` goes first in ``AUTHENTICATION_BACKENDS``. It never signs
anybody in itself; it looks at every ``authenticate(request, ...)`` call and hands it
to the mode's module, which lets it through or refuses it:

- ``local``: the site counts its own sessions under the config headcount pushed (``local``);
- ``central``: headcount decides (``central``).

A login that reached ``login()`` without ``authenticate(request, ...)`` (python-social-auth,
a two-factor view, a site's own code) is decided there instead (``admit_at_login``,
called by ``reporting`` at ``user_logged_in``). How a refusal is raised and what the
user is told is ``refusals``'; the self-service offer a refusal may carry is ``offers``'.

``SessionLimitRefused``, ``SessionLimitWarning``, ``message_for`` and ``offer_for`` are
importable from here as well, the names the README gives to sites.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import sync_to_async

from . import central, conf, local
from .credentials import is_checking
from .refusals import SessionLimitRefused, SessionLimitWarning, message_for, offer_for, undo_login

__all__ = [
    "DECIDED_ATTR",
    "SessionLimitBackend",
    "SessionLimitRefused",
    "SessionLimitWarning",
    "admit_at_login",
    "message_for",
    "offer_for",
]

log = logging.getLogger("headcount_django")

# set on the request when the backend let a sign-in through: login() then needs no second decision
DECIDED_ATTR = "_headcount_decided"


class SessionLimitBackend:
    """Put first in AUTHENTICATION_BACKENDS; never returns a user itself.

    Deliberately not a subclass of django.contrib.auth's BaseBackend: importing that
    needs django.contrib.auth in INSTALLED_APPS, which Lino sites do not have.
    """

    # the agent's own backend: ``credentials.check_credentials`` (its GATE_ATTR) never asks it
    headcount_gate = True

    def authenticate(self, request: Any = None, **credentials: Any) -> None:
        if request is None or is_checking(request):
            return None
        settings = conf.get()
        if not settings.enabled or settings.mode == "off" or getattr(request, "session", None) is None:
            return None
        if _is_social(credentials):
            # python-social-auth: checking "the credentials" would run its pipeline twice; the
            # sign-in is decided when it completes, at login() (``admit_at_login``)
            return None
        if settings.mode == "local":
            local.decide_sign_in(request, credentials)
        else:
            central.decide_sign_in(request, credentials, settings)
        setattr(request, DECIDED_ATTR, True)
        return None

    async def aauthenticate(self, request: Any = None, **credentials: Any) -> None:
        return await sync_to_async(self.authenticate)(request, **credentials)

    def get_user(self, user_id: Any) -> None:
        return None

    async def aget_user(self, user_id: Any) -> None:
        return None


def _is_social(credentials: dict[str, Any]) -> bool:
    return "strategy" in credentials and "backend" in credentials and "response" in credentials


def admit_at_login(request: Any, user: Any) -> bool:
    """At ``user_logged_in``: decide a sign-in that reached login() without the backend deciding it.

    That is a login view which never called ``authenticate(request, ...)`` (python-social-auth,
    a two-factor view logging in after its own step, a site's own code). False: refused,
    and the login has been undone (the session is emptied; the user is told at the next request).
    """
    settings = conf.get()
    if not settings.enabled or settings.mode == "off" or getattr(request, DECIDED_ATTR, False):
        return True
    if central.is_pending(request):
        return True
    setattr(request, DECIDED_ATTR, True)
    counted = False  # the refusal was counted for the administrators already (``refusals.refuse``)
    try:
        if settings.mode == "local":
            message = local.decide_login(request, user, settings)
        else:
            message, counted = central.decide_login(request, user, settings)
    except Exception:
        log.exception("headcount: could not decide a sign-in at login(); admitting it")
        return True
    if message is None:
        return True
    log.info("headcount: a sign-in that did not pass authenticate() was refused at login(): %s", message)
    undo_login(request, message, count=not counted)
    return False
