"""The agent's settings, read once from ``settings.HEADCOUNT`` and checked.

Every problem raises ``ImproperlyConfigured`` with a message that names the key,
so a typo shows up when the site starts rather than when the first user logs in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

MODES = ("off", "local", "central")
UNREACHABLE_CHOICES = ("admit", "refuse", "open", "closed")
# "open" and "closed" are other words for the same choice
UNREACHABLE_ALIASES = {"open": "admit", "closed": "refuse"}
REFUSAL_CHOICES = ("auto", "permission_denied", "warning")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

DEFAULTS: dict[str, Any] = {
    "ENABLED": True,
    "URL": None,
    "SITE": None,
    "TOKEN": None,
    "WEBHOOK_SECRET": None,
    "MODE": "off",
    "CENTRAL_UNREACHABLE": "admit",
    "OFFLINE_GRACE": 86400,
    "UNREACHABLE_MESSAGE": "Sign-in is not possible right now. Please try again later.",
    "REFUSAL": "auto",
    "MESSAGES": None,
    "USER_REF": "username",
    "ROLES": None,
    "SERVICE_ACCOUNTS": None,
    "SERVICE_ROLE": "service",
    "SELF_SERVICE": True,
    "OFFER_TTL": 300,
    "SESSION_HASH_KEY": None,
    "ACTIVITY_INTERVAL": 60,
    "SNAPSHOT_INTERVAL": 600,
    "SNAPSHOT_GRACE": 10,
    "CONFIG_INTERVAL": 300,
    "FLUSH_INTERVAL": 1.0,
    "BATCH_SIZE": 500,
    "QUEUE_SIZE": 10000,
    "TIMEOUT": 5.0,
    "ADMISSION_TIMEOUT": 3.0,
    "RETRY_MAX_DELAY": 60.0,
    "SHUTDOWN_TIMEOUT": 5.0,
    "WEBHOOK_TOLERANCE": 300,
    "CACHE": "default",
    "REPORT_IP": True,
    "IP_META_KEY": "REMOTE_ADDR",
    "REPORT_USER_AGENT": True,
    "STATUS_URL": None,
}


@dataclass(frozen=True)
class AgentSettings:
    enabled: bool
    url: str
    site: str
    token: str = field(repr=False)
    webhook_keys: tuple[bytes, ...] = field(repr=False)
    mode: str
    central_unreachable: str
    unreachable_message: str
    offline_grace: float
    refusal: str
    messages: dict[str, str]
    user_ref: Callable[[Any], str | None] = field(repr=False)
    roles: Callable[[Any], Any] = field(repr=False)
    service_account: Callable[[Any], bool] = field(repr=False)
    service_role: str
    self_service: bool
    offer_ttl: float
    session_hash_key: bytes = field(repr=False)
    activity_interval: float
    snapshot_interval: float
    snapshot_grace: float
    config_interval: float
    flush_interval: float
    batch_size: int
    queue_size: int
    timeout: float
    admission_timeout: float
    retry_max_delay: float
    shutdown_timeout: float
    webhook_tolerance: float
    cache_alias: str
    report_ip: bool
    ip_meta_key: str
    report_user_agent: bool
    status_url: str = ""

    def session_ref(self, session_key: str) -> str:
        """The id headcount knows a session by: a keyed hash, never the key itself."""
        return hmac.new(self.session_hash_key, session_key.encode(), hashlib.sha256).hexdigest()

    def site_path(self, suffix: str) -> str:
        return f"{self.url}/v1/sites/{self.site}/{suffix}"


_lock = threading.Lock()
_cached: AgentSettings | None = None


def get() -> AgentSettings:
    """The checked settings; computed once per process (and again after a settings change)."""
    global _cached
    current = _cached
    if current is None:
        with _lock:
            if _cached is None:
                _cached = load(getattr(django_settings, "HEADCOUNT", None))
            current = _cached
    return current


def reset() -> None:
    global _cached
    with _lock:
        _cached = None


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    if setting in ("HEADCOUNT", "SECRET_KEY"):
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="headcount_django.conf")


def _fail(key: str, message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"HEADCOUNT[{key!r}]: {message}")


def _number(raw: dict[str, Any], key: str, *, minimum: float, integer: bool = False) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(key, f"must be a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise _fail(key, f"must be a whole number, got {value!r}")
    if value < minimum:
        raise _fail(key, f"must be at least {minimum}, got {value!r}")
    return value


def _choice(raw: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = raw[key]
    if value not in choices:
        raise _fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, "is required and must be a non-empty string")
    return value.strip()


def parse_webhook_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret: the base64-decoded part after the prefix."""
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise ValueError("must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the part after 'whsec_' is not valid base64") from exc
    if not key:
        raise ValueError("the part after 'whsec_' is empty")
    return key


def _webhook_keys(raw: dict[str, Any]) -> tuple[bytes, ...]:
    value = raw["WEBHOOK_SECRET"]
    secrets = [value] if isinstance(value, str) else value
    if not isinstance(secrets, (list, tuple)) or not secrets:
        raise _fail(
            "WEBHOOK_SECRET",
            "is required: the whsec_... secret headcount returned when the site was created "
            "(a list of secrets is accepted while rotating)",
        )
    keys = []
    for secret in secrets:
        try:
            keys.append(parse_webhook_secret(secret))
        except ValueError as exc:
            raise _fail("WEBHOOK_SECRET", str(exc)) from None
    return tuple(keys)


