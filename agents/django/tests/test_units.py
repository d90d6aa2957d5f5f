"""Pieces of the agent that need no headcount process."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from headcount_django import conf, sender
from headcount_django.config import SiteConfig
from headcount_django.webhooks import WebhookVerificationError, verify

from conftest import sign_webhook

VALID = {
    "URL": "https://headcount.example.test/",
    "SITE": "my-site",
    "TOKEN": "token",
    "WEBHOOK_SECRET": "whsec_c2VjcmV0LWtleQ==",
}


def test_settings_are_checked():
    loaded = conf.load(dict(VALID, MODE="central", CENTRAL_UNREACHABLE="refuse"))
    assert loaded.url == "https://headcount.example.test"
    assert loaded.webhook_keys == (b"secret-key",)
    assert loaded.mode == "central"
    assert "token" not in repr(loaded)


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        ({"URL": None}, "URL"),
        ({"URL": "ftp://x"}, "URL"),
        ({"SITE": "Not A Slug"}, "SITE"),
        ({"TOKEN": ""}, "TOKEN"),
        ({"WEBHOOK_SECRET": "secret"}, "whsec_"),
        ({"WEBHOOK_SECRET": "whsec_***"}, "base64"),
        ({"MODE": "strict"}, "MODE"),
        ({"CENTRAL_UNREACHABLE": "maybe"}, "CENTRAL_UNREACHABLE"),
        ({"ACTIVITY_INTERVAL": -1}, "ACTIVITY_INTERVAL"),
        ({"BATCH_SIZE": 5000}, "BATCH_SIZE"),
        ({"USER_REF": "no.such.module.func"}, "USER_REF"),
        ({"CACHE": "nope"}, "CACHE"),
        ({"SITE_SLUG": "typo"}, "unknown keys"),
        ({"MESSAGES": {"site_limit": "x"}}, "MESSAGES"),
        ({"MESSAGES": {"limit": ""}}, "MESSAGES"),
        ({"OFFLINE_GRACE": -1}, "OFFLINE_GRACE"),
    ],
)
def test_bad_settings_raise_improperly_configured(change, mentions):
    with pytest.raises(ImproperlyConfigured, match=mentions):
        conf.load({**VALID, **change})


def test_unreachable_choice_has_open_and_closed_for_names():
    assert conf.load(dict(VALID, CENTRAL_UNREACHABLE="closed")).central_unreachable == "refuse"
    assert conf.load(dict(VALID, CENTRAL_UNREACHABLE="open")).central_unreachable == "admit"


def test_missing_setting_is_explained():
    with pytest.raises(ImproperlyConfigured, match="HEADCOUNT is missing"):
        conf.load(None)


def test_disabled_agent_needs_nothing_else():
    assert conf.load({"ENABLED": False}).mode == "off"


def test_session_ref_is_a_keyed_hash():
    a = conf.load(VALID)
    b = conf.load({**VALID, "SESSION_HASH_KEY": "another key"})
    ref = a.session_ref("abc123")
    assert len(ref) == 64 and all(c in "0123456789abcdef" for c in ref)
    assert ref == a.session_ref("abc123")
    assert ref != b.session_ref("abc123")
    assert "abc123" not in ref


def test_user_ref_choices():
    class User:
        email = "a@example.test"

        def get_username(self):
            return "alice"

    assert conf.load(VALID).user_ref(User()) == "alice"
    assert conf.load({**VALID, "USER_REF": "email"}).user_ref(User()) == "a@example.test"
    assert conf.load({**VALID, "USER_REF": lambda u: "x"}).user_ref(User()) == "x"


def test_webhook_signatures():
    secret = VALID["WEBHOOK_SECRET"]
    keys = conf.load(VALID).webhook_keys
    body = b'{"type":"session.kill"}'
    headers = sign_webhook(secret, body)
    assert verify(headers, body, keys) == headers["webhook-id"]
    # any of several signatures, any of several keys
    other = sign_webhook("whsec_b3RoZXI=", body, msg_id=headers["webhook-id"], timestamp=int(headers["webhook-timestamp"]))
    both = dict(headers, **{"webhook-signature": other["webhook-signature"] + " " + headers["webhook-signature"]})
    assert verify(both, body, keys)
    assert verify(other, body, (b"nope", b"other"))
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(other, body, keys)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(headers, body + b" ", keys)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(headers, body, keys, now=time.time() + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(headers, body, keys, now=time.time() - 301)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify({}, body, keys)


def test_site_config_ceiling_and_message():
    config = SiteConfig.from_data({"config_version": 3, "session_limit": 10, "over_limit": "allow_overage", "overage_percent": 25})
    assert config.admission_ceiling == 13
    assert config.message() == "There are more than 10 active user sessions. Please try again later."
    with pytest.raises(ValueError):
        SiteConfig.from_data({"session_limit": 1})


def test_full_queue_drops_activity_first(settings):
    settings.HEADCOUNT = {**VALID, "URL": "http://127.0.0.1:9", "QUEUE_SIZE": 3}
    s = sender.Sender()
    s._ensure_thread = lambda: None  # keep the events in the queue
    s.enqueue(sender.make_event("session.activity", "a1"))
    s.enqueue(sender.make_event("session.started", "s1"))
    s.enqueue(sender.make_event("session.activity", "a2"))
    s.enqueue(sender.make_event("session.ended", "e1"))  # drops a1
    s.enqueue(sender.make_event("session.activity", "a3"))  # dropped itself
    assert [e["session"] for e in s.queue] == ["s1", "a2", "e1"]
    s.enqueue(sender.make_event("session.ended", "e2"))  # drops a2
    s.enqueue(sender.make_event("session.ended", "e3"))  # nothing else to drop: the oldest goes
    assert [e["session"] for e in s.queue] == ["e1", "e2", "e3"]
    assert s.dropped == 4
    assert s.snapshot_wanted


def test_events_carry_rfc3339_times_and_no_private_fields():
    event = sender.make_event("session.ended", "ref", reason="logout", user=None)
    assert event["at"].endswith("Z")
    assert "user" not in event
    assert event["reason"] == "logout"


@pytest.mark.parametrize("use_tz", [False, True])
def test_naive_times_are_local_time_in_time_zone(settings, use_tz):
    """expire_date under USE_TZ=False and Lino's last_activity are naive local times in TIME_ZONE."""
    import datetime as dt

    from headcount_django.sessions import STARTED_KEY, LocalSession, parse_local, rfc3339, to_utc

    settings.USE_TZ = use_tz
    settings.TIME_ZONE = "Europe/Brussels"  # UTC+1 in winter
    naive = dt.datetime(2026, 12, 1, 13, 30)
    assert rfc3339(naive) == "2026-12-01T12:30:00.000Z"
    assert to_utc(dt.datetime(2026, 12, 1, 12, 30, tzinfo=dt.timezone.utc)) == to_utc(naive)
    assert parse_local("2026-12-01T13:30:00.250000") == dt.datetime(2026, 12, 1, 12, 30, 0, 250000, tzinfo=dt.timezone.utc)
    assert parse_local("garbage") is None

    # a Lino session: started 12:00 UTC, Lino's last request 13:30 local, saved with the default age
    current = dt.datetime(2026, 12, 1, 12, 45, tzinfo=dt.timezone.utc)
    expire = to_utc(naive) + dt.timedelta(seconds=settings.SESSION_COOKIE_AGE) - dt.timedelta(minutes=5)
    session = LocalSession("k", "1", expire, {STARTED_KEY: "2026-12-01T12:00:00Z", "last_activity": naive.isoformat()})
    assert session.last_activity(current) == dt.datetime(2026, 12, 1, 12, 30, tzinfo=dt.timezone.utc)
    # an expiry that does not fit SESSION_COOKIE_AGE (set_expiry) is no evidence of activity
    odd = LocalSession("k", "1", current + dt.timedelta(days=365), {STARTED_KEY: "2026-12-01T12:00:00Z"})
    assert odd.last_activity(current) == dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_dangling_is_headcounts_rule():
    """rules.is_dangling: not expired, and idle for idle_timeout_seconds or longer (DESIGN §2)."""
    import datetime as dt

    from headcount_django.rules import is_dangling

    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
    hour = dt.timedelta(hours=1)
    later = now + hour
    assert is_dangling(now - hour, later, now, 3600)  # idle exactly the timeout: dangling, as in headcount
    assert not is_dangling(now - hour + dt.timedelta(milliseconds=1), later, now, 3600)
    assert is_dangling(now - 3 * hour, later, now, 3600)
    assert not is_dangling(now - 3 * hour, now, now, 3600)  # expired: neither live nor dangling
    assert not is_dangling(now - 3 * hour, now - hour, now, 3600)


