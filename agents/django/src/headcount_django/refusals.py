"""Refusing a sign-in: how the refusal is raised, what the user is told, what headcount learns.

``refuse()`` stops a sign-in (``authenticate()``) with ``SessionLimitRefused`` (a
``PermissionDenied``: Django's ``authenticate()`` returns None) or, in a Lino site,
``SessionLimitWarning`` (Lino shows a ``Warning`` to the user as it shows its own limit
message); ``undo_login()`` takes back a ``login()`` that was decided only there. Both
leave the message and the self-service offer on the request (``message_for``,
``offer_for``) and count the refusal for the administrators' warning;
``report_refusal()`` tells headcount about a refusal the site made itself.

What a refused user is told: one text per reason of the refusal.

headcount's admission answer says why in its ``outcome``; the local rule says it in
its decision. Each reason has its own default text, and a site may give its own
in ``HEADCOUNT["MESSAGES"]``:

- ``limit``: the site's sessions limit is reached. Default: the site's
  ``limit_message`` from headcount; with headcount's default that is Lino's own
  sentence, in the user's language ("There are more than 20 active user sessions.
  Please try again later.").
- ``user_limit``: the user holds as many sessions as one user may (``per_user_limit``).
- ``reserved``: places are left, but they are kept for site administrators
  (``reserved_slots``) and the user is not one.
- ``pool``: the sessions limit shared by the tenant's sites is reached (central mode).

Texts may name ``{limit}`` (the site's limit), ``{per_user_limit}`` and ``{reserved}``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext

from . import conf, notices, rules, sender
from .adminstatus import note_refusal
from .config import DEFAULT_MESSAGE, SiteConfig
from .events import REFUSED
from .offers import Offer
from .sessions import user_reference

log = logging.getLogger("headcount_django")

LIMIT = "limit"
USER_LIMIT = "user_limit"
RESERVED = "reserved"
POOL = "pool"

# Lino's words where Lino has them (its translations apply); the first sentences of
# the others are the agent's own
TRY_LATER = "Please try again later."
LINO_LIMIT = "There are more than {} active user sessions."
SIGN_OUT_ELSEWHERE = "Please sign out elsewhere first."
DEFAULTS = {
    USER_LIMIT: ("You are signed in on this site as often as one user may be ({per_user_limit} at a time).", SIGN_OUT_ELSEWHERE),
    RESERVED: ("The free places on this site are kept for its administrators.", TRY_LATER),
    POOL: ("All the sessions your organisation may have on its sites are in use.", TRY_LATER),
}


# on the request: the refusal's message and offer, for the login view (``message_for``, ``offer_for``)
REFUSAL_ATTR = "headcount_refusal"
OFFER_ATTR = "headcount_offer"


class SessionLimitRefused(PermissionDenied):
    def __init__(self, message: str, offer: Offer | None = None):
        super().__init__(message)
        self.message = message
        self.offer = offer


class SessionLimitWarning(Warning):
    """A refusal in a Lino site; ``str()`` is the message (and, with an offer, its plain text and link)."""

    def __init__(self, message: str, offer: Offer | None = None):
        text = message if offer is None else f"{message} {offer.text()} {offer.absolute_url}"
        super().__init__(text)
        self.message = message
        self.offer = offer


def refuse(request: Any, message: str, offer: Offer | None = None, at_limit: bool = True) -> None:
    """Stop the sign-in with ``message``; ``at_limit``: a refusal by the limit (not headcount being unreachable)."""
    if at_limit:
        note_refusal()
    if request is not None:
        setattr(request, REFUSAL_ATTR, message)
        setattr(request, OFFER_ATTR, offer)
    settings = conf.get()
    if settings.refusal == "warning" or (settings.refusal == "auto" and conf.is_lino_site()):
        raise SessionLimitWarning(message, offer)
    raise SessionLimitRefused(message, offer)


def undo_login(request: Any, message: str, count: bool = True) -> None:
    """Take back a login() the limit refused: an empty session, and the user told at the next request."""
    if count:
        note_refusal()
    setattr(request, REFUSAL_ATTR, message)
    session = request.session
    session.flush()
    notices.remember_refusal(request, message)
    try:
        if conf.is_lino_site():
            from lino.core.auth import get_user
        else:
            from django.contrib.auth import get_user
        request.user = get_user(request)
    except Exception:
        log.debug("headcount: could not reset request.user after a refused login", exc_info=True)


def report_refusal(user: Any) -> None:
    """Tell headcount about a refusal the site made itself (local mode), so it counts as a denial."""
    settings = conf.get()
    reference = user_reference(user, settings) if user is not None else None
    sender.enqueue(sender.make_event(REFUSED, None, user=reference))


def message_for(request: Any) -> str | None:
    """The refusal message of this request's last login attempt, if the limit refused it."""
    return getattr(request, REFUSAL_ATTR, None)


def offer_for(request: Any) -> Offer | None:
    """The self-service offer (``offers.Offer``) made to this request's refused login, if any."""
    return getattr(request, OFFER_ATTR, None)


def kind_of(outcome: str, counted: int, ceiling: int, reserve: int) -> str:
    """The reason of a refusal: its outcome, and for ``limit_reached`` whether only reserved places were left."""
    if outcome == rules.USER_LIMIT_REACHED:
        return USER_LIMIT
    if outcome == rules.POOL_LIMIT_REACHED:
        return POOL
    if reserve > 0 and counted < ceiling:
        return RESERVED
    return LIMIT


def text(kind: str, config: SiteConfig | None, *, limit: int | None = None, site_message: str | None = None) -> str:
    """The text for one kind of refusal, with the site's own text when it set one.

    ``site_message`` is what headcount sent (its answer's ``message``: the site's
    ``limit_message``); ``config`` is the config the agent holds, when it holds one.
    """
    settings = conf.get()
    if limit is None:
        limit = config.session_limit if config is not None else 0
    values: dict[str, Any] = {
        "limit": limit,
        "per_user_limit": config.per_user_limit if config is not None and config.per_user_limit is not None else "",
        "reserved": config.reserved_slots if config is not None else "",
    }
    own = settings.messages.get(kind)
    if own:
        return _fill(own, values)
    if kind == LIMIT:
        template = site_message or (config.limit_message if config is not None else DEFAULT_MESSAGE)
        if template in (DEFAULT_MESSAGE, DEFAULT_MESSAGE.replace("{limit}", str(limit))):
            # headcount's default is Lino's sentence: say it in the user's language
            return f"{gettext(LINO_LIMIT).format(limit)} {gettext(TRY_LATER)}"
        return _fill(template, values)
    first, second = DEFAULTS[kind]
    return f"{_fill(gettext(first), values)} {gettext(second)}"


def _fill(template: str, values: dict[str, Any]) -> str:
    result = template
    for name, value in values.items():
        result = result.replace("{" + name + "}", str(value))
    return result
