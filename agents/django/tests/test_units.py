"""Pieces of the agent that need no headcount process."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from conftest import sign_webhook
from headcount_django import conf, sender
from headcount_django.config import SiteConfig
from headcount_django.webhooks import WebhookVerificationError, verify

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
    ],
)
def test_bad_settings_raise_improperly_configured(change, mentions):
    with pytest.raises(ImproperlyConfigured, match=mentions):
        conf.load({**VALID, **change})


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