def test_the_local_count_and_the_offer_agree_on_dangling(settings, monkeypatch):
    """The local count and a local self-service offer call a session dangling alike (both use rules.is_dangling)."""
    import datetime as dt

    from headcount_django import counting
    from headcount_django.config import SiteConfig
    from headcount_django.offers import OwnSession
    from headcount_django.sessions import STARTED_KEY, LocalSession, rfc3339

    settings.HEADCOUNT = {**VALID}
    settings.SESSION_COOKIE_AGE = 24 * 3600
    current = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
    config = SiteConfig(config_version=1, session_limit=5, count_mode="live", idle_timeout_seconds=3600)
    sessions = []
    for n, idle in enumerate((3599, 3600, 7200)):
        last = current - dt.timedelta(seconds=idle)
        sessions.append(LocalSession(f"key{n}", "7", last + dt.timedelta(days=1), {STARTED_KEY: rfc3339(last)}))
    monkeypatch.setattr(counting, "now", lambda: current)
    monkeypatch.setattr(counting, "authenticated_sessions", lambda exclude_key=None: iter(sessions))
    monkeypatch.setattr(counting, "exempt_user_ids", lambda config, user_ids: set())
    monkeypatch.setattr("headcount_django.offers.current", lambda: config)
    seen = counting.count_sessions(config, None, "7")
    assert seen.counted == 1  # count mode live: the two dangling ones take no place
    states = [OwnSession.from_local(session, current, conf.get()).state for session in sessions]
    assert states == ["live", "dangling", "dangling"]


