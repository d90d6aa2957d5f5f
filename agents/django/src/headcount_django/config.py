"""The site's effective config as headcount last told it, shared by all worker processes.

The value lives in the Django cache named by ``HEADCOUNT["CACHE"]`` so that a push
received by one worker is seen by the others; use a shared cache (database,
Redis, Memcached) when the site runs several processes.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings

from . import client, conf, shared

log = logging.getLogger("headcount_django")

DEFAULT_MESSAGE = "There are more than {limit} active user sessions. Please try again later."
# no expiry: the last config headcount told us stays valid until it tells us another
FOREVER = None


@dataclass(frozen=True)
class SiteConfig:
    config_version: int
    session_limit: int
    count_mode: str = "active"
    over_limit: str = "reject"
    overage_percent: float = 0
    idle_timeout_seconds: int = 86400
    session_ttl_seconds: int = 1209600
    limit_message: str = DEFAULT_MESSAGE
    reserved_slots: int = 0
    reserved_roles: tuple[str, ...] = ("admin",)
    per_user_limit: int | None = None
    per_user_over_limit: str = "reject"
    # roles whose sessions take no place (service and API accounts); a headcount without the field sends none
    exempt_roles: tuple[str, ...] = ()

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> SiteConfig:
        version = data.get("config_version")
        limit = data.get("session_limit")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError("config_version is missing or not an integer")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError("session_limit is missing or not a whole number >= 0")
        return cls(
            config_version=version,
            session_limit=limit,
            count_mode=str(data.get("count_mode") or "active"),
            over_limit=str(data.get("over_limit") or "reject"),
            overage_percent=float(data.get("overage_percent") or 0),
            idle_timeout_seconds=int(data.get("idle_timeout_seconds") or 86400),
            session_ttl_seconds=int(data.get("session_ttl_seconds") or 1209600),
            limit_message=str(data.get("limit_message") or DEFAULT_MESSAGE),
            reserved_slots=_whole(data.get("reserved_slots"), "reserved_slots") or 0,
            reserved_roles=_roles(data.get("reserved_roles"), "reserved_roles", ("admin",)),
            per_user_limit=_whole(data.get("per_user_limit"), "per_user_limit"),
            per_user_over_limit=str(data.get("per_user_over_limit") or "reject"),
            exempt_roles=_roles(data.get("exempt_roles"), "exempt_roles", ()),
        )

    def __post_init__(self) -> None:
        # the cache keeps the config as a dict of JSON-like values (a list for the roles)
        object.__setattr__(self, "reserved_roles", tuple(self.reserved_roles))
        object.__setattr__(self, "exempt_roles", tuple(self.exempt_roles))

    def reserve_for(self, roles: list[str] | tuple[str, ...]) -> int:
        """Places a sign-in with these roles may not use: ``reserved_slots`` unless a role is reserved."""
        return 0 if set(roles) & set(self.reserved_roles) else self.reserved_slots

    def is_exempt(self, roles: list[str] | tuple[str, ...]) -> bool:
        """Whether a sign-in with these roles is admitted without taking a place (``exempt_roles``)."""
        return bool(set(roles) & set(self.exempt_roles))

    @property
    def admission_ceiling(self) -> int:
        """How many counted sessions may exist: the limit, or more with allowed overage."""
        if self.over_limit == "allow_overage":
            return math.ceil(self.session_limit * (1 + self.overage_percent / 100))
        return self.session_limit

    def message(self) -> str:
        return self.limit_message.replace("{limit}", str(self.session_limit))

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "reserved_roles": list(self.reserved_roles), "exempt_roles": list(self.exempt_roles)}


class NotStored(Exception):
    """The shared cache works but did not keep the config (its writes were dropped)."""


def _whole(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} is not a whole number >= 0")
    return value


def _roles(value: Any, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise ValueError(f"{name} is not a list of strings")
    return tuple(value)


def _cache():
    # the shared cache, or this process's own memory while the shared one fails (``shared``)
    return shared


def _key(name: str) -> str:
    return f"headcount:{conf.get().site}:{name}"


def current() -> SiteConfig | None:
    raw = _cache().get(_key("config"))
    if not isinstance(raw, dict):
        return None
    try:
        return SiteConfig(**raw)
    except TypeError:
        return None


@contextmanager
def _storing() -> Iterator[None]:
    """Makes the check of the held version and the store one step across the site's workers.

    headcount sends a site up to four pushes at once, so two configs can arrive together in
    two workers; without this the older one, checked against what was held before either
    was stored, could be stored last and stay. A holder that died frees it after 10 s; a
    worker that waited 5 s goes on rather than hold up the push.
    """
    cache = _cache()
    key = _key("storing")
    deadline = time.monotonic() + 5
    held = cache.add(key, os.getpid(), 10)
    while not held and time.monotonic() < deadline:
        time.sleep(0.005)
        held = cache.add(key, os.getpid(), 10)
    try:
        yield
    finally:
        if held:
            cache.delete(key)


def apply(data: dict[str, Any], etag: str | None = None) -> bool:
    """Store a config if it is newer than the one we have; True when it was applied."""
    incoming = SiteConfig.from_data(data)
    site = data.get("site")
    if site is not None and site != conf.get().site:
        raise ValueError(f"config for site {site!r}, but this is {conf.get().site!r}")
    with _storing():
        have = current()
        if have is not None and incoming.config_version <= have.config_version:
            if incoming.config_version < have.config_version:
                log.warning(
                    "headcount: ignored config version %d: this site holds the newer version %d",
                    incoming.config_version, have.config_version,
                )
            return False
        cache = _cache()
        if not cache.set(_key("config"), incoming.as_dict(), FOREVER):
            # the webhook answers 500 and headcount sends the push again; a pull tries again later
            raise NotStored(f"the shared cache did not keep config version {incoming.config_version}")
        if etag:
            cache.set(_key("etag"), etag, FOREVER)
        else:
            cache.delete(_key("etag"))
    log.info(
        "headcount: config version %d applied (limit %d, %s, %s)",
        incoming.config_version, incoming.session_limit, incoming.count_mode, incoming.over_limit,
    )
    sync_lino(incoming)
    return True


def pull() -> bool:
    """Fetch the config with If-None-Match; True when a newer one was applied."""
    cache = _cache()
    etag = cache.get(_key("etag")) if current() is not None else None
    response = client.get_config(etag)
    cache.set(_key("pulled"), time.time(), FOREVER)
    if response.status == 304 or not isinstance(response.body, dict):
        return False
    try:
        return apply(response.body, response.headers.get("etag"))
    except NotStored as exc:
        log.warning("headcount: %s; the next pull tries again", exc)
        return False


def pull_newer() -> None:
    """Pull once when an answer of headcount names a newer config than the one held (at most every 10 s)."""
    if _cache().add(_key("pull-newer"), 1, 10):
        pull()


def pull_if_missing() -> SiteConfig | None:
    """At login, when no push has arrived yet, try one pull (at most once a minute)."""
    have = current()
    if have is not None:
        return have
    cache = _cache()
    if not cache.add(_key("pull-attempt"), 1, 60):
        return None
    try:
        pull()
    except (client.HeadcountUnavailable, client.HeadcountError) as exc:
        log.warning("headcount: could not pull the config: %s", exc)
    return current()


# -- Lino ---------------------------------------------------------------------------------

_lino_synced_at = 0.0


def lino_users_plugin():
    site = getattr(django_settings, "SITE", None)
    plugins = getattr(site, "plugins", None)
    users = getattr(plugins, "users", None) if plugins is not None else None
    if users is not None and hasattr(users, "active_sessions_limit"):
        return users
    return None


def sync_lino(config: SiteConfig | None = None, *, throttle: float = 0.0) -> None:
    """In local mode, switch Lino's own sign-in check off: the agent's backend decides.

    Lino's check (``users.active_sessions_limit``) runs before ``authenticate()`` and
    counts every unexpired ``django_session`` row, anonymous ones too, in every count
    mode; headcount counts signed-in sessions only, and leaves dangling ones out with
    ``count_mode: live``. Lino's count therefore never matches headcount's rule for
    sure, and a refusal Lino makes is one the agent could not report. So in local mode
    Lino's limit is ``-1`` (off) in every worker, and ``SessionLimitBackend`` refuses
    with Lino's own words (see ``refusals.text``). ``config`` is unused; it
    is accepted so that callers may pass the config they just applied.
    """
    global _lino_synced_at
    if throttle and time.monotonic() - _lino_synced_at < throttle:
        return
    settings = conf.get()
    if not settings.enabled or settings.mode != "local":
        return
    users = lino_users_plugin()
    if users is None:
        return
    _lino_synced_at = time.monotonic()
    if users.active_sessions_limit != -1:
        log.info("headcount: Lino's own sessions limit (%s) switched off; the agent enforces the limit", users.active_sessions_limit)
        users.active_sessions_limit = -1
