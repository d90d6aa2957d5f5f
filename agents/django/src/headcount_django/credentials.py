"""Checking a sign-in's credentials with the site's own backends, before deciding it.

The agent's backend never signs anybody in; when it has to know who signs in (reserved
places, the per-user cap, exempt accounts, central mode, a self-service offer) or
whether the password was right at all (a wrong one must still read as wrong), it asks
the backends after it here.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth import get_backends
from django.core.exceptions import PermissionDenied

# a backend with this class attribute set is the agent's own and is never asked here
GATE_ATTR = "headcount_gate"
# set on the request while the backends are asked: the agent's backend then stays out of it
CHECKING_ATTR = "_headcount_checking"


def is_checking(request: Any) -> bool:
    return bool(getattr(request, CHECKING_ATTR, False))


def check_credentials(request: Any, credentials: dict[str, Any]) -> tuple[Any, str | None]:
    """Ask the site's other backends whether the credentials are valid: (the user, its backend's path) or (None, None)."""
    setattr(request, CHECKING_ATTR, True)
    try:
        paths = list(getattr(django_settings, "AUTHENTICATION_BACKENDS", []))
        for index, backend in enumerate(get_backends()):
            if getattr(backend, GATE_ATTR, False):
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
        setattr(request, CHECKING_ATTR, False)