# -- the admission rule, shared with headcount -----------------------------------------------

CASES_PATH = __import__("pathlib").Path(__file__).with_name("admission_cases.json")


def _cases():
    import json

    return json.loads(CASES_PATH.read_text())["cases"]


# exempt accounts (exempt_roles): admitted and never counted, whatever else holds; the shared
# table gets its own such cases, these make sure the agent's rule knows the key meanwhile
EXEMPT_CASES = [
    {"name": "agent: exempt at a full site", "ask": {"counted": 3, "limit": 3, "exempt_role": True}, "outcome": "within_limit"},
    {
        "name": "agent: exempt with evict_dangling evicts nobody",
        "ask": {"counted": 3, "limit": 3, "over_limit": "evict_dangling", "can_evict": True, "exempt_role": True},
        "outcome": "within_limit",
    },
    {
        "name": "agent: exempt user at their cap with replace_oldest replaces nothing",
        "ask": {"counted": 2, "limit": 5, "user_counted": 2, "user_limit": 2, "per_user_over_limit": "replace_oldest", "exempt_role": True},
        "outcome": "within_limit",
    },
    {"name": "agent: exempt at a limit of zero", "ask": {"counted": 0, "limit": 0, "exempt_role": True}, "outcome": "within_limit"},
]


def _ask_from_case(case: dict):
    from headcount_django import rules

    i = case["ask"]
    user = None
    if i.get("user_limit") is not None:
        user = rules.UserCap(
            counted=i.get("user_counted", 0),
            limit=i["user_limit"],
            over=i.get("per_user_over_limit", "reject"),
            can_replace=i.get("user_counted", 0) > 0,
        )
    return rules.Ask(
        counted=i.get("counted", 0),
        limit=i.get("limit", 0),
        reserve=0 if i.get("reserved_role") else i.get("reserved_slots", 0),
        over_limit=i.get("over_limit", "reject"),
        overage_percent=i.get("overage_percent", 0),
        can_evict=bool(i.get("can_evict")),
        replacing=i.get("replacing", 0),
        replaces=i.get("replacing", 0) > 0 or bool(i.get("replaces")),
        user=user,
        pool=(i.get("pool_counted", 0), i["pool_limit"]) if i.get("pool_limit") is not None else None,
        exempt=bool(i.get("exempt_role")),
    )


