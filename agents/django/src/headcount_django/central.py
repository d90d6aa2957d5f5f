"""Central mode: headcount decides each sign-in (``POST /admissions``), atomically across the site's workers.

The agent chooses the session key the login will get, asks headcount with its hashed
id, and gives the session that key when the login completes (``finish_admission``),
so that headcount's record and the session are the same from the first second. An
admission whose sign-in does not complete in its request (a two-factor step) is
ended when the request ends (``release_pending``).

When headcount cannot answer in time, the local rule (``local``) decides with the
last pushed config for ``OFFLINE_GRACE``, then ``CENTRAL_UNREACHABLE``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings as django_settings

from . import client, conf, config, local, rules, sender
from .config import SiteConfig, current
from .context import end_reason, state as request_state, suppress_created
from .credentials import check_credentials
from .events import ENDED, client_info
from .offers import Offer, OwnSession, make_offer
from .refusals import SessionLimitRefused, SessionLimitWarning, kind_of, refuse, report_refusal, text
from .roles import roles_of
from .sessions import adopt_key, delete_keys, keys_for_refs, new_key, now, rfc3339, user_reference

log = logging.getLogger("headcount_django")

# on the request: the key headcount admitted, which login() gives the session (``finish_admission``)
PENDING_ATTR = "_headcount_admitted_key"
# an admission headcount recorded for a sign-in that has not completed yet holds its place this long
# at most: a sign-in that never completes (a two-factor code never entered) is also ended at the end of
# its request, this is the fallback when that end is lost
PENDING_SECONDS = 120


def decide_sign_in(request: Any, credentials: dict[str, Any], settings: conf.AgentSettings) -> None:
    """At ``authenticate()``: let the sign-in through, or refuse it (raises, see ``refusals.refuse``)."""
    user, backend_path = check_credentials(request, credentials)
    if user is None:
        return
    answer = ask_headcount(request, user, settings)
    if answer is None:
        return  # admitted: headcount unreachable and CENTRAL_UNREACHABLE is admit
    if answer.get("admitted"):
        return
    offer: Offer | None = None
    roles = roles_of(user, settings)
    own = answer.get("own_sessions")
    if isinstance(own, list) and own:
        sessions = [s for s in (OwnSession.from_answer(item) for item in own) if s is not None]
        if replacing_helps(answer, config_for(answer), roles, sessions):
            offer = make_offer(request, user, backend_path, sessions, credentials)
    refuse(request, message(answer, roles), offer)


def decide_login(request: Any, user: Any, settings: conf.AgentSettings) -> tuple[str | None, bool]:
    """At ``login()`` of a sign-in ``authenticate()`` did not decide: (None, _) to admit, else the
    refusal's message and whether it was counted for the administrators already."""
    try:
        answer = ask_headcount(request, user, settings)
    except (SessionLimitRefused, SessionLimitWarning) as refusal:
        return refusal.message, True
    if answer is None or answer.get("admitted"):
        return None, False
    return message(answer, roles_of(user, settings)), False


def ask_headcount(
    request: Any, user: Any, settings: conf.AgentSettings, replace: list[str] | None = None
) -> dict[str, Any] | None:
    """``POST /admissions`` for a login of ``user``; the answer (after ending what it ended), or None.

    None: headcount could not answer and ``CENTRAL_UNREACHABLE`` admits. When it
    refuses, the refusal is raised here. An admitted answer leaves the chosen key on
    the request for ``finish_admission``. A ``HeadcountError`` is raised when
    ``replace`` was given and headcount found it invalid (422).
    """
    # login() will rotate the key; choose the new key now so headcount records the right id
    pending_key = new_key()
    body: dict[str, Any] = {
        "session": settings.session_ref(pending_key),
        "at": rfc3339(now()),
        # the place is held only until the sign-in completes; login() then reports the session's real expiry
        "expires_at": rfc3339(now() + dt.timedelta(seconds=min(PENDING_SECONDS, django_settings.SESSION_COOKIE_AGE))),
        **client_info(settings, request),
    }
    reference = user_reference(user, settings)
    if reference is not None:
        body["user"] = reference
    roles = roles_of(user, settings)
    if roles:
        body["roles"] = roles
    if replace:
        body["replace"] = replace
    try:
        answer = client.post_admission(body).body or {}
    except client.HeadcountError as exc:
        if replace and exc.status == 422:
            raise
        _unreachable(request, settings, exc, user)
        return None
    except client.HeadcountUnavailable as exc:
        _unreachable(request, settings, exc, user)
        return None
    evicted = [ref for ref in answer.get("evicted") or [] if isinstance(ref, str)]
    if evicted:
        with end_reason("evicted"):
            delete_keys(keys_for_refs(evicted))
    replaced = [ref for ref in answer.get("replaced") or [] if isinstance(ref, str)]
    if replaced:
        # ended by headcount already; its kill push would find the rows gone
        with end_reason("replaced"):
            delete_keys(keys_for_refs(replaced))
    if answer.get("admitted"):
        setattr(request, PENDING_ATTR, pending_key)
        request_state().pending.add(settings.session_ref(pending_key))
    return answer


