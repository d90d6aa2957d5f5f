"""The self-service offer a refused user gets: "You have 2 other sessions (…): end them and sign in".

Made by the mode that refused (``local``, ``central``) when the user's password was
right and ending the user's other sessions would let them in; accepted on the agent's
page (``selfservice``). The link's token is signed with ``SECRET_KEY``
(``django.core.signing``), lives ``OFFER_TTL`` seconds, names the user, the backend
that accepted the password, the sessions (by headcount's hashed id, never the key)
and a nonce kept in the refused browser's (anonymous) session: it works only in the
browser that typed the password.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timesince import timesince
from django.utils.translation import gettext as _, ngettext

from . import conf, rules
from .config import SiteConfig, current
from .sessions import LocalSession, now, parse_rfc3339

SALT = "headcount_django.selfservice"
NONCE_KEY = "_headcount_offer"
# headcount takes at most 100 sessions in one `replace`
MAX_SESSIONS = 100
# headcount's defaults (idle_timeout_seconds) while no config is held
_DEFAULT_CONFIG = SiteConfig(config_version=0, session_limit=0)


@dataclass(frozen=True)
class OwnSession:
    session: str  # headcount's id (the keyed hash)
    state: str  # live | dangling
    last_activity_at: dt.datetime | None
    user_agent: str | None = None
    ip: str | None = None

    @classmethod
    def from_answer(cls, item: Any) -> OwnSession | None:
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
    def from_local(cls, session: LocalSession, at: dt.datetime, settings: conf.AgentSettings) -> OwnSession:
        config = current() or _DEFAULT_CONFIG
        last = session.last_activity(at)
        dangling = rules.is_dangling(last, session.expire_date, at, config.idle_timeout_seconds)
        return cls(settings.session_ref(session.key), "dangling" if dangling else "live", last)


def ago(when: dt.datetime | None, at: dt.datetime) -> str:
    """"4 minutes ago", for when a session was last used."""
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
        return [ago(s.last_activity_at, at) for s in ordered[:most]]

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
