"""What the agent reads from and does to the site's own session store (``django_session``).

Only database-backed session engines (``db`` and ``cached_db`` or subclasses) keep a
table the agent can count, snapshot and kill in.

``adopt_key`` is the one place where the agent uses Django's private session API;
``tests/test_headcount.py`` checks it against the Django the suite runs, with both
engines.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, SessionBase
from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.contrib.sessions.base_session import AbstractBaseSession
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.crypto import get_random_string

from . import conf

log = logging.getLogger("headcount_django")

# Stored in the session at login so that snapshots can tell headcount when it started.
STARTED_KEY = "_headcount_started"


def store_class() -> type[DbSessionStore]:
    engine = import_module(settings.SESSION_ENGINE)
    store = engine.SessionStore
    if not (isinstance(store, type) and issubclass(store, DbSessionStore)):
        raise ImproperlyConfigured(
            f"headcount_django needs a database-backed SESSION_ENGINE "
            f"(django.contrib.sessions.backends.db or cached_db), not {settings.SESSION_ENGINE!r}"
        )
    return store


def session_model() -> type[AbstractBaseSession]:
    return store_class().get_model_class()


def new_key() -> str:
    """A fresh session key that no row has, as Django chooses one (32 of its key characters).

    Central mode chooses the key before ``login()`` so that headcount's admission and the
    session carry the same id from the first second (``adopt_key`` gives it to the session).
    """
    store = store_class()()
    while True:
        key = get_random_string(32, VALID_KEY_CHARS)
        if not store.exists(key):
            return key


def adopt_key(session: SessionBase, key: str) -> None:
    """Give ``session`` the key ``key`` (from ``new_key``); the caller saves it with ``must_create``.

    Django has no public way to choose a session's key: this sets the private
    ``_session_key``, whose setter validates the key and silently drops one it finds
    invalid, so a Django that changed either is caught here, loudly, instead of
    sessions silently getting another id than the one headcount admitted.
    """
    session._session_key = key  # private: see the docstring
    if session.session_key != key:
        raise RuntimeError("this Django did not take the session key the agent chose (headcount_django.sessions.adopt_key)")


def now() -> dt.datetime:
    """The current time, aware, in UTC (whatever USE_TZ says)."""
    return dt.datetime.now(dt.timezone.utc)


def db_now() -> dt.datetime:
    """The current time in the form the session table compares with (naive local time under USE_TZ = False)."""
    return timezone.now()


def to_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime.

    Naive values are local time in ``settings.TIME_ZONE``: that is what Django stores
    under ``USE_TZ = False`` (``expire_date``) and what Lino writes into
    ``session["last_activity"]`` (``datetime.now()``, in the process time zone that
    Django sets from ``TIME_ZONE``) under either setting.
    """
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value.astimezone(dt.timezone.utc)


