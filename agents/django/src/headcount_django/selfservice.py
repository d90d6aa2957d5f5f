"""Self-service at the limit: the page where a refused user ends their own sessions and signs in.

A refusal may carry an offer (``offers``) linking to ``/headcount/replace/?t=<token>``.
The page checks the token (signed, ``OFFER_TTL``, this browser's nonce), shows the
sessions and a form (POST, CSRF-protected); accepting asks the admission again with
``replace`` (central: headcount ends them atomically with the admission, reason
``replaced``) or, in local mode, deletes the user's rows (reported as ``replaced``) and
decides again, then signs the user in and redirects.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth import load_backend
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie

from . import central, client, conf, local
from .config import pull_if_missing
from .enforcement import DECIDED_ATTR
from .offers import MAX_SESSIONS, NONCE_KEY, SALT, Offer, OwnSession, ago
from .refusals import SessionLimitRefused, SessionLimitWarning, refuse, report_refusal
from .roles import roles_of
from .sessions import authenticated_sessions, now

log = logging.getLogger("headcount_django")


class OfferInvalid(Exception):
    pass


def read_token(request: HttpRequest, token: str | None) -> dict[str, Any]:
    settings = conf.get()
    if not token:
        raise OfferInvalid(_("This link is incomplete. Please sign in again."))
    try:
        payload = signing.loads(token, salt=SALT, max_age=dt.timedelta(seconds=settings.offer_ttl))
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
    if not isinstance(path, str) or path not in getattr(django_settings, "AUTHENTICATION_BACKENDS", []):
        raise OfferInvalid(_("This link is not valid. Please sign in again."))
    user = load_backend(path).get_user(payload.get("u"))
    if user is None:
        raise OfferInvalid(_("This account cannot sign in. Please sign in again."))
    return user


def _login(request: HttpRequest, user: Any, backend: str) -> None:
    request.session.pop(NONCE_KEY, None)
    setattr(request, DECIDED_ATTR, True)  # decided above
    if conf.is_lino_site():
        from lino.core import auth

        auth.login(request, user, backend=backend)
    else:
        from django.contrib.auth import login

        login(request, user, backend=backend)


def _redirect_target(payload: dict[str, Any]) -> str:
    nxt = payload.get("next")
    if isinstance(nxt, str) and nxt:
        return nxt
    if conf.is_lino_site():
        return "/"
    return str(getattr(django_settings, "LOGIN_REDIRECT_URL", "/") or "/")


def accept(request: HttpRequest, payload: dict[str, Any]) -> None:
    """End the offered sessions and admit this login (raises OfferInvalid or a refusal)."""
    settings = conf.get()
    user = _user(payload)
    refs = [r for r in payload.get("s") or [] if isinstance(r, str)][:MAX_SESSIONS]
    if settings.mode == "central":
        try:
            answer = central.ask_headcount(request, user, settings, replace=refs)
        except client.HeadcountError:
            raise OfferInvalid(_("Your sessions have changed in the meantime. Please sign in again.")) from None
        if answer is not None and not answer.get("admitted"):
            refuse(request, central.message(answer, roles_of(user, settings)))
    elif settings.mode == "local":
        config = pull_if_missing()
        if config is not None:
            wanted = set(refs)
            own = [
                s.key for s in authenticated_sessions(exclude_key=request.session.session_key)
                if s.user_id == str(user.pk) and settings.session_ref(s.key) in wanted
            ]
            roles = roles_of(user, settings)
            decision, seen = local.admission(config, request.session.session_key, user, roles, own)
            if not decision.admitted:
                report_refusal(user)
                refuse(request, local.message(config, decision, seen, roles))
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
                _("last used %(when)s") % {"when": ago(s.last_activity_at, at)},
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
        except (SessionLimitRefused, SessionLimitWarning) as exc:
            return _failure(exc.message, 403)
        log.info("headcount: a user ended %d own sessions to sign in", len(payload.get("s") or []))
        return HttpResponseRedirect(_redirect_target(payload))
    if request.method != "GET":
        return _failure(_("Method not allowed."), 405)
    at = now()
    refs = [r for r in payload.get("s") or [] if isinstance(r, str)]
    # padded: a token without the times still lists every session ("at an unknown time")
    used = list(payload.get("l") or []) + [None] * len(refs)
    sessions = [
        OwnSession(ref, "live", dt.datetime.fromtimestamp(when, dt.timezone.utc) if isinstance(when, int) else None)
        for ref, when in zip(refs, used, strict=False)
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