def _user_ref(raw: dict[str, Any]) -> Callable[[Any], str | None]:
    value = raw["USER_REF"]
    if callable(value):
        return value
    if not isinstance(value, str) or not value:
        raise _fail("USER_REF", "must be an attribute name, a dotted path to a callable, or a callable")
    if "." in value:
        try:
            func = import_string(value)
        except ImportError as exc:
            raise _fail("USER_REF", f"cannot import {value!r}: {exc}") from None
        if not callable(func):
            raise _fail("USER_REF", f"{value!r} is not callable")
        return func
    if value == "username":
        return lambda user: user.get_username()
    attribute = value
    return lambda user: getattr(user, attribute, None)


def default_roles(user: Any) -> list[str]:
    """``["admin"]`` for a Django superuser or a Lino site administrator, else ``[]``."""
    if getattr(user, "is_superuser", False) is True:
        return ["admin"]
    user_type = getattr(user, "user_type", None)
    if user_type is not None and hasattr(user_type, "has_required_roles"):
        try:
            from lino.core.roles import SiteAdmin
        except ImportError:
            return []
        if user_type.has_required_roles([SiteAdmin]):
            return ["admin"]
    return []


def _roles(raw: dict[str, Any]) -> Callable[[Any], Any]:
    value = raw["ROLES"]
    if value is None:
        return default_roles
    if callable(value):
        return value
    if not isinstance(value, str) or "." not in value:
        raise _fail("ROLES", "must be a dotted path to a callable, or a callable, taking the user and returning role names")
    try:
        func = import_string(value)
    except ImportError as exc:
        raise _fail("ROLES", f"cannot import {value!r}: {exc}") from None
    if not callable(func):
        raise _fail("ROLES", f"{value!r} is not callable")
    return func


def _no_service_accounts(user: Any) -> bool:
    return False


def _service_accounts(raw: dict[str, Any]) -> Callable[[Any], bool]:
    """Which users are service or API accounts: usernames, or a function of the user."""
    value = raw["SERVICE_ACCOUNTS"]
    if value is None:
        return _no_service_accounts
    if isinstance(value, (list, tuple, set, frozenset)):
        if not all(isinstance(name, str) and name for name in value):
            raise _fail("SERVICE_ACCOUNTS", "a list must hold usernames (non-empty strings)")
        names = frozenset(value)

        def listed(user: Any) -> bool:
            get_username = getattr(user, "get_username", None)
            name = get_username() if callable(get_username) else getattr(user, "username", None)
            return name in names

        return listed
    if callable(value):
        return value
    if not isinstance(value, str) or "." not in value:
        raise _fail(
            "SERVICE_ACCOUNTS",
            "must be a list of usernames, a dotted path to a callable, or a callable, taking the user and returning True for a service account",
        )
    try:
        func = import_string(value)
    except ImportError as exc:
        raise _fail("SERVICE_ACCOUNTS", f"cannot import {value!r}: {exc}") from None
    if not callable(func):
        raise _fail("SERVICE_ACCOUNTS", f"{value!r} is not callable")
    return func


def _service_role(raw: dict[str, Any]) -> str:
    value = raw["SERVICE_ROLE"]
    if not isinstance(value, str) or not value or len(value) > 64:
        raise _fail("SERVICE_ROLE", "must be a role name of 1 to 64 characters")
    return value


# the kinds of refusal a site may give its own text for (see ``refusals``)
MESSAGE_KINDS = ("limit", "user_limit", "reserved", "pool")


def _messages(raw: dict[str, Any]) -> dict[str, str]:
    value = raw["MESSAGES"]
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail("MESSAGES", f"must be a dict with keys among {', '.join(MESSAGE_KINDS)}")
    unknown = sorted(set(value) - set(MESSAGE_KINDS))
    if unknown:
        raise _fail("MESSAGES", f"unknown kinds {', '.join(map(str, unknown))} (known: {', '.join(MESSAGE_KINDS)})")
    for kind, text in value.items():
        if not isinstance(text, str) or not text.strip():
            raise _fail("MESSAGES", f"the text for {kind!r} must be a non-empty string")
    return dict(value)


def _hash_key(raw: dict[str, Any]) -> bytes:
    value = raw["SESSION_HASH_KEY"]
    if value is None:
        secret_key = getattr(django_settings, "SECRET_KEY", "")
        if not secret_key:
            raise _fail("SESSION_HASH_KEY", "is not set and SECRET_KEY is empty")
        return hmac.new(secret_key.encode(), b"headcount-django session reference", hashlib.sha256).digest()
    if isinstance(value, str) and value:
        return value.encode()
    if isinstance(value, bytes) and value:
        return value
    raise _fail("SESSION_HASH_KEY", "must be a non-empty string")