def rfc3339(value: dt.datetime) -> str:
    value = to_utc(value)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(value: str) -> dt.datetime | None:
    """An RFC 3339 text as an aware UTC datetime; a text without offset is UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError, AttributeError):
        return None
    return parsed.astimezone(dt.timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def parse_local(value: Any) -> dt.datetime | None:
    """An ISO text that may be naive local time (Lino's ``last_activity``), as aware UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        return to_utc(parsed)
    except (ValueError, OverflowError):
        return None


def decode(session_data: str) -> dict[str, Any]:
    try:
        return store_class()().decode(session_data)
    except Exception:  # a corrupt row must not break reporting
        return {}


def user_id_of(data: dict[str, Any]) -> str | None:
    value = data.get(SESSION_KEY)
    return str(value) if value is not None else None


# Lino records the time of the last request of a signed-in session here (naive local time).
LINO_ACTIVITY_KEY = "last_activity"


@dataclass
class LocalSession:
    key: str
    user_id: str
    expire_date: dt.datetime  # aware, UTC
    data: dict[str, Any]

    def last_activity(self, current: dt.datetime) -> dt.datetime:
        """When the session was last used, as far as the site knows (aware UTC, never after ``current``).

        Every save moves ``expire_date`` to save time + ``SESSION_COOKIE_AGE``, so that
        estimates the last save, which is also the last activity the agent reported.
        The estimate is wrong for a session given another expiry (``set_expiry``) or
        saved under another ``SESSION_COOKIE_AGE``: one that lies in the future is
        dropped, and Lino's own ``last_activity`` and the start of the session are lower
        bounds that always hold.
        """
        candidates = []
        estimate = self.expire_date - dt.timedelta(seconds=settings.SESSION_COOKIE_AGE)
        if estimate <= current + dt.timedelta(seconds=5):
            candidates.append(estimate)
        for value in (parse_local(self.data.get(LINO_ACTIVITY_KEY)), self.started_at()):
            if value is not None:
                candidates.append(value)
        if not candidates:
            return current
        return min(max(candidates), current)

    def started_at(self) -> dt.datetime | None:
        value = self.data.get(STARTED_KEY)
        return parse_rfc3339(value) if isinstance(value, str) else None


def is_expired(expire_date: dt.datetime | None, current: dt.datetime | None = None) -> bool:
    """Whether a row's ``expire_date`` (naive or aware, as the table holds it) has passed."""
    return expire_date is not None and to_utc(expire_date) <= (current or now())


def authenticated_sessions(exclude_key: str | None = None) -> Iterator[LocalSession]:
    """Sessions that are not expired and belong to a signed-in user (anonymous rows are left out)."""
    rows = (
        session_model()
        .objects.filter(expire_date__gt=db_now())
        .values_list("session_key", "session_data", "expire_date")
        .order_by()
    )
    for key, session_data, expire_date in rows.iterator(chunk_size=500):
        if key == exclude_key:
            continue
        data = decode(session_data)
        user_id = user_id_of(data)
        if user_id is not None:
            yield LocalSession(key, user_id, to_utc(expire_date), data)


def users_with_ids(user_ids: Iterable[str]) -> list[Any]:
    """The site's users whose ids (as a session stores them, text) are among ``user_ids``, in one query."""
    ids = sorted(set(user_ids))
    if not ids:
        return []
    model = get_user_model()
    pk_field = model._meta.pk
    wanted: list[Any]
    try:
        wanted = [pk_field.to_python(i) for i in ids]
    except Exception:  # not ids of this user model: let the query find nobody
        wanted = ids
    return list(model._default_manager.filter(pk__in=wanted))


def user_refs(user_ids: Iterable[str]) -> dict[str, str | None]:
    """Map user ids to the configured user reference, in one query."""
    settings_ = conf.get()
    return {str(user.pk): user_reference(user, settings_) for user in users_with_ids(user_ids)}


def user_reference(user: Any, settings_: conf.AgentSettings | None = None) -> str | None:
    settings_ = settings_ or conf.get()
    try:
        value = settings_.user_ref(user)
    except Exception:
        log.exception("headcount: USER_REF failed for user %s", getattr(user, "pk", None))
        return None
    if value is None:
        return None
    value = "".join(ch for ch in str(value) if ch.isprintable())
    return value[:256] or None


def keys_for_refs(refs: Iterable[str]) -> list[str]:
    """The session keys whose hashed id is one of ``refs`` (hashing the stored keys)."""
    wanted = set(refs)
    if not wanted:
        return []
    settings_ = conf.get()
    found: list[str] = []
    keys = session_model().objects.values_list("session_key", flat=True).order_by()
    for key in keys.iterator(chunk_size=2000):
        if settings_.session_ref(key) in wanted:
            found.append(key)
            if len(found) == len(wanted):
                break
    return found


def delete_keys(keys: Iterable[str]) -> int:
    """Delete sessions through the session engine, so cached_db also drops its cache entry."""
    store = store_class()
    count = 0
    for key in keys:
        store(session_key=key).delete()
        count += 1
    return count
