"""Local mode: the site decides each sign-in by headcount's rule, with the config headcount pushed.

It counts the site's signed-in sessions in ``django_session`` (``counting``) and
decides with ``rules.decide``: limit, count mode, what happens at the limit, reserved
places, the per-user cap. A refusal is reported to headcount as ``session.refused``.
Central mode uses the same rule while headcount cannot be reached (``OFFLINE_GRACE``).
"""

from __future__ import annotations

import logging
from typing import Any

from . import conf, rules
from .config import SiteConfig, pull_if_missing
from .context import end_reason
from .counting import LocalCount, count_sessions
from .credentials import check_credentials
from .offers import Offer, OwnSession, make_offer
from .refusals import kind_of, refuse, report_refusal, text
from .roles import roles_of
from .sessions import delete_keys, now

log = logging.getLogger("headcount_django")


def ask(config: SiteConfig, seen: LocalCount, roles: list[str], user_id: str | None, replaces: bool) -> rules.Ask:
    """The question ``rules.decide`` answers, from what the site holds."""
    user = None
    if config.per_user_limit is not None and user_id is not None:
        user = rules.UserCap(
            counted=len(seen.own_counted),
            limit=config.per_user_limit,
            over=config.per_user_over_limit,
            can_replace=bool(seen.own_counted),
        )
    return rules.Ask(
        counted=seen.counted,
        limit=config.session_limit,
        reserve=config.reserve_for(roles),
        over_limit=config.over_limit,
        overage_percent=int(config.overage_percent),
        # in count mode live a dangling session takes no counted place: evicting it frees none
        can_evict=config.count_mode == "active" and bool(seen.dangling),
        replacing=seen.replacing,
        replaces=replaces,
        user=user,
        pool=None,  # the tenant's pool is known to headcount only (central mode)
        exempt=config.is_exempt(roles),
    )


def admission(
    config: SiteConfig,
    exclude_key: str | None,
    user: Any = None,
    roles: list[str] | None = None,
    replace_keys: list[str] | None = None,
) -> tuple[rules.Decision, LocalCount]:
    """Decide one more session by headcount's rule and end what the decision frees when it admits.

    ``replace_keys`` are sessions of ``user`` the request asks to end (self-service);
    they, the user's oldest session (``replace_oldest``) and an evicted dangling
    session are deleted only when the session is admitted.
    """
    user_id = str(user.pk) if user is not None else None
    wanted = frozenset(replace_keys or ())
    seen = count_sessions(config, exclude_key, user_id, wanted)
    decision = rules.decide(ask(config, seen, roles or [], user_id, bool(wanted)))
    if not decision.admitted:
        return decision, seen
    victims = list(wanted)
    if decision.replace_oldest:
        victims.extend(key for _, key in seen.own_counted[:1] if key not in wanted)
    if victims:
        with end_reason("replaced"):
            delete_keys(victims)
        log.info("headcount: ended %d of the user's own sessions to admit a login", len(victims))
    if decision.evict:
        candidates = [key for _, key in seen.dangling if key not in victims]
        if candidates:
            with end_reason("evicted"):
                delete_keys(candidates[:1])
            log.info("headcount: evicted the most idle dangling session to admit a login")
    return decision, seen


def message(config: SiteConfig, decision: rules.Decision, seen: LocalCount, roles: list[str]) -> str:
    """The text for a refusal of the local rule, by the reason it gives (``refusals``)."""
    kind = kind_of(decision.outcome, seen.counted, config.admission_ceiling, config.reserve_for(roles))
    return text(kind, config)


def replacing_helps(config: SiteConfig, seen: LocalCount, roles: list[str], user_id: str) -> bool:
    """Whether ending all of the user's own sessions would admit the sign-in (else offering it is a lie)."""
    everything = frozenset(session.key for session in seen.own)
    trial = LocalCount(
        counted=seen.counted,
        dangling=[d for d in seen.dangling if d[1] not in everything],
        own=seen.own,
        own_counted=seen.own_counted,
        replacing=len(seen.own_counted),
    )
    return rules.decide(ask(config, trial, roles, user_id, True)).admitted


def decide_sign_in(request: Any, credentials: dict[str, Any]) -> None:
    """At ``authenticate()``: let the sign-in through, or refuse it (raises, see ``refusals.refuse``)."""
    config = pull_if_missing()
    if config is None:
        return
    user = backend_path = None
    roles: list[str] = []
    if config.reserved_slots or config.per_user_limit is not None or config.exempt_roles:
        # who signs in matters: check the password first (a wrong one is left to the backends)
        user, backend_path = check_credentials(request, credentials)
        if user is None:
            return
        roles = roles_of(user)
    decision, seen = admission(config, request.session.session_key, user, roles)
    if decision.admitted:
        return
    if user is None:
        user, backend_path = check_credentials(request, credentials)
        if user is None:
            return
        roles = roles_of(user)
        seen = count_sessions(config, request.session.session_key, str(user.pk))
        decision = rules.decide(ask(config, seen, roles, str(user.pk), False))
    report_refusal(user)
    offer: Offer | None = None
    if seen.own and replacing_helps(config, seen, roles, str(user.pk)):
        current_time = now()
        settings = conf.get()
        own = [OwnSession.from_local(session, current_time, settings) for session in seen.own]
        offer = make_offer(request, user, backend_path, own, credentials)
    refuse(request, message(config, decision, seen, roles), offer)


def decide_login(request: Any, user: Any, settings: conf.AgentSettings) -> str | None:
    """At ``login()`` of a sign-in ``authenticate()`` did not decide: None to admit, else the refusal's message."""
    config = pull_if_missing()
    if config is None:
        return None
    roles = roles_of(user, settings)
    decision, seen = admission(config, request.session.session_key, user, roles)
    if decision.admitted:
        return None
    report_refusal(user)
    return message(config, decision, seen, roles)