def _batch_size(raw: dict[str, Any]) -> int:
    value = int(_number(raw, "BATCH_SIZE", minimum=1, integer=True))
    if value > 1000:
        raise _fail("BATCH_SIZE", "headcount takes at most 1000 events per batch")
    return value


def _url(raw: dict[str, Any]) -> str:
    value = _text(raw, "URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _fail("URL", f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _status_url(raw: dict[str, Any], url: str, site: str) -> str:
    """Where the site's administrators look at its sessions and refusals: headcount's page
    of the site unless set; "" for nowhere."""
    value = raw["STATUS_URL"]
    if value is None:
        return f"{url}/ui/#/sites/{site}"
    if not isinstance(value, str):
        raise _fail("STATUS_URL", "must be a URL or an empty string")
    if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
        raise _fail("STATUS_URL", f"must be an http:// or https:// URL (or empty), got {value!r}")
    return value


def load(raw: Any) -> AgentSettings:
    if raw is None:
        raise ImproperlyConfigured(
            "headcount_django is installed but settings.HEADCOUNT is missing; "
            "set at least URL, SITE, TOKEN and WEBHOOK_SECRET (or ENABLED: False)"
        )
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("settings.HEADCOUNT must be a dict")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"settings.HEADCOUNT has unknown keys: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(DEFAULTS))})"
        )
    merged = {**DEFAULTS, **raw}
    enabled = merged["ENABLED"]
    if not isinstance(enabled, bool):
        raise _fail("ENABLED", "must be True or False")
    if not enabled:
        # A disabled agent still needs nothing else: sites can keep the app installed.
        merged = {
            **merged,
            "URL": merged["URL"] or "http://disabled.invalid",
            "SITE": merged["SITE"] or "disabled",
            "TOKEN": merged["TOKEN"] or "-",
            "WEBHOOK_SECRET": merged["WEBHOOK_SECRET"] or "whsec_ZGlzYWJsZWQ=",
            "MODE": "off",
        }
    site = _text(merged, "SITE")
    if not SLUG_RE.match(site):
        raise _fail("SITE", f"{site!r} is not a headcount slug (lower-case letters, digits and '-')")
    cache_alias = merged["CACHE"]
    if cache_alias not in getattr(django_settings, "CACHES", {"default": None}):
        raise _fail("CACHE", f"{cache_alias!r} is not in settings.CACHES")
    for key in ("REPORT_IP", "REPORT_USER_AGENT", "SELF_SERVICE"):
        if not isinstance(merged[key], bool):
            raise _fail(key, "must be True or False")
    return AgentSettings(
        enabled=enabled,
        url=_url(merged),
        site=site,
        token=_text(merged, "TOKEN"),
        webhook_keys=_webhook_keys(merged),
        mode=_choice(merged, "MODE", MODES),
        central_unreachable=UNREACHABLE_ALIASES.get(
            merged["CENTRAL_UNREACHABLE"], _choice(merged, "CENTRAL_UNREACHABLE", UNREACHABLE_CHOICES)
        ),
        unreachable_message=_text(merged, "UNREACHABLE_MESSAGE"),
        offline_grace=_number(merged, "OFFLINE_GRACE", minimum=0),
        refusal=_choice(merged, "REFUSAL", REFUSAL_CHOICES),
        messages=_messages(merged),
        user_ref=_user_ref(merged),
        roles=_roles(merged),
        service_account=_service_accounts(merged),
        service_role=_service_role(merged),
        self_service=merged["SELF_SERVICE"],
        offer_ttl=_number(merged, "OFFER_TTL", minimum=10),
        session_hash_key=_hash_key(merged),
        activity_interval=_number(merged, "ACTIVITY_INTERVAL", minimum=0),
        snapshot_interval=_number(merged, "SNAPSHOT_INTERVAL", minimum=0),
        snapshot_grace=_number(merged, "SNAPSHOT_GRACE", minimum=0),
        config_interval=_number(merged, "CONFIG_INTERVAL", minimum=0),
        flush_interval=_number(merged, "FLUSH_INTERVAL", minimum=0),
        batch_size=_batch_size(merged),
        queue_size=int(_number(merged, "QUEUE_SIZE", minimum=1, integer=True)),
        timeout=_number(merged, "TIMEOUT", minimum=0.1),
        admission_timeout=_number(merged, "ADMISSION_TIMEOUT", minimum=0.1),
        retry_max_delay=_number(merged, "RETRY_MAX_DELAY", minimum=0.1),
        shutdown_timeout=_number(merged, "SHUTDOWN_TIMEOUT", minimum=0),
        webhook_tolerance=_number(merged, "WEBHOOK_TOLERANCE", minimum=1),
        cache_alias=cache_alias,
        report_ip=merged["REPORT_IP"],
        ip_meta_key=_text(merged, "IP_META_KEY"),
        report_user_agent=merged["REPORT_USER_AGENT"],
        status_url=_status_url(merged, _url(merged), site),
    )


def is_lino_site() -> bool:
    """Whether this is a Lino site (Lino's sign-in, its messages, its ``Warning`` for refusals).

    Asked each time, not cached: Lino is imported after the agent's settings are read.
    """
    return "lino" in sys.modules and hasattr(django_settings, "SITE")