def test_the_shared_table_covers_the_combinations():
    cases = _cases()
    assert len(cases) >= 20
    outcomes = {c["outcome"] for c in cases}
    assert {"within_limit", "evicted_dangling", "overage", "replaced", "limit_reached", "user_limit_reached"} <= outcomes


@pytest.mark.parametrize("case", _cases() + EXEMPT_CASES, ids=lambda c: c["name"])
def test_rules_decide_as_headcount_does(case):
    """The agent's pure rule gives the table's outcome for every case."""
    from headcount_django import rules

    assert rules.decide(_ask_from_case(case)).outcome == case["outcome"]


def _local_sessions_for(case: dict, now):
    """Sessions on a site (as the local rule reads them) that make up the case's counts.

    Returns (sessions, requesting user's id, keys to replace, config fields), or None for
    a case the local rule cannot see (the tenant pool is central only).
    """
    import datetime as dt

    from headcount_django.sessions import STARTED_KEY, LocalSession, rfc3339

    i = case["ask"]
    if i.get("pool_limit") is not None:
        return None
    idle = 3600
    sessions = []
    n = 0

    def add(user_id: str, dangling: bool):
        nonlocal n
        n += 1
        last = now - dt.timedelta(seconds=idle * 2 if dangling else 10)
        sessions.append(LocalSession(f"key{n:04d}", user_id, last + dt.timedelta(days=1), {STARTED_KEY: rfc3339(last)}))
        return sessions[-1].key

    me = "7"
    user_counted = i.get("user_counted", 0)
    replacing = i.get("replacing", 0)
    own = [add(me, False) for _ in range(max(user_counted, replacing))]
    replace = own[:replacing]
    if i.get("replaces") and not replacing:
        # a session named in `replace` that does not count: one of mine, dangling, under count mode live
        replace = [add(me, True)]
    can_evict = bool(i.get("can_evict"))
    others = i.get("counted", 0) - len(own)
    if others < 0:
        return None  # more sessions of the user than on the site: no site has these counts
    for k in range(others):
        add(str(100 + k), dangling=can_evict and k == 0)
    mode = "live" if i.get("replaces") and not replacing else "active"
    if i.get("replaces") and not replacing:
        can_evict = False
    fields = {
        "config_version": 1,
        "session_limit": i.get("limit", 0),
        "count_mode": mode,
        "over_limit": i.get("over_limit", "reject"),
        "overage_percent": i.get("overage_percent", 0),
        "idle_timeout_seconds": idle,
        "reserved_slots": i.get("reserved_slots", 0),
        "per_user_limit": i.get("user_limit"),
        "per_user_over_limit": i.get("per_user_over_limit", "reject"),
        "exempt_roles": ["service"],
    }
    return sessions, me, replace, fields, can_evict


