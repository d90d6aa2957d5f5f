"""Self-service at the limit: a refused user whose password was accepted may end their own sessions.

When a sign-in is refused and the user holds other sessions on the site (headcount's
``own_sessions`` in central mode, the user's rows of ``django_session`` in local
mode), the refusal carries an ``Offer``: "You have 2 other sessions (last used 4
minutes ago, 3 days ago): end them and sign in", linking to the agent's page
``/headcount/replace/?t=<token>``.

The token is signed with ``SECRET_KEY`` (``django.core.signing``), lives
``OFFER_TTL`` seconds, names the user, the backend that accepted the password, the
sessions (by headcount's hashed id, never the key) and a nonce kept in the refused
browser's (anonymous) session: it works only in the browser that typed the password.
The page shows the sessions and a form (POST, CSRF-protected); accepting asks the
admission again with ``replace`` (central: headcount ends them atomically with the
admission, reason ``replaced``) or, in local mode, deletes the user's rows (reported
as ``replaced``), then signs the user in and redirects.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth import load_backend
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timesince import timesince
from django.utils.translation import gettext as _, ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie

from . import client, conf, enforcement
from .config import current
from .sessions import LocalSession, authenticated_sessions, now, parse_rfc3339

log = logging.getLogger("headcount_django")

SALT = "headcount_django.selfservice"
NONCE_KEY = "_headcount_offer"
# headcount takes at most 100 sessions in one `replace`
MAX_SESSIONS = 100


@dataclass(frozen=True)
class OwnSession:
    session: str  # headcount's id (the keyed hash)
    state: str  # live | dangling
    last_activity_at: dt.datetime | None
    user_agent: str | None = None
    ip: str | None = None

    @classmethod
    def from_answer(cls, item: Any) -> "OwnSession | None":
        if not isinstance(item, dict) or not isinstance(item.get("session"), str):
            return None
        last = item.get("last_activity_at")
        return cls(
            session=item["session"],
            state=str(item.get("state") or "live"),
            last_activity_at=parse_rfc3339(last) if isinstance(last, str) else None,
            user_agent=item.get("user_agent") if isinstance(item.get("user_agent"), str) else None,
            ip=item.get("ip") if isinstance(item.get("ip"), str) else None,
        )

    @classmethod
    def from_local(cls, session: LocalSession, at: dt.datetime, settings: conf.AgentSettings) -> "OwnSession":
        config = current()
        last = session.last_activity(at)
        idle = config.idle_timeout_seconds if config else 86400
        state = "dangling" if (at - last).total_seconds() >= idle else "live"
        return cls(settings.session_ref(session.key), state, last)


def _ago(when: dt.datetime | None, at: dt.datetime) -> str:
    if when is None:
        return _("at an unknown time")
    if (at - when).total_seconds() < 60:
        return _("just now")
    return _("%(time)s ago") % {"time": timesince(when, at)}


@dataclass(frozen=True)
class Offer:
    sessions: tuple[OwnSession, ...]
    url: str  # site-relative: /headcount/replace/?t=...
    absolute_url: str  # with scheme and host, for plain-text messages

    def last_used(self, at: dt.datetime | None = None, most: int = 3) -> list[str]:
        at = at or now()
        ordered = sorted(self.sessions, key=lambda s: s.last_activity_at or dt.datetime.min.replace(tzinfo=dt.timezone.utc), reverse=True)
        return [_ago(s.last_activity_at, at) for s in ordered[:most]]

    def summary(self) -> str:
        """"You have 2 other sessions (last used 4 minutes ago, 3 days ago)"."""
        n = len(self.sessions)
        used = ", ".join(self.last_used())
        if n > 3:
            used += ", …"
        return ngettext(
            "You have %(n)d other session (last used %(used)s)",
            "You have %(n)d other sessions (last used %(used)s)",
            n,
        ) % {"n": n, "used": used}

    def action(self) -> str:
        return ngettext("end it and sign in", "end them and sign in", len(self.sessions))

    def text(self) -> str:
        return f"{self.summary()}: {self.action()}."

    def html(self) -> str:
        """The offer as HTML with the link (safe to show unescaped)."""
        return format_html('{}: <a href="{}">{}</a>.', self.summary(), self.url, self.action())


def make_offer(
    request: Any, user: Any, backend_path: str | None, sessions: list[OwnSession], credentials: dict[str, Any]
) -> Offer | None:
    """An offer for this refused login, or None (switched off, nothing to end, URLs not included)."""
    settings = conf.get()
    if not settings.self_service or not sessions or backend_path is None or getattr(request, "session", None) is None:
        return None
    try:
        base = reverse("headcount:replace")
    except NoReverseMatch:
        return None
    sessions = sessions[:MAX_SESSIONS]
    nonce = request.session.get(NONCE_KEY) or secrets.token_urlsafe(16)
    request.session[NONCE_KEY] = nonce
    payload = {
        "u": str(user.pk),
        "b": backend_path,
        "s": [s.session for s in sessions],
        # when each was last used, for the page (epoch seconds)
        "l": [int(s.last_activity_at.timestamp()) if s.last_activity_at else None for s in sessions],
        "n": nonce,
    }
    nxt = _next_from(request)
    if nxt:
        payload["next"] = nxt
    token = signing.dumps(payload, salt=SALT, compress=True)
    url = f"{base}?t={token}"
    try:
        absolute = request.build_absolute_uri(url)
    except Exception:
        absolute = url
    return Offer(tuple(sessions), url, absolute)


def _next_from(request: Any) -> str | None:
    data = getattr(request, "POST", None) or {}
    value = data.get("next") or (getattr(request, "GET", None) or {}).get("next")
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return value
    return None


class OfferInvalid(Exception):
    pass


def read_token(request: HttpRequest, token: str | None) -> dict[str, Any]:
    settings = conf.get()
    if not token:
        raise OfferInvalid(_("This link is incomplete. Please sign in again."))
    try:
        payload = signing.loads(token, salt=SALT, max_age=settings.offer_ttl)
    except signing.SignatureExpired:
        raise OfferInvalid(_("This offer has expired. Please sign in again.")) from None
    except signing.BadSignature:
        raise OfferInvalid(_("This link is not valid. Please sign in again.")) from None
    nonce = request.session.get(NONCE_KEY)
    if not isinstance(payload, dict) or not nonce or payload.get("n") != nonce:
        raise OfferInvalid(_("This offer was made to another browser. Please sign in again."))
    return payload


def _user(payload: dict[str, Any]) -> Any:
    path = payload.get("b")
    if path not in getattr(django_settings, "AUTHENTICATION_BACKENDS", []):
        raise OfferInvalid(_("This link is not valid. Please sign in again."))
    user = load_backend(path).get_user(payload.get("u"))
    if user is None:
        raise OfferInvalid(_("This account cannot sign in. Please sign in again."))
    return user


def _login(request: HttpRequest, user: Any, backend: str) -> None:
    request.session.pop(NONCE_KEY, None)
    setattr(request, enforcement.DECIDED_ATTR, True)  # decided above
    if enforcement._is_lino():
        from lino.core import auth

        auth.login(request, user, backend=backend)
    else:
        from django.contrib.auth import login

        login(request, user, backend=backend)


def _redirect_target(payload: dict[str, Any]) -> str:
    nxt = payload.get("next")
    if isinstance(nxt, str) and nxt:
        return nxt
    if enforcement._is_lino():
        return "/"
    return str(getattr(django_settings, "LOGIN_REDIRECT_URL", "/") or "/")


def accept(request: HttpRequest, payload: dict[str, Any]) -> None:
    """End the offered sessions and admit this login (raises OfferInvalid or a refusal)."""
    settings = conf.get()
    user = _user(payload)
    refs = [r for r in payload.get("s") or [] if isinstance(r, str)][:MAX_SESSIONS]
    if settings.mode == "central":
        try:
            answer = enforcement.ask_headcount(request, user, settings, replace=refs)
        except client.HeadcountError:
            raise OfferInvalid(_("Your sessions have changed in the meantime. Please sign in again.")) from None
        if answer is not None and not answer.get("admitted"):
            enforcement.refuse(request, enforcement.central_message(answer, enforcement.roles_of(user, settings)))
    elif settings.mode == "local":
        config = enforcement.pull_if_missing()
        if config is not None:
            wanted = set(refs)
            own = [
                s.key for s in authenticated_sessions(exclude_key=request.session.session_key)
                if s.user_id == str(user.pk) and settings.session_ref(s.key) in wanted
            ]
            roles = enforcement.roles_of(user, settings)
            decision, seen = enforcement.local_admission(config, request.session.session_key, user, roles, own)
            if not decision.admitted:
                enforcement.report_refusal(user)
                enforcement.refuse(request, enforcement.local_message(config, decision, seen, roles))
    _login(request, user, payload["b"])


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em}}
li{{margin:.3em 0}} button{{font-size:1em;padding:.4em 1em}} .error{{color:#a00}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(format_html(PAGE, title=title, body=body), status=status, content_type="text/html; charset=utf-8")


def _failure(message: str, status: int) -> HttpResponse:
    body = format_html('<p class="error">{}</p><p><a href="/">{}</a></p>', message, _("Back to the site"))
    return _page(_("Sign-in not possible"), body, status)


def _describe(offer: Offer, at: dt.datetime) -> str:
    items = format_html_join(
        "",
        "<li>{}{}{}</li>",
        (
            (
                _("last used %(when)s") % {"when": _ago(s.last_activity_at, at)},
                f" ({s.user_agent})" if s.user_agent else "",
                f" {s.ip}" if s.ip else "",
            )
            for s in sorted(offer.sessions, key=lambda s: s.last_activity_at or at, reverse=True)
        ),
    )
    return format_html("<ul>{}</ul>", items)


@never_cache
@ensure_csrf_cookie
@csrf_protect
def replace_view(request: HttpRequest) -> HttpResponse:
    settings = conf.get()
    if not settings.enabled or not settings.self_service:
        return _failure(_("This page is switched off."), 404)
    token = request.POST.get("t") if request.method == "POST" else request.GET.get("t")
    try:
        payload = read_token(request, token)
    except OfferInvalid as exc:
        return _failure(str(exc), 400)
    if request.method == "POST":
        try:
            accept(request, payload)
        except OfferInvalid as exc:
            return _failure(str(exc), 409)
        except (enforcement.SessionLimitRefused, enforcement.SessionLimitWarning) as exc:
            return _failure(exc.message, 403)
        log.info("headcount: a user ended %d own sessions to sign in", len(payload.get("s") or []))
        return HttpResponseRedirect(_redirect_target(payload))
    if request.method != "GET":
        return _failure(_("Method not allowed."), 405)
    at = now()
    refs = [r for r in payload.get("s") or [] if isinstance(r, str)]
    used = list(payload.get("l") or []) + [None] * len(refs)
    sessions = [
        OwnSession(ref, "live", dt.datetime.fromtimestamp(when, dt.timezone.utc) if isinstance(when, int) else None)
        for ref, when in zip(refs, used)
    ]
    offer = Offer(tuple(sessions), "", "")
    body = format_html(
        "<p>{}</p>{}<form method=\"post\"><input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{}\">"
        "<input type=\"hidden\" name=\"t\" value=\"{}\"><button type=\"submit\">{}</button> <a href=\"/\">{}</a></form>",
        offer.summary() + ".",
        _describe(offer, at),
        get_token(request),
        token,
        _("End them and sign in") if len(sessions) != 1 else _("End it and sign in"),
        _("Cancel"),
    )
    return _page(_("You are signed in elsewhere"), body)
