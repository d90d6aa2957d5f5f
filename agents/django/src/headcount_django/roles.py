"""Which roles a user's sessions carry (``ROLES``, ``SERVICE_ACCOUNTS``), and who is exempt.

The roles decide the places ``reserved_slots`` keeps and whether a session takes a
place at all (``exempt_roles``, for service and API accounts); the admission, the
local rule, the administrators' warning and the reported ``session.started`` all ask
here.
"""

from __future__ import annotations

import logging
from typing import Any

from . import conf
from .config import SiteConfig, current
from .sessions import users_with_ids

log = logging.getLogger("headcount_django")


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
    names: list[str] = []
    for role in value:
        role = str(role)
        if role and len(role) <= 64 and role not in names:
            names.append(role)
    return names[:16]


def exempt_user_ids(config: SiteConfig, user_ids: set[str]) -> set[str]:
    """The users among ``user_ids`` whose roles include one of the config's ``exempt_roles`` (one query)."""
    if not config.exempt_roles or not user_ids:
        return set()
    settings = conf.get()
    return {str(user.pk) for user in users_with_ids(user_ids) if config.is_exempt(roles_of(user, settings))}


def exempt_roles_of(user: Any) -> list[str] | None:
    """The user's roles that the site's ``exempt_roles`` name (a service account's), for
    ``session.started``: headcount then lists the session but never counts it. None
    (no ``roles`` in the event) for everyone else, and while the pushed config names
    no exempt role, so that a headcount without the field is never sent it."""
    config = current()
    if user is None or config is None or not config.exempt_roles:
        return None
    roles = [r for r in roles_of(user) if r in config.exempt_roles]
    return roles or None