@pytest.mark.parametrize("case", _cases() + EXEMPT_CASES, ids=lambda c: c["name"])
def test_local_enforcement_decides_as_headcount_does(case, monkeypatch):
    """The local rule, fed with the site's own sessions, reaches the table's outcome and ends what it says."""
    import datetime as dt

    from headcount_django import counting, local
    from headcount_django.config import SiteConfig

    current = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
    built = _local_sessions_for(case, current)
    if built is None:
        pytest.skip("no site's sessions give these counts, or a tenant pool (enforced by headcount only)")
    sessions, me, replace, fields, can_evict = built
    deleted: list[str] = []
    monkeypatch.setattr(counting, "now", lambda: current)
    monkeypatch.setattr(counting, "authenticated_sessions", lambda exclude_key=None: iter(sessions))
    monkeypatch.setattr(counting, "exempt_user_ids", lambda config, user_ids: set())  # none of the others is exempt
    monkeypatch.setattr(local, "delete_keys", lambda keys: deleted.extend(keys) or len(list(keys)))
    monkeypatch.setattr("django.conf.settings.SESSION_COOKIE_AGE", 24 * 3600)
    config = SiteConfig.from_data(fields)
    user = type("User", (), {"pk": me})()
    roles = ["admin"] if case["ask"].get("reserved_role") else ["staff"]
    if case["ask"].get("exempt_role"):
        roles.append("service")
    decision, seen = local.admission(config, None, user, roles, replace)
    assert decision.outcome == case["outcome"], (case["name"], seen)
    if not decision.admitted:
        assert deleted == [], "a refusal ended sessions"
        return
    expected = set(replace)
    if decision.replace_oldest:
        expected.add(seen.own_counted[0][1])
    if decision.evict:
        assert can_evict
        expected.add(seen.dangling[0][1])
    assert set(deleted) == expected


def test_default_roles_and_the_roles_setting():
    from headcount_django import roles

    class User:
        pk = 1
        is_superuser = False

    class Admin(User):
        is_superuser = True

    loaded = conf.load(VALID)
    assert loaded.roles(User()) == [] and loaded.roles(Admin()) == ["admin"]
    custom = conf.load({**VALID, "ROLES": lambda user: ["admin", "x" * 65, "support", "admin"]})
    assert roles.roles_of(User(), custom) == ["admin", "support"]
    with pytest.raises(ImproperlyConfigured, match="ROLES"):
        conf.load({**VALID, "ROLES": "not_a_path"})


def test_service_accounts_carry_the_service_role():
    from headcount_django import roles

    class User:
        pk = 1
        is_superuser = False

        def __init__(self, name):
            self.name = name

        def get_username(self):
            return self.name

    listed = conf.load({**VALID, "SERVICE_ACCOUNTS": ["robot"]})
    assert roles.roles_of(User("robot"), listed) == ["service"]
    assert roles.roles_of(User("alice"), listed) == []
    by_function = conf.load({**VALID, "SERVICE_ACCOUNTS": lambda u: u.name.startswith("api-"), "SERVICE_ROLE": "api"})
    assert roles.roles_of(User("api-sync"), by_function) == ["api"]
    assert roles.roles_of(User("robot"), conf.load(VALID)) == []  # nobody by default
    for bad in ({"SERVICE_ACCOUNTS": "robot"}, {"SERVICE_ACCOUNTS": [""]}, {"SERVICE_ROLE": ""}):
        with pytest.raises(ImproperlyConfigured, match="SERVICE_"):
            conf.load({**VALID, **bad})


def test_lino_site_administrators_get_the_admin_role():
    pytest.importorskip("lino")
    from lino.core.roles import SiteAdmin, SiteUser

    class UserType:
        def __init__(self, role):
            self.role = role()

        def has_required_roles(self, required):
            return self.role.satisfies_requirement(required)

    class LinoUser:
        is_superuser = None  # Lino's users have no such flag

        def __init__(self, role):
            self.user_type = UserType(role)

    loaded = conf.load(VALID)
    assert loaded.roles(LinoUser(SiteAdmin)) == ["admin"]
    assert loaded.roles(LinoUser(SiteUser)) == []


