"""Enforcing the sessions limit at login.

``SessionLimitBackend`` goes first in ``AUTHENTICATION_BACKENDS``. It never signs
anybody in itself; it looks at every ``authenticate(request, ...)`` call, and when
the site is full it checks the credentials with the other backends (so a wrong
password still reads as a wrong password) and stops the login:

- ``local``: counts the site's signed-in sessions in ``django_session`` under the
  config headcount pushed and decides by headcount's rule (``rules.decide``: limit,
  count mode, what happens at the limit, reserved places, the per-user cap);
- ``central``: asks headcount (``POST /admissions``) with the id of the session the
  login is about to create; when headcount cannot be reached, ``CENTRAL_UNREACHABLE``
  decides between ``admit`` and ``refuse``.

A refusal raises ``PermissionDenied`` (Django's ``authenticate()`` then returns
``None``; ``headcount_django.forms.AuthenticationForm`` shows the message) or, in a
Lino site, ``Warning``, which Lino shows to the user as it shows its own limit
message. A refused user with other sessions of their own also gets a self-service
offer (``selfservice``) to end them and sign in.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from asgiref.sync import sync_to_async
from django.contrib.auth import get_backends
from django.core.exceptions import PermissionDenied

from . import client, conf, refusals, rules, sender
from .config import SiteConfig, current, pull_if_missing
from .reporting import client_info, end_reason, suppress_created
from .sessions import (
    LocalSession, authenticated_sessions, delete_keys, keys_for_refs, now, rfc3339, store_class, user_reference,
)

log = logging.getLogger("headcount_django")

REFUSED = "session.refused"
REFUSAL_ATTR = "headcount_refusal"
PENDING_ATTR = "_headcount_admitted_key"
# set on the request when the backend let a sign-in through: login() then needs no second decision
DECIDED_ATTR = "_headcount_decided"
# an admission headcount recorded for a sign-in that has not completed yet holds its place this long
# at most: a sign-in that never completes (a two-factor code never entered) is also ended at the end of
# its request, this is the fallback when that end is lost
PENDING_SECONDS = 120
OFFER_ATTR = "headcount_offer"


class SessionLimitRefused(PermissionDenied):
    def __init__(self, message: str, offer: Any = None):
        super().__init__(message)
        self.message = message
        self.offer = offer


class SessionLimitWarning(Warning):
    """A refusal in a Lino site; ``str()`` is the message (and, with an offer, its plain text and link)."""

    def __init__(self, message: str, offer: Any = None):
        text = message if offer is None else f"{message} {offer.text()} {offer.absolute_url}"
        super().__init__(text)
        self.message = message
        self.offer = offer


def _is_lino() -> bool:
    return "lino" in sys.modules and hasattr(django_settings, "SITE")


def refuse(request: Any, message: str, offer: Any = None, at_limit: bool = True) -> None:
    """Stop the sign-in with ``message``; ``at_limit``: a refusal by the limit (not headcount being unreachable)."""
    if at_limit:
        from .adminstatus import note_refusal

        note_refusal()
    if request is not None:
        setattr(request, REFUSAL_ATTR, message)
        setattr(request, OFFER_ATTR, offer)
    settings = conf.get()
    if settings.refusal == "warning" or (settings.refusal == "auto" and _is_lino()):
        raise SessionLimitWarning(message, offer)
    raise SessionLimitRefused(message, offer)


# -- local rule ----------------------------------------------------------------------------


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
    """Count the site's signed-in sessions by headcount's rule (see ``rules``)."""
    current = now()
    idle_limit = current - dt.timedelta(seconds=config.idle_timeout_seconds)
    result = LocalCount()
    sessions = list(authenticated_sessions(exclude_key=exclude_key))
    exempt = exempt_user_ids(config, {session.user_id for session in sessions})
    for session in sessions:
        if session.user_id in exempt:
            continue  # an exempt account's session takes no place, and is never evicted or replaced
        last = session.last_activity(current)
        is_dangling = last <= idle_limit
        counts = not (config.count_mode == "live" and is_dangling)
        if is_dangling and counts and session.key not in replace_keys:
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


def exempt_user_ids(config: SiteConfig, user_ids: set[str]) -> set[str]:
    """The users among ``user_ids`` whose roles include one of the config's ``exempt_roles`` (one query)."""
    if not config.exempt_roles or not user_ids:
        return set()
    from django.contrib.auth import get_user_model

    model = get_user_model()
    pk_field = model._meta.pk
    try:
        wanted = [pk_field.to_python(i) for i in user_ids]
    except Exception:
        wanted = list(user_ids)
    settings = conf.get()
    return {str(user.pk) for user in model._default_manager.filter(pk__in=wanted) if config.is_exempt(roles_of(user, settings))}


