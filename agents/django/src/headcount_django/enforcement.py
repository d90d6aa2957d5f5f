"""Enforcing the sessions limit at login.

``SessionLimitBackend`` goes first in ``AUTHENTICATION_BACKENDS``. It never signs
anybody in itself; it looks at every ``authenticate(request, ...)`` call, and when
the site is full it checks the credentials with the other backends (so a wrong
password still reads as a wrong password) and stops the login:

- ``local``: counts the site's signed-in sessions in ``django_session`` under the
  config headcount pushed (limit, count mode, what happens at the limit);
- ``central``: asks headcount (``POST /admissions``) with the id of the session the
  login is about to create; when headcount cannot be reached, ``CENTRAL_UNREACHABLE``
  decides between ``admit`` and ``refuse``.

A refusal raises ``PermissionDenied`` (Django's ``authenticate()`` then returns
``None``; ``headcount_django.forms.AuthenticationForm`` shows the message) or, in a
Lino site, ``Warning``, which Lino shows to the user as it shows its own limit
message.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import sys
from typing import Any

from django.conf import settings as django_settings
from asgiref.sync import sync_to_async
from django.contrib.auth import get_backends
from django.core.exceptions import PermissionDenied

from . import client, conf, sender
from .config import DEFAULT_MESSAGE, SiteConfig, current, pull_if_missing
from .reporting import client_info, end_reason, suppress_created
from .sessions import authenticated_sessions, delete_keys, now, rfc3339, store_class, user_reference

log = logging.getLogger("headcount_django")

REFUSED = "session.refused"
REFUSAL_ATTR = "headcount_refusal"
PENDING_ATTR = "_headcount_admitted_key"


class SessionLimitRefused(PermissionDenied):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _is_lino() -> bool:
    return "lino" in sys.modules and hasattr(django_settings, "SITE")


def refuse(request: Any, message: str) -> None:
    if request is not None:
        setattr(request, REFUSAL_ATTR, message)
    settings = conf.get()
    if settings.refusal == "warning" or (settings.refusal == "auto" and _is_lino()):
        raise Warning(message)
    raise SessionLimitRefused(message)


# -- local rule ----------------------------------------------------------------------------


def count_sessions(config: SiteConfig, exclude_key: str | None) -> tuple[int, list[tuple[dt.datetime, str]]]:
    """Counted signed-in sessions, and the dangling ones (last activity, key), most idle first."""
    current = now()
    idle_limit = current - dt.timedelta(seconds=config.idle_timeout_seconds)
    counted = 0
    dangling = []
    for session in authenticated_sessions(exclude_key=exclude_key):
        is_dangling = session.last_activity(current) <= idle_limit
        if is_dangling:
            dangling.append((session.last_activity(current), session.key))
        if config.count_mode == "live" and is_dangling:
            continue
        counted += 1
    dangling.sort()
    return counted, dangling


def local_admission(config: SiteConfig, exclude_key: str | None) -> bool:
    """True when one more session may start (evicting a dangling one if the plan says so)."""
    counted, dangling = count_sessions(config, exclude_key)
    if counted < config.admission_ceiling:
        return True
    if config.over_limit == "evict_dangling" and config.count_mode == "active" and dangling:
        _, key = dangling[0]
        with end_reason("evicted"):
            delete_keys([key])
        log.info("headcount: evicted the most idle dangling session to admit a login")
        return True
    return False


def limit_message(config: SiteConfig) -> str:
    """The text a refused user sees: the site's ``limit_message``, or Lino's own words.

    With headcount's default message in a Lino site this is exactly what Lino's own
    check says, in the language of the request.
    """
    if config.limit_message == DEFAULT_MESSAGE and _is_lino():
        try:
            from django.utils.translation import gettext

            text = gettext("There are more than {} active user sessions.") + " " + gettext("Please try again later.")
            return text.format(config.session_limit)
        except Exception:
            pass
    return config.message()


def report_refusal(user: Any) -> None:
    """Tell headcount about a refusal the site made itself (local mode), so it counts as a denial."""
    settings = conf.get()
    reference = user_reference(user, settings) if user is not None else None
    sender.enqueue(sender.make_event(REFUSED, None, user=reference))


# -- the backend ---------------------------------------------------------------------------


class SessionLimitBackend:
    """Put first in AUTHENTICATION_BACKENDS; never returns a user itself.

    Deliberately not a subclass of django.contrib.auth's BaseBackend: importing that
    needs django.contrib.auth in INSTALLED_APPS, which Lino sites do not have.
    """

    def authenticate(self, request: Any = None, **credentials: Any) -> None:
        if request is None or getattr(request, "_headcount_checking", False):
            return None
        settings = conf.get()
        if not settings.enabled or settings.mode == "off" or getattr(request, "session", None) is None:
            return None
        if settings.mode == "local":
            self._local(request, credentials)
        else:
            self._central(request, credentials, settings)
        return None

    async def aauthenticate(self, request: Any = None, **credentials: Any) -> None:
        return await sync_to_async(self.authenticate)(request, **credentials)

    def get_user(self, user_id: Any) -> None:
        return None

    async def aget_user(self, user_id: Any) -> None:
        return None

    def _local(self, request: Any, credentials: dict[str, Any]) -> None:
        config = pull_if_missing()
        if config is None:
            return
        if local_admission(config, request.session.session_key):
            return
        user = _check_credentials(request, credentials)
        if user is None:
            return
        report_refusal(user)
        refuse(request, limit_message(config))

    def _central(self, request: Any, credentials: dict[str, Any], settings: conf.AgentSettings) -> None:
        user = _check_credentials(request, credentials)
        if user is None:
            return
        # login() will rotate the key; choose the new key now so headcount records the right id
        pending_key = store_class()()._get_new_session_key()
        body: dict[str, Any] = {
            "session": settings.session_ref(pending_key),
            "at": rfc3339(now()),
            "expires_at": rfc3339(now() + dt.timedelta(seconds=django_settings.SESSION_COOKIE_AGE)),
            **client_info(settings, request),
        }
        reference = user_reference(user, settings)
        if reference is not None:
            body["user"] = reference
        try:
            answer = client.post_admission(body).body or {}
        except (client.HeadcountUnavailable, client.HeadcountError) as exc:
            if settings.central_unreachable == "admit":
                log.warning("headcount: admission not possible (%s); admitting as configured", exc)
                return
            log.warning("headcount: admission not possible (%s); refusing as configured", exc)
            refuse(request, settings.unreachable_message)
            return
        evicted = [ref for ref in answer.get("evicted") or [] if isinstance(ref, str)]
        if evicted:
            from .sessions import keys_for_refs

            with end_reason("evicted"):
                delete_keys(keys_for_refs(evicted))
        if answer.get("admitted"):
            setattr(request, PENDING_ATTR, pending_key)
            return
        message = answer.get("message") or (current() or SiteConfig(0, 0)).message()
        message = str(message).replace("{limit}", str(answer.get("session_limit", "")))
        refuse(request, message)


def _check_credentials(request: Any, credentials: dict[str, Any]) -> Any:
    """Ask the site's other backends whether the credentials are valid; the user or None."""
    request._headcount_checking = True
    try:
        for backend in get_backends():
            if isinstance(backend, SessionLimitBackend):
                continue
            try:
                inspect.signature(backend.authenticate).bind(request, **credentials)
            except TypeError:
                continue
            try:
                user = backend.authenticate(request, **credentials)
            except PermissionDenied:
                return None
            if user is not None:
                return user
        return None
    finally:
        request._headcount_checking = False


def finish_central_admission(request: Any) -> bool:
    """Called at user_logged_in: move the session to the key headcount admitted.

    True when the login was admitted centrally (headcount already recorded the start).
    """
    pending = getattr(request, PENDING_ATTR, None)
    if not pending:
        return False
    setattr(request, PENDING_ATTR, None)
    session = request.session
    old_key = session.session_key
    if old_key == pending:
        return True
    session._session_key = pending
    with suppress_created():
        session.save(must_create=True)
    if old_key:
        with end_reason("logout"):
            session.delete(old_key)
    return True


def message_for(request: Any) -> str | None:
    """The refusal message of this request's last login attempt, if the limit refused it."""
    return getattr(request, REFUSAL_ATTR, None)
