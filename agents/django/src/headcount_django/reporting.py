"""Signal receivers that turn the site's session life into headcount events.

- ``user_logged_in``: ``session.started`` (with user, expiry, user agent, IP)
- a save of a signed-in session: ``session.activity`` with the new expiry, at most
  once per ``ACTIVITY_INTERVAL`` per session and process; a new row of a signed-in
  session (key rotation) is ``session.started``
- ``user_logged_out``: ``session.ended`` (``logout``)
- a deleted signed-in session: ``session.ended`` with ``expired`` when it was past
  its expiry (``clearsessions``), ``logout`` when the site rotated the key, else
  ``killed`` (an admin or a kill pushed by headcount deleted it)

Every receiver swallows its own errors: reporting never fails a request.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.core.signals import request_finished, request_started
from django.db.models.signals import post_delete, post_save

from . import central, conf, context, sender
from .config import sync_lino
from .context import suppress_created
from .enforcement import admit_at_login
from .events import ACTIVITY, ENDED, STARTED, client_info
from .notices import remember_end
from .roles import exempt_roles_of
from .sessions import STARTED_KEY, decode, is_expired, now, rfc3339, session_model, user_id_of, user_reference, user_refs

log = logging.getLogger("headcount_django")


class _Throttle:
    """When each session last reported activity in this process (bounded, oldest forgotten)."""

    def __init__(self, size: int = 50000):
        self.size = size
        self.lock = threading.Lock()
        self.seen: OrderedDict[str, float] = OrderedDict()

    def due(self, ref: str, interval: float) -> bool:
        current = time.monotonic()
        with self.lock:
            last = self.seen.get(ref)
            if last is not None and current - last < interval:
                return False
            self.mark_locked(ref, current)
            return True

    def mark(self, ref: str) -> None:
        with self.lock:
            self.mark_locked(ref, time.monotonic())

    def mark_locked(self, ref: str, when: float) -> None:
        self.seen[ref] = when
        self.seen.move_to_end(ref)
        while len(self.seen) > self.size:
            self.seen.popitem(last=False)

    def forget(self, ref: str) -> None:
        with self.lock:
            self.seen.pop(ref, None)

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()


throttle = _Throttle()


def _safe(func: Callable[..., None]) -> Callable[..., None]:
    """A signal receiver that does nothing while the agent is disabled and never raises."""

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> None:
        try:
            settings = conf.get()
            if not settings.enabled:
                return
            func(settings, **kwargs)
        except Exception:
            log.exception("headcount: reporting failed in %s", func.__name__)

    return wrapper


@_safe
def on_logged_in(settings: conf.AgentSettings, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if session is None:
        return
    if not admit_at_login(request, user):
        return  # refused: the login was undone
    admitted_centrally = central.finish_admission(request)
    session = request.session
    session[STARTED_KEY] = rfc3339(now())
    if not session.session_key:
        # login() flushed the session (another user was signed in): give it its key now
        with suppress_created():
            session.save()
    ref = settings.session_ref(session.session_key)
    throttle.mark(ref)
    context.state().created[ref] = time.monotonic()
    if admitted_centrally:
        # the admission recorded the start, holding the place for a short while: now the real expiry
        sender.enqueue(sender.make_event(ACTIVITY, ref, expires_at=rfc3339(session.get_expiry_date())))
        return
    sender.enqueue(
        sender.make_event(
            STARTED,
            ref,
            user=user_reference(user, settings) if user is not None else None,
            expires_at=rfc3339(session.get_expiry_date()),
            roles=exempt_roles_of(user),
            **client_info(settings, request),
        )
    )


@_safe
def on_logged_out(settings: conf.AgentSettings, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if not key or user is None:
        return
    ref = settings.session_ref(key)
    context.state().ended.add(ref)
    throttle.forget(ref)
    sender.enqueue(sender.make_event(ENDED, ref, reason="logout"))


@_safe
def on_session_saved(settings: conf.AgentSettings, instance: Any = None, created: bool = False, **kwargs: Any) -> None:
    key = instance.session_key
    ref = settings.session_ref(key)
    state = context.state()
    if created:
        if ref in state.created or context.created_suppressed():
            return
        data = decode(instance.session_data)
        user_id = user_id_of(data)
        if user_id is None:
            return
        # a signed-in session under a new key: the site rotated it (cycle_key)
        state.created[ref] = time.monotonic()
        state.rotating_user = (user_id, time.monotonic())
        throttle.mark(ref)
        sender.enqueue(
            sender.make_event(
                STARTED, ref, user=user_refs([user_id]).get(user_id), expires_at=rfc3339(instance.expire_date)
            )
        )
        return
    if not throttle.due(ref, settings.activity_interval):
        return
    if user_id_of(decode(instance.session_data)) is None:
        return
    sender.enqueue(sender.make_event(ACTIVITY, ref, expires_at=rfc3339(instance.expire_date)))


@_safe
def on_session_deleted(settings: conf.AgentSettings, instance: Any = None, **kwargs: Any) -> None:
    key = instance.session_key
    ref = settings.session_ref(key)
    state = context.state()
    throttle.forget(ref)
    if ref in state.ended:
        return
    data = decode(instance.session_data)
    user_id = user_id_of(data)
    if user_id is None:
        return
    if is_expired(instance.expire_date):
        reason = "expired"
    else:
        # the reason the deleting code gave (``context.end_reason``), else what the request did before
        reason = context.current_end_reason() or ("logout" if _rotated_away(state, user_id) else "killed")
    state.ended.add(ref)
    sender.enqueue(sender.make_event(ENDED, ref, reason=reason))
    if reason in ("killed", "evicted", "replaced"):
        remember_end(ref, reason, now())


def _rotated_away(state: context.RequestState, user_id: str) -> bool:
    rotating = state.rotating_user
    return bool(rotating and rotating[0] == user_id and time.monotonic() - rotating[1] < 5.0)


def _on_request_started(**kwargs: Any) -> None:
    try:
        settings = conf.get()
        if not settings.enabled:
            return
        sender.get_sender().start_periodic()
        sender.hook_sigterm()
        sync_lino(throttle=1.0)
    except Exception:
        log.exception("headcount: could not start the background sender")


def _on_request_finished(**kwargs: Any) -> None:
    state = context.finish()
    pending = state.pending if state is not None else None
    if pending:
        try:
            central.release_pending(pending)
        except Exception:
            log.exception("headcount: could not release admissions of sign-ins that did not complete")
    try:
        if conf.get().enabled:
            sender.hook_sigterm()  # Lino installs its own handler while serving the first request
    except Exception:
        log.exception("headcount: could not hook SIGTERM")


def connect() -> None:
    model = session_model()
    user_logged_in.connect(on_logged_in, dispatch_uid="headcount_django.logged_in")
    user_logged_out.connect(on_logged_out, dispatch_uid="headcount_django.logged_out")
    post_save.connect(on_session_saved, sender=model, dispatch_uid="headcount_django.session_saved")
    post_delete.connect(on_session_deleted, sender=model, dispatch_uid="headcount_django.session_deleted")
    request_started.connect(_on_request_started, dispatch_uid="headcount_django.request_started")
    request_finished.connect(_on_request_finished, dispatch_uid="headcount_django.request_finished")
