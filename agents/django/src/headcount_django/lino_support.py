"""Lino's sign-in (``About.sign_in``) shows the self-service offer as a link and opens its page.

Lino turns a ``Warning`` raised during ``authenticate()`` into an error message that
it escapes, so a link cannot travel in the warning's text. ``install()`` wraps
``SignIn.run_from_ui`` once: a refusal that carries an offer is answered with the
message, the offer's link (HTML, which Lino's React front end shows as such) and
``eval_js`` that opens the offer page. Any other refusal stays Lino's own handling.
Why the user's previous session ended (``notices``) comes first in the answer to the
sign-in, admitted or refused.
Without the wrapper (another Lino version) the warning's text still ends with the
offer's sentence and its URL.
"""

from __future__ import annotations

import json
import logging
from html import escape
from typing import Any

from .adminstatus import warning_for
from .notices import pop_stored
from .refusals import SessionLimitWarning

log = logging.getLogger("headcount_django")

_MARK = "_headcount_wrapped"


def install() -> bool:
    try:
        from lino.modlib.users.actions import SignIn
    except Exception as exc:  # not a Lino site, or a Lino without it
        log.debug("headcount: Lino's SignIn not found (%s); offers are plain text", exc)
        return False
    original = SignIn.run_from_ui
    if getattr(original, _MARK, False):
        return True

    def run_from_ui(self: Any, ar: Any, **kw: Any) -> Any:
        # why the previous session ended (or a sign-in was refused at login()): shown with this answer
        notice = pop_stored(ar.request)
        try:
            result = original(self, ar, **kw)
            told = [escape(notice)] if notice else []
            warning = _admin_warning(ar)
            if warning:
                told.append(escape(warning))
            if told:
                said = ar.response.get("message")
                ar.set_response(message=" ".join([*told, str(said)] if said else told), alert=True)
            return result
        except SessionLimitWarning as refusal:
            # a user whose session was replaced or killed may be refused now: told both at once
            said = [escape(notice)] if notice else []
            said.append(escape(refusal.message))
            offer = refusal.offer
            if offer is None:
                if not notice:
                    raise
                ar.error(None, message=" ".join(said), alert=True)  # as Lino answers a Warning
                return None
            ar.error(None, message=" ".join([*said, offer.html()]), alert=True)
            ar.set_response(eval_js=f"window.location.assign({json.dumps(offer.url)});")
            return None

    def _admin_warning(ar: Any) -> str | None:
        """For a site administrator who just signed in: the sessions in use and the refusals (``adminstatus``)."""
        try:
            user = getattr(ar.request, "user", None)
            if not ar.response.get("success"):
                return None
            return warning_for(user, fresh=True, own_key=ar.request.session.session_key)
        except Exception:
            log.exception("headcount: could not build the administrators' warning")
            return None

    setattr(run_from_ui, _MARK, True)
    run_from_ui.__wrapped__ = original  # type: ignore[attr-defined]  # as functools.wraps would
    SignIn.run_from_ui = run_from_ui
    return True