def test_config_carries_the_reserved_and_per_user_fields():
    config = SiteConfig.from_data({
        "config_version": 2, "session_limit": 5, "reserved_slots": 1, "reserved_roles": ["admin", "support"],
        "per_user_limit": 2, "per_user_over_limit": "replace_oldest",
    })
    assert config.reserve_for(["support"]) == 0 and config.reserve_for([]) == 1
    assert SiteConfig(**config.as_dict()) == config  # the cache keeps it as a dict
    default = SiteConfig.from_data({"config_version": 1, "session_limit": 5})
    assert default.reserved_roles == ("admin",) and default.per_user_limit is None and default.reserved_slots == 0
    # a headcount without exempt_roles: nobody is exempt
    assert default.exempt_roles == () and not default.is_exempt(["admin", "service"])
    exempt = SiteConfig.from_data({"config_version": 3, "session_limit": 5, "exempt_roles": ["service"]})
    assert exempt.is_exempt(["service"]) and not exempt.is_exempt(["admin"])
    assert SiteConfig(**exempt.as_dict()) == exempt
    with pytest.raises(ValueError, match="exempt_roles"):
        SiteConfig.from_data({"config_version": 1, "session_limit": 5, "exempt_roles": "service"})
    with pytest.raises(ValueError):
        SiteConfig.from_data({"config_version": 1, "session_limit": 5, "reserved_slots": -1})


def test_each_refusal_reason_has_its_own_text(settings):
    from headcount_django import refusals, rules

    settings.HEADCOUNT = {**VALID}
    # limit_reached below the ceiling with reserved places: the reserved places refused
    assert refusals.kind_of(rules.LIMIT_REACHED, 5, 6, 1) == refusals.RESERVED
    assert refusals.kind_of(rules.LIMIT_REACHED, 6, 6, 1) == refusals.LIMIT
    assert refusals.kind_of(rules.LIMIT_REACHED, 5, 6, 0) == refusals.LIMIT
    assert refusals.kind_of(rules.USER_LIMIT_REACHED, 5, 20, 0) == refusals.USER_LIMIT
    assert refusals.kind_of(rules.POOL_LIMIT_REACHED, 5, 20, 0) == refusals.POOL
    config = SiteConfig(1, 20, per_user_limit=2, reserved_slots=3)
    texts = {kind: refusals.text(kind, config) for kind in (refusals.LIMIT, refusals.USER_LIMIT, refusals.RESERVED, refusals.POOL)}
    assert texts[refusals.LIMIT] == "There are more than 20 active user sessions. Please try again later."
    assert "(2 at a time)" in texts[refusals.USER_LIMIT]
    assert "administrators" in texts[refusals.RESERVED]
    assert "organisation" in texts[refusals.POOL]
    assert len(set(texts.values())) == 4
    # the site's limit_message from headcount, then the site's own texts in the agent settings
    assert refusals.text(refusals.LIMIT, SiteConfig(1, 3, limit_message="Max {limit}.")) == "Max 3."
    settings.HEADCOUNT = {**VALID, "MESSAGES": {"user_limit": "Only {per_user_limit} each.", "pool": "Pool full."}}
    assert refusals.text(refusals.USER_LIMIT, config) == "Only 2 each."
    assert refusals.text(refusals.POOL, config) == "Pool full."
    assert refusals.text(refusals.LIMIT, config).startswith("There are more than 20")


def test_the_import_cycle_check(tmp_path, capsys):
    """check_import_cycles.py (run by run-tests) sees imports inside functions, and skips TYPE_CHECKING ones."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parent.parent / "check_import_cycles.py"
    spec = importlib.util.spec_from_file_location("check_import_cycles", script)
    assert spec is not None and spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)

    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    assert check.main(["check", str(package)]) == 0
    (package / "b.py").write_text("def later():\n    from .a import x\n")  # hidden in a function: still a cycle
    assert check.main(["check", str(package)]) == 1
    assert "pkg.a (line 1) -> pkg.b (line 2) -> pkg.a" in capsys.readouterr().err