def _unreachable(request: Any, settings: conf.AgentSettings, exc: Exception, user: Any) -> None:
    """headcount did not answer: the local rule decides with the last config for ``OFFLINE_GRACE``, then
    ``CENTRAL_UNREACHABLE``. A refusal made offline is queued as ``session.refused``, delivered once
    headcount answers again; a sign-in admitted offline is reported as started like any other.
    Returns when the sign-in is admitted; raises the refusal otherwise."""
    held = current()
    offline = client.offline_seconds()
    if held is not None and offline is not None and offline <= settings.offline_grace:
        roles = roles_of(user, settings)
        decision, seen = local.admission(held, request.session.session_key, user, roles)
        log.warning(
            "headcount: admission not possible (%s); the local rule decided %s with config version %d "
            "(no answer from headcount for %d s)",
            exc, decision.outcome, held.config_version, offline,
        )
        if decision.admitted:
            return
        report_refusal(user)
        refuse(request, local.message(held, decision, seen, roles))
    if settings.central_unreachable == "admit":
        log.warning("headcount: admission not possible (%s); admitting as configured", exc)
        return
    log.warning("headcount: admission not possible (%s); refusing as configured", exc)
    refuse(request, settings.unreachable_message, at_limit=False)


def message(answer: dict[str, Any], roles: list[str] | tuple[str, ...] = ()) -> str:
    """The text for headcount's refusal, by its ``outcome`` (``refusals``)."""
    held = config_for(answer)
    limit = _int(answer.get("session_limit"), held.session_limit if held else 0)
    counted = _int(answer.get("counted"), 0)
    if held is not None and held.session_limit == limit:
        ceiling, reserve = held.admission_ceiling, held.reserve_for(roles)
    else:
        # no config held (or an older one): below the limit only reserved places refuse
        ceiling, reserve = limit, int(counted < limit)
    kind = kind_of(str(answer.get("outcome") or ""), counted, ceiling, reserve)
    site_message = answer.get("message")
    return text(kind, held, limit=limit, site_message=str(site_message) if site_message else None)


def config_for(answer: dict[str, Any]) -> SiteConfig | None:
    """The config headcount decided with: the one held, or pulled when the answer names a newer version."""
    held = current()
    version = answer.get("config_version")
    if isinstance(version, int) and (held is None or held.config_version < version):
        try:
            config.pull_newer()
        except Exception as exc:
            log.warning("headcount: could not pull config version %s: %s", version, exc)
        held = current()
    return held


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def replacing_helps(answer: dict[str, Any], held: SiteConfig | None, roles: list[str], own: list[OwnSession]) -> bool:
    """Whether replacing the user's own sessions would admit the sign-in, by the rule headcount will apply.

    With ``count_mode: live`` the user's dangling sessions take no counted place:
    ending them frees none, so they are no reason to offer anything.
    """
    live_only = held is not None and held.count_mode == "live"
    counted_own = [s for s in own if not live_only or s.state == "live"]
    if not counted_own:
        return False
    if answer.get("outcome") == rules.POOL_LIMIT_REACHED:
        return True  # each counted session ended frees a place in the tenant's pool as well
    if held is None:
        return answer.get("outcome") in (rules.USER_LIMIT_REACHED, rules.LIMIT_REACHED)
    user = None
    if held.per_user_limit is not None:
        user = rules.UserCap(len(counted_own), held.per_user_limit, held.per_user_over_limit, True)
    ask = rules.Ask(
        counted=_int(answer.get("counted"), 0),
        limit=_int(answer.get("session_limit"), held.session_limit),
        reserve=held.reserve_for(roles),
        over_limit=held.over_limit,
        overage_percent=int(held.overage_percent),
        replacing=len(counted_own),
        replaces=True,
        user=user,
    )
    return rules.decide(ask).admitted


def finish_admission(request: Any) -> bool:
    """At ``user_logged_in``: move the session to the key headcount admitted.

    True when the login was admitted centrally (headcount already recorded the start).
    """
    pending = getattr(request, PENDING_ATTR, None)
    if not pending:
        return False
    setattr(request, PENDING_ATTR, None)
    request_state().pending.discard(conf.get().session_ref(pending))
    session = request.session
    old_key = session.session_key
    if old_key == pending:
        return True
    adopt_key(session, pending)
    with suppress_created():
        session.save(must_create=True)
    if old_key:
        with end_reason("logout"):
            session.delete(old_key)
    return True


def is_pending(request: Any) -> bool:
    """Whether headcount admitted this request's sign-in and login() has yet to give it its key."""
    return bool(getattr(request, PENDING_ATTR, None))


def release_pending(refs: set[str]) -> None:
    """At the end of a request: end the admissions whose sign-in did not complete in it.

    A sign-in that stops after the password (a two-factor step, a login view that
    does not call login()) leaves nothing counted in headcount; the completed one is
    admitted again when it comes back.
    """
    for ref in refs:
        sender.enqueue(sender.make_event(ENDED, ref, reason="logout"))
    if refs:
        log.info("headcount: %d admitted sign-in(s) did not complete in their request; their places are free", len(refs))