def local_ask(config: SiteConfig, seen: LocalCount, roles: list[str], user_id: str | None, replaces: bool) -> rules.Ask:
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


def local_admission(
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
    decision = rules.decide(local_ask(config, seen, roles or [], user_id, bool(wanted)))
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


def roles_of(user: Any, settings: conf.AgentSettings | None = None) -> list[str]:
    """The role names ``HEADCOUNT["ROLES"]`` gives the user (at most 16, each at most 64 characters).

    A service account (``SERVICE_ACCOUNTS``) carries ``SERVICE_ROLE`` as well, which
    the site's ``exempt_roles`` in headcount names so that it takes no place.
    """
    settings = settings or conf.get()
    try:
        value = settings.roles(user)
    except Exception:
        log.exception("headcount: ROLES failed for user %s", getattr(user, "pk", None))
        value = []
    if value is None or isinstance(value, str):
        value = [value] if value else []
    value = list(value)
    try:
        service = settings.service_account(user)
    except Exception:
        log.exception("headcount: SERVICE_ACCOUNTS failed for user %s", getattr(user, "pk", None))
        service = False
    if service:
        # first, so that the cap of 16 roles never drops it
        value.insert(0, settings.service_role)
    names = []
    for role in value:
        role = str(role)
        if role and len(role) <= 64 and role not in names:
            names.append(role)
    return names[:16]


def local_message(config: SiteConfig, decision: rules.Decision, seen: LocalCount, roles: list[str]) -> str:
    """The text for a refusal of the local rule, by the reason it gives (``refusals``)."""
    kind = refusals.kind_of(decision.outcome, seen.counted, config.admission_ceiling, config.reserve_for(roles))
    return refusals.text(kind, config)


def limit_message(config: SiteConfig) -> str:
    """The text of a refusal at the site's limit (the site's ``limit_message``, or Lino's own words)."""
    return refusals.text(refusals.LIMIT, config)


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
        if _is_social(credentials):
            # python-social-auth: checking "the credentials" would run its pipeline twice; the
            # sign-in is decided when it completes, at login() (``admit_at_login``)
            return None
        if settings.mode == "local":
            self._local(request, credentials)
        else:
            self._central(request, credentials, settings)
        setattr(request, DECIDED_ATTR, True)
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
        user = backend_path = None
        roles: list[str] = []
        if config.reserved_slots or config.per_user_limit is not None or config.exempt_roles:
            # who signs in matters: check the password first (a wrong one is left to the backends)
            user, backend_path = _check_credentials(request, credentials)
            if user is None:
                return
            roles = roles_of(user)
        decision, seen = local_admission(config, request.session.session_key, user, roles)
        if decision.admitted:
            return
        if user is None:
            user, backend_path = _check_credentials(request, credentials)
            if user is None:
                return
            roles = roles_of(user)
            seen = count_sessions(config, request.session.session_key, str(user.pk))
            decision = rules.decide(local_ask(config, seen, roles, str(user.pk), False))
        report_refusal(user)
        offer = None
        if seen.own and _replacing_helps(config, seen, roles, str(user.pk)):
            from .selfservice import OwnSession, make_offer

            current_time = now()
            settings = conf.get()
            own = [OwnSession.from_local(session, current_time, settings) for session in seen.own]
            offer = make_offer(request, user, backend_path, own, credentials)
        refuse(request, local_message(config, decision, seen, roles), offer)

    def _central(self, request: Any, credentials: dict[str, Any], settings: conf.AgentSettings) -> None:
        user, backend_path = _check_credentials(request, credentials)
        if user is None:
            return
        answer = ask_headcount(request, user, settings)
        if answer is None:
            return  # admitted: headcount unreachable and CENTRAL_UNREACHABLE is admit
        if answer.get("admitted"):
            return
        offer = None
        roles = roles_of(user, settings)
        own = answer.get("own_sessions")
        if isinstance(own, list) and own:
            from .selfservice import OwnSession, make_offer

            sessions = [s for s in (OwnSession.from_answer(item) for item in own) if s is not None]
            if _central_replacing_helps(answer, config_for(answer), roles, sessions):
                offer = make_offer(request, user, backend_path, sessions, credentials)
        refuse(request, central_message(answer, roles), offer)


def _replacing_helps(config: SiteConfig, seen: LocalCount, roles: list[str], user_id: str) -> bool:
    """Whether ending all of the user's own sessions would admit the sign-in (else offering it is a lie)."""
    everything = frozenset(session.key for session in seen.own)
    counted = sum(1 for _, key in seen.own_counted)
    trial = LocalCount(
        counted=seen.counted, dangling=[d for d in seen.dangling if d[1] not in everything],
        own=seen.own, own_counted=seen.own_counted, replacing=counted,
    )
    return rules.decide(local_ask(config, trial, roles, user_id, True)).admitted


def ask_headcount(
    request: Any, user: Any, settings: conf.AgentSettings, replace: list[str] | None = None
) -> dict[str, Any] | None:
    """``POST /admissions`` for a login of ``user``; the answer (after ending what it ended), or None.

    None: headcount could not answer and ``CENTRAL_UNREACHABLE`` admits. When it
    refuses, the refusal is raised here. An admitted answer leaves the chosen key on
    the request for ``finish_central_admission``. A ``HeadcountError`` is raised when
    ``replace`` was given and headcount found it invalid (422).
    """
    # login() will rotate the key; choose the new key now so headcount records the right id
    pending_key = store_class()()._get_new_session_key()
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
        return _unreachable(request, settings, exc, user)
    except client.HeadcountUnavailable as exc:
        return _unreachable(request, settings, exc, user)
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
        pending_admissions().add(settings.session_ref(pending_key))
    return answer


def pending_admissions() -> set[str]:
    """The ids headcount admitted in this request whose sign-in has not completed (yet)."""
    from .reporting import _thread_state

    return _thread_state().setdefault("pending", set())


def release_pending(refs: set[str]) -> None:
    """At the end of a request: end the admissions whose sign-in did not complete in it.

    A sign-in that stops after the password (a two-factor step, a login view that
    does not call login()) leaves nothing counted in headcount; the completed one is
    admitted again when it comes back.
    """
    for ref in refs:
        sender.enqueue(sender.make_event("session.ended", ref, reason="logout"))
    if refs:
        log.info("headcount: %d admitted sign-in(s) did not complete in their request; their places are free", len(refs))


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
    if getattr(request, PENDING_ATTR, None):
        return True
    setattr(request, DECIDED_ATTR, True)
    message = None
    counted = False  # the refusal was counted for the administrators already (``refuse``)
    try:
        if settings.mode == "local":
            config = pull_if_missing()
            if config is None:
                return True
            roles = roles_of(user, settings)
            decision, seen = local_admission(config, request.session.session_key, user, roles)
            if decision.admitted:
                return True
            report_refusal(user)
            message = local_message(config, decision, seen, roles)
        else:
            try:
                answer = ask_headcount(request, user, settings)
            except (SessionLimitRefused, SessionLimitWarning) as refusal:
                message, counted = refusal.message, True
            else:
                if answer is None or answer.get("admitted"):
                    return True
                message = central_message(answer, roles_of(user, settings))
    except Exception:
        log.exception("headcount: could not decide a sign-in at login(); admitting it")
        return True
    log.info("headcount: a sign-in that did not pass authenticate() was refused at login(): %s", message)
    undo_login(request, message, count=not counted)
    return False


def undo_login(request: Any, message: str, count: bool = True) -> None:
    """Take back a login() the limit refused: an empty session, and the user told at the next request."""
    from . import notices
    from .adminstatus import note_refusal

    if count:
        note_refusal()
    setattr(request, REFUSAL_ATTR, message)
    session = request.session
    session.flush()
    notices.remember_refusal(request, message)
    try:
        if _is_lino():
            from lino.core.auth import get_user
        else:
            from django.contrib.auth import get_user
        request.user = get_user(request)
    except Exception:
        log.debug("headcount: could not reset request.user after a refused login", exc_info=True)


def _unreachable(request: Any, settings: conf.AgentSettings, exc: Exception, user: Any) -> None:
    """headcount did not answer: the local rule decides with the last config for ``OFFLINE_GRACE``, then
    ``CENTRAL_UNREACHABLE``. A refusal made offline is queued as ``session.refused``, delivered once
    headcount answers again; a sign-in admitted offline is reported as started like any other."""
    config = current()
    offline = client.offline_seconds()
    if config is not None and offline is not None and offline <= settings.offline_grace:
        roles = roles_of(user, settings)
        decision, seen = local_admission(config, request.session.session_key, user, roles)
        log.warning(
            "headcount: admission not possible (%s); the local rule decided %s with config version %d "
            "(no answer from headcount for %d s)", exc, decision.outcome, config.config_version, offline,
        )
        if decision.admitted:
            return None
        report_refusal(user)
        refuse(request, local_message(config, decision, seen, roles))
    if settings.central_unreachable == "admit":
        log.warning("headcount: admission not possible (%s); admitting as configured", exc)
        return None
    log.warning("headcount: admission not possible (%s); refusing as configured", exc)
    refuse(request, settings.unreachable_message, at_limit=False)
    return None


def central_message(answer: dict[str, Any], roles: list[str] | tuple[str, ...] = ()) -> str:
    """The text for headcount's refusal, by its ``outcome`` (``refusals``)."""
    config = config_for(answer)
    limit = _int(answer.get("session_limit"), config.session_limit if config else 0)
    counted = _int(answer.get("counted"), 0)
    if config is not None and config.session_limit == limit:
        ceiling, reserve = config.admission_ceiling, config.reserve_for(roles)
    else:
        # no config held (or an older one): below the limit only reserved places refuse
        ceiling, reserve = limit, int(counted < limit)
    kind = refusals.kind_of(str(answer.get("outcome") or ""), counted, ceiling, reserve)
    message = answer.get("message")
    return refusals.text(kind, config, limit=limit, site_message=str(message) if message else None)


def config_for(answer: dict[str, Any]) -> SiteConfig | None:
    """The config headcount decided with: the one held, or pulled when the answer names a newer version."""
    held = current()
    version = answer.get("config_version")
    if isinstance(version, int) and (held is None or held.config_version < version):
        try:
            from . import config as site_config

            site_config.pull_newer()
        except Exception as exc:
            log.warning("headcount: could not pull config version %s: %s", version, exc)
        held = current()
    return held


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _central_replacing_helps(answer: dict[str, Any], config: SiteConfig | None, roles: list[str], own: list[Any]) -> bool:
    """Whether replacing the user's own sessions would admit the sign-in, by the rule headcount will apply.

    With ``count_mode: live`` the user's dangling sessions take no counted place:
    ending them frees none, so they are no reason to offer anything.
    """
    live_only = config is not None and config.count_mode == "live"
    counted_own = [s for s in own if not live_only or s.state == "live"]
    if not counted_own:
        return False
    if answer.get("outcome") == rules.POOL_LIMIT_REACHED:
        return True  # each counted session ended frees a place in the tenant's pool as well
    if config is None:
        return answer.get("outcome") in (rules.USER_LIMIT_REACHED, rules.LIMIT_REACHED)
    user = None
    if config.per_user_limit is not None:
        user = rules.UserCap(len(counted_own), config.per_user_limit, config.per_user_over_limit, True)
    ask = rules.Ask(
        counted=_int(answer.get("counted"), 0),
        limit=_int(answer.get("session_limit"), config.session_limit),
        reserve=config.reserve_for(roles),
        over_limit=config.over_limit,
        overage_percent=int(config.overage_percent),
        replacing=len(counted_own),
        replaces=True,
        user=user,
    )
    return rules.decide(ask).admitted


def _check_credentials(request: Any, credentials: dict[str, Any]) -> tuple[Any, str | None]:
    """Ask the site's other backends whether the credentials are valid: (the user, its backend's path) or (None, None)."""
    request._headcount_checking = True
    try:
        paths = list(getattr(django_settings, "AUTHENTICATION_BACKENDS", []))
        for index, backend in enumerate(get_backends()):
            if isinstance(backend, SessionLimitBackend):
                continue
            try:
                inspect.signature(backend.authenticate).bind(request, **credentials)
            except TypeError:
                continue
            try:
                user = backend.authenticate(request, **credentials)
            except PermissionDenied:
                return None, None
            if user is not None:
                path = paths[index] if index < len(paths) else None
                return user, path
        return None, None
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
    pending_admissions().discard(conf.get().session_ref(pending))
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


def offer_for(request: Any) -> Any:
    """The self-service offer (``selfservice.Offer``) made to this request's refused login, if any."""
    return getattr(request, OFFER_ATTR, None)
