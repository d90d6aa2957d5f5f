"""The agent in a real Django site against a real headcount process."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from headcount_django import client as hc_client, conf, config, sender
from headcount_django.sessions import STARTED_KEY, rfc3339

from conftest import session_ref, sign_webhook, wait_until

PASSWORD = "correct horse"


def make_user(username: str):
    return get_user_model().objects.create_user(username, password=PASSWORD)


def login(client: Client, username: str):
    response = client.post("/login/", {"username": username, "password": PASSWORD})
    return response.status_code, response.json()


def make_idle(key: str, idle: dt.timedelta) -> None:
    """Make a session look as if it had started and was last saved ``idle`` ago."""
    store = SessionStore(session_key=key)
    store[STARTED_KEY] = rfc3339(timezone.now() - idle)
    store.save()
    age = dt.timedelta(seconds=django_settings.SESSION_COOKIE_AGE)
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() + age - idle)


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_login_activity_logout(site):
    s = site()
    make_user("alice")
    client = Client(HTTP_USER_AGENT="pytest-browser/1.0", REMOTE_ADDR="192.0.2.10")
    assert login(client, "alice") == (200, {"ok": True, "user": "alice"})
    ref = session_ref(client)
    assert len(ref) == 64 and client.cookies["sessionid"].value not in ref

    row = s.sessions()[ref]
    assert row["user"] == "alice"
    assert row["state"] in ("active", "live")
    assert row["ended_at"] is None
    assert row["user_agent"] == "pytest-browser/1.0"
    assert row["ip"] == "192.0.2.10"
    first_expiry = parse(row["expires_at"])
    first_activity = parse(row["last_activity_at"])

    # a session save is activity, reported with the new expiry
    time.sleep(1.1)
    assert client.get("/touch/?expiry_days=3").status_code == 200
    row = s.sessions()[ref]
    assert parse(row["expires_at"]) > first_expiry + dt.timedelta(days=1)
    assert parse(row["last_activity_at"]) > first_activity

    assert client.post("/logout/").status_code == 200
    row = s.sessions()[ref]
    assert row["state"] == "ended"
    assert row["end_reason"] == "logout"


def test_activity_is_throttled_per_session(site):
    s = site()
    s.configure(ACTIVITY_INTERVAL=3600)
    make_user("alice")
    client = Client()
    login(client, "alice")
    ref = session_ref(client)
    started = s.sessions()[ref]
    time.sleep(1.1)
    client.get("/touch/?expiry_days=3")
    # within the interval, the save is not reported: headcount still has the login's expiry
    assert s.sessions()[ref]["expires_at"] == started["expires_at"]


def test_key_rotation_ends_the_old_id_and_starts_the_new(site):
    s = site()
    make_user("alice")
    client = Client()
    login(client, "alice")
    old = session_ref(client)
    assert client.post("/password/", {"password": PASSWORD}).status_code == 200
    new = session_ref(client)
    assert new != old
    rows = s.sessions()
    assert rows[old]["end_reason"] == "logout"
    assert rows[new]["state"] in ("active", "live")
    assert rows[new]["user"] == "alice"


def test_kill_pushed_from_headcount_deletes_the_session(site, headcount):
    s = site()
    make_user("alice")
    client = Client()
    login(client, "alice")
    ref = session_ref(client)
    key = client.cookies["sessionid"].value
    assert ref in s.sessions("active")

    headcount.api("DELETE", f"/v1/sites/{s.slug}/sessions/{ref}")
    wait_until(lambda: not Session.objects.filter(session_key=key).exists(), timeout=15, message="the killed session to be deleted")
    assert client.get("/whoami/").json() == {"user": None}
    row = s.sessions()[ref]
    assert row["state"] == "ended"
    assert row["end_reason"] == "killed"


def test_clearsessions_reports_expired(site):
    s = site()
    make_user("alice")
    make_user("bob")
    alice, bob = Client(), Client()
    login(alice, "alice")
    login(bob, "bob")
    alice_ref, bob_ref = session_ref(alice), session_ref(bob)
    assert {alice_ref, bob_ref} <= set(s.sessions("active"))

    Session.objects.filter(session_key=alice.cookies["sessionid"].value).update(
        expire_date=timezone.now() - dt.timedelta(minutes=5)
    )
    call_command("clearsessions")
    rows = s.sessions()
    assert rows[alice_ref]["state"] == "ended"
    assert rows[alice_ref]["end_reason"] == "expired"
    assert rows[bob_ref]["state"] in ("active", "live")


def test_snapshot_after_headcount_was_down(site, headcount):
    s = site()
    s.configure(TIMEOUT=0.5, SNAPSHOT_GRACE=0)
    for name in ("alice", "bob", "carol"):
        make_user(name)
    alice, bob, carol = Client(), Client(), Client()
    login(alice, "alice")
    login(bob, "bob")
    alice_ref, bob_ref = session_ref(alice), session_ref(bob)
    assert {alice_ref, bob_ref} <= set(s.sessions("active"))

    headcount.stop()
    try:
        # while headcount is down: bob's session vanishes without a trace, carol signs in
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM django_session WHERE session_key = %s", [bob.cookies["sessionid"].value])
        assert login(carol, "carol")[0] == 200
        carol_ref = session_ref(carol)
        # requests never wait for headcount
        started = time.monotonic()
        assert alice.get("/touch/").status_code == 200
        assert time.monotonic() - started < 0.5
        assert not sender.flush(1.0)
        sender.reset()  # lose what was queued: only the snapshot can repair it
    finally:
        headcount.start()

    call_command("headcount_snapshot")
    rows = s.sessions()
    assert rows[alice_ref]["state"] in ("active", "live")
    assert rows[carol_ref]["state"] in ("active", "live")
    assert rows[carol_ref]["user"] == "carol"
    assert rows[bob_ref]["state"] == "ended"
    assert rows[bob_ref]["end_reason"] == "reconciled"


def test_pushed_limit_then_refused_login(site, headcount):
    s = site(session_limit=10)
    s.configure(MODE="local")
    for name in ("alice", "bob"):
        make_user(name)

    headcount.api("PATCH", f"/v1/sites/{s.slug}", {"session_limit": 1})
    pushed = wait_until(
        lambda: (c := config.current()) is not None and c.session_limit == 1 and c, timeout=15, message="the config push"
    )
    assert pushed.config_version >= 1

    alice, bob = Client(), Client()
    assert login(alice, "alice")[0] == 200
    status, body = login(bob, "bob")
    assert status == 403
    assert body["refusal"] == "There are more than 1 active user sessions. Please try again later."
    assert body["errors"] == [body["refusal"]]
    assert bob.get("/whoami/").json() == {"user": None}
    # a wrong password still reads as a wrong password
    response = bob.post("/login/", {"username": "bob", "password": "wrong"})
    assert response.status_code == 403
    assert response.json()["refusal"] is None
    assert "correct username and password" in response.json()["errors"][0]

    # a lower version pushed late is ignored
    stale = {**pushed.as_dict(), "session_limit": 50, "config_version": pushed.config_version - 1, "site": s.slug}
    assert config.apply(stale) is False
    assert config.current().session_limit == 1

    # the slot frees when alice signs out
    alice.post("/logout/")
    assert login(bob, "bob")[0] == 200


def test_config_pull_with_etag(site, headcount):
    s = site(session_limit=7)
    s.configure(MODE="local")
    first = hc_client.get_config(None)
    assert first.status == 200 and first.body["session_limit"] == 7
    etag = first.headers.get("etag")
    assert etag
    # unchanged: If-None-Match gets a 304
    assert hc_client.get_config(etag).status == 304
    config.pull()  # applies it unless the push at site creation was quicker
    assert config.current().session_limit == 7
    assert config.pull() is False
    headcount.api("PATCH", f"/v1/sites/{s.slug}", {"session_limit": 5})
    wait_until(lambda: config.current().session_limit == 5 or config.pull(), timeout=10, message="a newer config")
    assert config.current().session_limit == 5


def test_central_admission_at_the_limit(site):
    s = site(session_limit=1)
    s.configure(MODE="central")
    for name in ("alice", "bob"):
        make_user(name)
    alice, bob = Client(), Client()
    assert login(alice, "alice")[0] == 200
    alice_ref = session_ref(alice)
    # headcount admitted exactly the id of the session the site now has
    assert s.sessions("active")[alice_ref]["user"] == "alice"

    status, body = login(bob, "bob")
    assert status == 403
    assert "1" in body["refusal"] and "Please try again later" in body["refusal"]
    assert bob.get("/whoami/").json() == {"user": None}
    assert len(s.sessions("active")) == 1

    # activity on the admitted session is reported under the same id
    alice.get("/touch/")
    assert s.sessions("active")[alice_ref]["state"] in ("active", "live")


@pytest.mark.django_db
def test_central_mode_when_headcount_is_unreachable(settings):
    base = {
        "URL": "http://127.0.0.1:9",
        "SITE": "unreachable",
        "TOKEN": "t",
        "WEBHOOK_SECRET": "whsec_c2VjcmV0",
        "MODE": "central",
        "ADMISSION_TIMEOUT": 0.5,
        "FLUSH_INTERVAL": 0.05,
    }
    make_user("alice")
    settings.HEADCOUNT = {**base, "CENTRAL_UNREACHABLE": "refuse"}
    status, body = login(Client(), "alice")
    assert status == 403
    assert body["refusal"] == "Sign-in is not possible right now. Please try again later."

    settings.HEADCOUNT = {**base, "CENTRAL_UNREACHABLE": "admit"}
    assert login(Client(), "alice")[0] == 200
    sender.reset()


def _post_webhook(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_forged_or_stale_webhook_refused(site, live_server):
    s = site(session_limit=10)
    s.configure(MODE="local")
    make_user("alice")
    alice = Client()
    login(alice, "alice")
    ref = session_ref(alice)
    key = alice.cookies["sessionid"].value
    url = f"{live_server.url}/headcount/webhook/"
    secret = s.created["webhook_secret"]
    kill = json.dumps(
        {"type": "session.kill", "timestamp": timezone.now().isoformat(), "data": {"site": s.slug, "sessions": [ref], "reason": "killed"}}
    ).encode()

    forged = sign_webhook("whsec_" + "Zm9yZ2VkLXNlY3JldA==", kill)
    assert _post_webhook(url, kill, forged) == 401
    stale = sign_webhook(secret, kill, timestamp=int(time.time()) - 600)
    assert _post_webhook(url, kill, stale) == 401
    assert _post_webhook(url, kill, {}) == 401
    tampered = sign_webhook(secret, kill)
    assert _post_webhook(url, kill.replace(b"killed", b"evicted"), tampered) == 401
    assert Session.objects.filter(session_key=key).exists()

    # a genuine push works, several signatures may be offered
    genuine = sign_webhook(secret, kill)
    genuine["webhook-signature"] = "v1,bm90LWl0 " + genuine["webhook-signature"]
    assert _post_webhook(url, kill, genuine) == 200
    assert not Session.objects.filter(session_key=key).exists()

    # a replayed id is acknowledged but not applied twice
    change = {"type": "site.config_changed", "timestamp": timezone.now().isoformat(),
              "data": {"site": s.slug, "config_version": 10_000, "session_limit": 3}}
    body = json.dumps(change).encode()
    headers = sign_webhook(secret, body, msg_id="msg_replayed")
    assert _post_webhook(url, body, headers) == 200
    assert config.current().session_limit == 3
    change["data"].update(config_version=10_001, session_limit=4)
    body = json.dumps(change).encode()
    assert _post_webhook(url, body, sign_webhook(secret, body, msg_id="msg_replayed")) == 200
    assert config.current().session_limit == 3


def test_check_and_dry_run_commands(site, capsys):
    s = site(session_limit=4)
    make_user("alice")
    login(Client(), "alice")
    call_command("headcount_check")
    out = capsys.readouterr().out
    assert "headcount answered" in out
    assert "session_limit 4" in out
    call_command("headcount_snapshot", "--dry-run")
    printed = json.loads(capsys.readouterr().out)
    assert [row["user"] for row in printed["sessions"]] == ["alice"]
    assert s.slug


@pytest.mark.django_db
def test_local_rule_count_mode_live_and_eviction(settings):
    settings.HEADCOUNT = {**settings.HEADCOUNT, "MODE": "local", "SITE": "local-rule"}
    for name in ("alice", "bob", "carol"):
        make_user(name)
    config.apply({"config_version": 1, "session_limit": 1, "count_mode": "live", "idle_timeout_seconds": 3600})
    alice = Client()
    assert login(alice, "alice")[0] == 200
    # alice's last save was two hours ago: dangling, so she does not count in live mode
    alice_key = alice.cookies["sessionid"].value
    make_idle(alice_key, dt.timedelta(hours=2))
    assert login(Client(), "bob")[0] == 200

    # counting every active session, the site is full; evict_dangling makes room
    config.apply({"config_version": 2, "session_limit": 2, "count_mode": "active", "over_limit": "evict_dangling",
                  "idle_timeout_seconds": 3600})
    assert login(Client(), "carol")[0] == 200
    assert not Session.objects.filter(session_key=alice_key).exists()
    outbox = sender.get_sender()
    with outbox.cond:
        queued = [e for e in [*outbox.inflight, *outbox.queue] if e["type"] == "session.ended"]
    assert [e["reason"] for e in queued] == ["evicted"]

    # nothing dangling left: the next one is refused
    status, body = login(Client(), "alice")
    assert status == 403 and body["refusal"].startswith("There are more than 2 active user sessions")
    sender.reset()


def test_events_are_flushed_when_a_command_exits(site, settings):
    """clearsessions in its own process: the sender delivers at exit, not after FLUSH_INTERVAL."""
    s = site()
    make_user("alice")
    alice = Client()
    login(alice, "alice")
    ref = session_ref(alice)
    assert ref in s.sessions("active")
    Session.objects.filter(session_key=alice.cookies["sessionid"].value).update(
        expire_date=timezone.now() - dt.timedelta(minutes=1)
    )
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="testproject.settings",
        HEADCOUNT_TEST_SITE_DB=connection.settings_dict["NAME"],
        HEADCOUNT_TEST_SETTINGS=json.dumps({**settings.HEADCOUNT, "FLUSH_INTERVAL": 60}),
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "django", "clearsessions"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    row = s.sessions()[ref]
    assert row["state"] == "ended"
    assert row["end_reason"] == "expired"


def test_central_admission_evicts_a_dangling_session(site):
    s = site(session_limit=1, over_limit="evict_dangling", idle_timeout_seconds=60)
    for name in ("alice", "bob"):
        make_user(name)
    alice, bob = Client(), Client()
    # alice signed in two minutes ago and did nothing since: dangling for headcount
    s.configure(ENABLED=False)
    assert login(alice, "alice")[0] == 200
    alice_key = alice.cookies["sessionid"].value
    s.configure(MODE="central")
    two_minutes_ago = (timezone.now() - dt.timedelta(minutes=2)).isoformat()
    hc_client.post_events([{"type": "session.started", "session": session_ref(alice), "at": two_minutes_ago, "user": "alice"}])
    assert s.sessions("dangling")

    assert login(bob, "bob")[0] == 200
    # the agent deleted the evicted session at once, without waiting for the push
    assert not Session.objects.filter(session_key=alice_key).exists()
    assert alice.get("/whoami/").json() == {"user": None}
    rows = s.sessions()
    assert rows[conf.get().session_ref(alice_key)]["end_reason"] == "evicted"
    assert rows[session_ref(bob)]["state"] in ("active", "live")


@pytest.mark.django_db
@pytest.mark.parametrize("engine", ["django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db"])
def test_the_private_session_api_of_this_django(settings, engine, record_property):
    """sessions.adopt_key, the agent's one use of Django's private session API, works with the Django installed.

    Central mode gives the signed-in session the key headcount admitted; a Django that
    renamed or changed ``_session_key`` fails here, with each session engine the agent supports.
    """
    import django

    from headcount_django.sessions import adopt_key, new_key, store_class

    record_property("django", django.get_version())
    settings.SESSION_ENGINE = engine
    store = store_class()
    session = store()
    session["answer"] = 42
    session.save()
    old = session.session_key
    key = new_key()
    assert len(key) == 32 and key != old and not store().exists(key)
    adopt_key(session, key)
    session.save(must_create=True)
    assert session.session_key == key, django.get_version()
    assert store(session_key=key).load() == {"answer": 42}, django.get_version()
    assert store().exists(old)  # the old row stays: deleting it (reported as a logout) is the caller's
    with pytest.raises(RuntimeError, match="did not take"):
        adopt_key(store(), "short")  # Django drops a key under 8 characters: never silently


@pytest.mark.django_db
def test_lino_limit_is_switched_off_in_local_mode(settings, monkeypatch):
    """Lino's own check counts anonymous and dangling rows: in local mode the agent decides instead."""
    users = types.SimpleNamespace(active_sessions_limit=5)
    settings.SITE = types.SimpleNamespace(plugins=types.SimpleNamespace(users=users))
    settings.HEADCOUNT = {**settings.HEADCOUNT, "MODE": "off", "SITE": "lino-like"}
    config.apply({"config_version": 1, "session_limit": 3})
    assert users.active_sessions_limit == 5  # report-only: the site's own setting stays
    settings.HEADCOUNT = {**settings.HEADCOUNT, "MODE": "local"}
    for version, extra in enumerate(
        [{}, {"over_limit": "allow_overage", "overage_percent": 20}, {"count_mode": "live"}], start=2
    ):
        users.active_sessions_limit = 5
        config.apply({"config_version": version, "session_limit": 3, **extra})
        assert users.active_sessions_limit == -1

    # in a Lino site a refusal is a Warning with Lino's words, which Lino shows to the user
    monkeypatch.setitem(sys.modules, "lino", types.ModuleType("lino"))
    config.apply({"config_version": 10, "session_limit": 0})
    make_user("alice")
    with pytest.raises(Warning, match=r"^There are more than 0 active user sessions\. Please try again later\.$"):
        Client().post("/login/", {"username": "alice", "password": PASSWORD})
    # the refusal is queued for headcount, with the user and without a session id
    outbox = sender.get_sender()
    with outbox.cond:
        refused = [e for e in [*outbox.inflight, *outbox.queue] if e["type"] == "session.refused"]
    assert len(refused) == 1 and refused[0]["user"] == "alice" and "session" not in refused[0]
    # the site's own limit_message wins over Lino's wording
    config.apply({"config_version": 11, "session_limit": 0, "limit_message": "Full ({limit})."})
    with pytest.raises(Warning, match=r"^Full \(0\)\.$"):
        Client().post("/login/", {"username": "alice", "password": PASSWORD})
    sender.reset()


def test_activity_middleware_reports_reading_users(site, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "headcount_django.middleware.ActivityMiddleware"]
    s = site()
    make_user("alice")
    alice = Client()
    login(alice, "alice")
    ref = session_ref(alice)
    before = s.sessions()[ref]
    time.sleep(1.1)
    # a page that does not touch the session
    assert alice.get("/whoami/").json() == {"user": "alice"}
    after = s.sessions()[ref]
    assert parse(after["last_activity_at"]) > parse(before["last_activity_at"])
    assert parse(after["expires_at"]) > parse(before["expires_at"])


def _offer_form(client: Client, url: str) -> dict[str, str]:
    page = client.get(url)
    assert page.status_code == 200, page.content[:300]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.content.decode()))
    assert set(fields) == {"csrfmiddlewaretoken", "t"}
    return fields


def test_self_service_replace_in_central_mode(site):
    """A user at the limit ends their other session from the sign-in form and is signed in."""
    s = site(session_limit=1)
    s.configure(MODE="central")
    make_user("alice")
    make_user("bob")
    laptop, phone = Client(HTTP_USER_AGENT="laptop/1.0"), Client(HTTP_USER_AGENT="phone/1.0")
    assert login(laptop, "alice")[0] == 200
    laptop_key, laptop_ref = laptop.cookies["sessionid"].value, session_ref(laptop)

    # another user at the limit gets no offer: he has nothing of his own to end
    status, body = login(Client(), "bob")
    assert status == 403 and body["offer"] is None

    status, body = login(phone, "alice")
    assert status == 403 and body["offer"], body
    # Django's form shows the message, the offer and its link
    assert "You have 1 other session (last used just now)" in body["errors"][0]
    assert f'<a href="{body["offer"]}">end it and sign in</a>' in body["errors"][0]
    assert phone.get("/whoami/").json() == {"user": None}
    # only the browser that typed the password may use the link
    assert Client().get(body["offer"]).status_code == 400
    # a token changed by hand is refused, also in the right browser
    url = body["offer"]
    tampered = url[:-1] + ("A" if url[-1] != "A" else "B")
    assert phone.get(tampered).status_code == 400
    # and accepting it (a POST with the CSRF token) ends nothing
    form = _offer_form(phone, url)
    form["t"] = tampered.split("t=")[1]
    assert phone.post(url.split("?")[0], form).status_code == 400
    assert Session.objects.filter(session_key=laptop_key).exists()
    assert s.sessions("active")[laptop_ref]["user"] == "alice"
    # a wrong password gets no offer
    wrong = phone.post("/login/", {"username": "alice", "password": "wrong"}).json()
    assert wrong["offer"] is None and wrong["refusal"] is None

    response = phone.post(body["offer"].split("?")[0], _offer_form(phone, body["offer"]))
    assert response.status_code == 302, response.content[:300]
    assert phone.get("/whoami/").json() == {"user": "alice"}
    assert laptop.get("/whoami/").json() == {"user": None}
    assert not Session.objects.filter(session_key=laptop_key).exists()
    rows = s.sessions()
    assert rows[laptop_ref]["state"] == "ended" and rows[laptop_ref]["end_reason"] == "replaced"
    assert rows[session_ref(phone)]["state"] in ("active", "live") and rows[session_ref(phone)]["user"] == "alice"
    # the offer was used: it cannot end anything again
    assert phone.post(body["offer"].split("?")[0], {"t": body["offer"].split("t=")[1]}).status_code in (400, 403)


@pytest.mark.django_db
def test_reserved_place_and_self_service_in_local_mode(settings):
    settings.HEADCOUNT = {**settings.HEADCOUNT, "MODE": "local", "SITE": "local-reserved"}
    for name in ("alice", "bob"):
        make_user(name)
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    config.apply({"config_version": 1, "session_limit": 2, "reserved_slots": 1})
    alice = Client()
    assert login(alice, "alice")[0] == 200  # limit - 1: the open places are full
    status, body = login(Client(), "bob")
    # not the site's limit: the places left are kept for administrators, and the message says so
    assert status == 403 and body["refusal"] == (
        "The free places on this site are kept for its administrators. Please try again later."
    ), body
    assert body["offer"] is None
    root = Client()
    assert login(root, "root")[0] == 200  # a superuser takes the reserved place
    status, body = login(Client(), "root")
    assert status == 403  # the limit itself holds for the admin too
    assert body["refusal"] == "There are more than 2 active user sessions. Please try again later."

    # alice's second sign-in while root holds the reserved place: ending her first
    # session would not let her in (limit 2 - 1 reserved, root counts), so no offer
    status, body = login(Client(), "alice")
    assert status == 403 and body["offer"] is None
    root.post("/logout/")
    # now it would: refused, offered to end her first session
    alice_key = alice.cookies["sessionid"].value
    phone = Client()
    status, body = login(phone, "alice")
    assert status == 403 and body["offer"], body
    response = phone.post("/headcount/replace/", _offer_form(phone, body["offer"]))
    assert response.status_code == 302
    assert phone.get("/whoami/").json() == {"user": "alice"}
    assert not Session.objects.filter(session_key=alice_key).exists()
    outbox = sender.get_sender()
    with outbox.cond:
        ended = [e for e in [*outbox.inflight, *outbox.queue] if e["type"] == "session.ended"]
        refused = [e for e in [*outbox.inflight, *outbox.queue] if e["type"] == "session.refused"]
    assert [e["reason"] for e in ended if e["session"] == conf.get().session_ref(alice_key)] == ["replaced"]
    assert [e["user"] for e in refused] == ["bob", "root", "alice", "alice"]
    sender.reset()


# -- refusals that name their reason ---------------------------------------------------------


def _wait_for_config(**fields) -> config.SiteConfig:
    def matches():
        held = config.current()
        return held is not None and all(getattr(held, k) == v for k, v in fields.items()) and held

    return wait_until(matches, timeout=15, message=f"the config push with {fields}")


@pytest.mark.parametrize("mode", ["local", "central"])
def test_per_user_cap_refusal_names_the_cap_and_offers_the_other_session(site, mode):
    """A user at their own cap on a site at 5 of 20 is told about the cap, not the site's limit."""
    s = site(session_limit=20, per_user_limit=1)
    s.configure(MODE=mode)
    _wait_for_config(per_user_limit=1)
    for name in ("alice", "bob", "carol", "dave", "erin"):
        make_user(name)
        assert login(Client(), name)[0] == 200
    status, body = login(Client(), "alice")
    assert status == 403, body
    assert body["refusal"] == (
        "You are signed in on this site as often as one user may be (1 at a time). Please sign out elsewhere first."
    ), body
    assert "20" not in body["refusal"]
    # ending her other session lets her in under the same rule: offered
    assert body["offer"], body


@pytest.mark.parametrize("mode", ["local", "central"])
def test_no_offer_when_the_users_own_sessions_free_no_counted_place(site, mode):
    """count_mode live: the user's dangling session takes no counted place, so ending it cannot help."""
    s = site(session_limit=2, count_mode="live", idle_timeout_seconds=60)
    s.configure(MODE=mode)
    _wait_for_config(count_mode="live")
    for name in ("alice", "bob", "carol"):
        make_user(name)
    old = Client()
    assert login(old, "alice")[0] == 200
    old_key = old.cookies["sessionid"].value
    # alice's session was last used two hours ago: dangling for the site and for headcount
    make_idle(old_key, dt.timedelta(hours=2))
    two_hours_ago = (timezone.now() - dt.timedelta(hours=2)).isoformat()
    hc_client.post_events([{"type": "session.ended", "session": session_ref(old), "at": two_hours_ago, "reason": "logout"}])
    hc_client.post_events([{"type": "session.started", "session": "alice-elsewhere", "at": two_hours_ago, "user": "alice"}])
    for name in ("bob", "carol"):
        assert login(Client(), name)[0] == 200
    status, body = login(Client(), "alice")
    assert status == 403, body
    assert body["refusal"] == "There are more than 2 active user sessions. Please try again later."
    assert body["offer"] is None, body
    assert Session.objects.filter(session_key=old_key).exists()


@pytest.mark.parametrize("mode", ["local", "central"])
def test_service_account_takes_no_place(site, headcount, mode):
    """exempt_roles: a service account signs in at a full site; a normal user is still refused."""
    from headcount_django import adminstatus

    s = site(session_limit=2, exempt_roles=["service"])
    s.configure(MODE=mode, SERVICE_ACCOUNTS=["robot"])
    _wait_for_config(exempt_roles=("service",))
    for name in ("alice", "bob", "carol", "robot"):
        make_user(name)
    assert login(Client(), "alice")[0] == 200
    assert login(Client(), "bob")[0] == 200
    assert adminstatus.status(fresh=True).counted == 2
    active = _usage(headcount, s.slug)["active"]

    robot = Client()
    assert login(robot, "robot") == (200, {"ok": True, "user": "robot"})
    status, body = login(Client(), "carol")
    assert status == 403 and body["refusal"] == "There are more than 2 active user sessions. Please try again later."
    # the robot's session is listed, and the agent does not count it
    listed = s.sessions("active")[session_ref(robot)]
    assert listed["user"] == "robot" and listed["exempt"] is True, listed
    assert adminstatus.status(fresh=True).counted == 2
    # headcount counts it neither: admitted with its roles (central), or reported by a
    # session.started that carries the exempt role (local)
    assert _usage(headcount, s.slug)["active"] == active == 2
    # a second one as well; the normal users' count stays full
    assert login(Client(), "robot")[0] == 200
    assert login(Client(), "carol")[0] == 403


def test_refusal_texts_set_by_the_site(site):
    s = site(session_limit=1)
    s.configure(MODE="central", MESSAGES={"limit": "Full ({limit}). Come back after lunch."})
    for name in ("alice", "bob"):
        make_user(name)
    assert login(Client(), "alice")[0] == 200
    status, body = login(Client(), "bob")
    assert status == 403 and body["refusal"] == "Full (1). Come back after lunch.", body


# -- bad input and the site's own maintenance ------------------------------------------------


def _push(url: str, secret: str, kind: str, data: dict) -> tuple[int, dict]:
    body = json.dumps({"type": kind, "timestamp": timezone.now().isoformat(), "data": data}).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", **sign_webhook(secret, body)}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_unknown_push_and_older_config_are_ignored_and_logged(site, live_server, caplog):
    s = site(session_limit=10)
    s.configure(MODE="local")
    held = _wait_for_config(session_limit=10)
    url, secret = f"{live_server.url}/headcount/webhook/", s.created["webhook_secret"]
    caplog.set_level("WARNING", logger="headcount_django")

    status, answer = _push(url, secret, "site.renamed", {"site": s.slug, "name": "x"})
    assert status == 200 and answer["status"] == "ignored", answer
    assert "ignored a push of unknown type 'site.renamed'" in caplog.text

    older = {**held.as_dict(), "site": s.slug, "config_version": held.config_version - 1, "session_limit": 99}
    status, answer = _push(url, secret, "site.config_changed", older)
    assert status == 200 and answer["status"] == "ignored", answer
    assert f"ignored config version {held.config_version - 1}" in caplog.text
    assert config.current().session_limit == 10


def test_missing_cache_table_blocks_nothing(site, live_server, headcount, settings, caplog, capsys):
    """The site's database was rebuilt without createcachetable: sign-ins, pushes and kills still work."""
    from django.core.management.base import CommandError

    from headcount_django import shared

    settings.CACHES = {
        **settings.CACHES,
        "headcount": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "headcount_cache_dropped"},
    }
    shared.reset()
    s = site(session_limit=2)
    s.configure(MODE="local", CACHE="headcount")
    caplog.set_level("INFO", logger="headcount_django")
    try:
        for name in ("alice", "bob", "carol"):
            make_user(name)
        alice, bob = Client(), Client()
        assert login(alice, "alice")[0] == 200  # the config is pulled, and held in this process
        assert login(bob, "bob")[0] == 200
        status, body = login(Client(), "carol")
        assert status == 403 and "more than 2" in body["refusal"]  # decided with what it holds

        # a kill is applied, and the webhook's answer says what is wrong
        ref, key = session_ref(bob), bob.cookies["sessionid"].value
        status, answer = _push(f"{live_server.url}/headcount/webhook/", s.created["webhook_secret"], "session.kill",
                               {"site": s.slug, "sessions": [ref], "reason": "killed"})
        assert status == 200 and answer["killed"] == 1, answer
        assert "createcachetable" in answer["warning"]
        assert not Session.objects.filter(session_key=key).exists()
        assert login(Client(), "carol")[0] == 200

        errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "headcount_django"]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "manage.py createcachetable" in errors[0].getMessage()

        with pytest.raises(CommandError, match="manage.py createcachetable"):
            call_command("headcount_check")
        assert "headcount answered" in capsys.readouterr().out
    finally:
        shared.reset()


def test_offline_grace_decides_by_the_last_config_then_the_sites_choice(site, headcount):
    """headcount unreachable in central mode: the local rule with the last pushed config, then CENTRAL_UNREACHABLE."""
    from headcount_django import shared

    s = site(session_limit=2)
    s.configure(MODE="central", CENTRAL_UNREACHABLE="refuse", ADMISSION_TIMEOUT=0.5)
    _wait_for_config(session_limit=2)
    for name in ("alice", "bob", "carol", "dave"):
        make_user(name)
    alice = Client()
    assert login(alice, "alice")[0] == 200
    assert login(Client(), "bob")[0] == 200
    denied = headcount.api("GET", f"/v1/sites/{s.slug}/usage")["denied_last_24h"]

    # headcount cannot be reached (a closed port), within OFFLINE_GRACE
    s.configure(MODE="central", CENTRAL_UNREACHABLE="refuse", ADMISSION_TIMEOUT=0.5, URL="http://127.0.0.1:9")
    status, body = login(Client(), "carol")
    assert status == 403 and body["refusal"] == "There are more than 2 active user sessions. Please try again later."
    alice.post("/logout/")
    carol = Client()
    assert login(carol, "carol")[0] == 200  # a place is free by the local rule

    # the grace is over (the last answer lies two days back): the site's choice, refuse
    shared.set(f"headcount:{s.slug}:contact", time.time() - 2 * 86400, None)
    hc_client.reset_contact()
    status, body = login(Client(), "dave")
    assert status == 403 and body["refusal"] == "Sign-in is not possible right now. Please try again later."

    # back online: the refusal made offline and the offline sign-in reach headcount afterwards
    s.configure(MODE="central", CENTRAL_UNREACHABLE="refuse")
    sender.get_sender().request_snapshot()
    wait_until(lambda: headcount.api("GET", f"/v1/sites/{s.slug}/usage")["denied_last_24h"] == denied + 1,
               timeout=15, message="the offline refusal reported")
    assert s.sessions("active")[session_ref(carol)]["user"] == "carol"


# -- every sign-in path goes through the limit -----------------------------------------------


def _usage(headcount, slug: str) -> dict:
    assert sender.flush(15)
    return headcount.api("GET", f"/v1/sites/{slug}/usage")


@pytest.mark.parametrize("mode", ["local", "central"])
def test_social_sign_in_goes_through_the_limit(site, headcount, mode):
    """python-social-auth signs in without a password; the limit still decides, at login()."""
    s = site(session_limit=1)
    s.configure(MODE=mode)
    _wait_for_config(session_limit=1)
    make_user("alice")
    alice = Client()
    assert login(alice, "alice")[0] == 200
    denied = _usage(headcount, s.slug)["denied_last_24h"]

    bob = Client()
    response = bob.post("/social/complete/username/", {"username": "bob"})
    assert response.status_code == 302, response.content[:300]
    # refused: not signed in, and told why at the next request
    assert bob.get("/notices/").json() == {
        "user": None, "messages": ["There are more than 1 active user sessions. Please try again later."],
    }
    assert bob.get("/notices/").json()["messages"] == []  # told once
    assert _usage(headcount, s.slug)["denied_last_24h"] == denied + 1
    assert len(s.sessions("active")) == 1

    alice.post("/logout/")
    assert sender.flush(15)  # headcount learns of the sign-out (central mode decides by its count)
    response = bob.post("/social/complete/username/", {"username": "bob"})
    assert response.status_code == 302
    assert bob.get("/whoami/").json() == {"user": "bob"}
    active = s.sessions("active")
    assert list(active) == [session_ref(bob)] and active[session_ref(bob)]["user"] == "bob"


@pytest.mark.parametrize("mode", ["local", "central"])
def test_admin_login_goes_through_the_limit(site, mode):
    s = site(session_limit=1)
    s.configure(MODE=mode)
    _wait_for_config(session_limit=1)
    make_user("alice")
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    alice = Client()
    assert login(alice, "alice")[0] == 200
    admin = Client()
    page = admin.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD, "next": "/admin/"})
    assert page.status_code == 200
    assert "There are more than 1 active user sessions. Please try again later." in page.content.decode()
    assert admin.get("/whoami/").json() == {"user": None}
    alice.post("/logout/")
    assert sender.flush(15)
    page = admin.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD, "next": "/admin/"})
    assert page.status_code == 302 and page["Location"] == "/admin/"
    assert list(s.sessions("active")) == [session_ref(admin)]


def test_two_factor_sign_in_takes_the_place_when_the_session_is_created(site, headcount):
    """Central mode: the password step is admitted but creates no session; a code never entered holds no place."""
    s = site(session_limit=2)
    s.configure(MODE="central")
    for name in ("alice", "bob"):
        make_user(name)
    alice = Client()
    assert login(alice, "alice")[0] == 200
    before = _usage(headcount, s.slug)["active"]
    assert before == 1

    bob = Client()
    first = bob.post("/two-step/", {"username": "bob", "password": PASSWORD})
    assert first.status_code == 200 and first.json()["code_sent"] is True
    # the admission of the password step is ended with its request: nothing counted
    wait_until(lambda: _usage(headcount, s.slug)["active"] == before, timeout=10, message="the unfinished sign-in released")
    time.sleep(1.0)
    assert _usage(headcount, s.slug)["active"] == before
    assert [row["end_reason"] for row in s.sessions("ended").values()] == ["logout"]

    # the code is entered: the session is created, admitted then, and counted once
    assert bob.post("/two-step/verify/").json() == {"ok": True}
    assert bob.get("/whoami/").json() == {"user": "bob"}
    active = s.sessions("active")
    assert set(active) == {session_ref(alice), session_ref(bob)}
    assert _usage(headcount, s.slug)["active"] == 2

    # carol's password step finds a free place, but it is gone when her session would be created
    make_user("carol")
    make_user("dave")
    alice.post("/logout/")
    assert sender.flush(15)
    carol = Client()
    assert carol.post("/two-step/", {"username": "carol", "password": PASSWORD}).json()["code_sent"] is True
    assert sender.flush(15)  # her admission's release is delivered like any event
    assert login(Client(), "dave")[0] == 200
    response = carol.post("/two-step/verify/")
    assert response.status_code == 403
    assert carol.get("/notices/").json()["messages"] == ["There are more than 2 active user sessions. Please try again later."]
    assert _usage(headcount, s.slug)["active"] == 2


# -- the user told why ----------------------------------------------------------------------


def test_user_is_told_why_their_session_ended(site, headcount):
    from django.core.cache import caches

    s = site(session_limit=1)
    s.configure(MODE="central")
    make_user("alice")
    laptop = Client()
    assert login(laptop, "alice")[0] == 200
    laptop_key, laptop_ref = laptop.cookies["sessionid"].value, session_ref(laptop)
    headcount.api("DELETE", f"/v1/sites/{s.slug}/sessions/{laptop_ref}")
    wait_until(lambda: not Session.objects.filter(session_key=laptop_key).exists(), timeout=15, message="the kill")
    # the note is kept under the session's hash, never its key
    cached = " ".join(str(k) for k in caches["default"]._cache)
    assert laptop_ref in cached and laptop_key not in cached
    told = laptop.get("/notices/").json()
    assert told["user"] is None and len(told["messages"]) == 1
    assert re.fullmatch(r"You were signed out at .+ by an administrator\.", told["messages"][0]), told
    assert laptop.get("/notices/").json()["messages"] == []  # once

    # replaced: the user ended it from another browser (self-service)
    assert login(laptop, "alice")[0] == 200
    phone = Client()
    status, body = login(phone, "alice")
    assert status == 403 and body["offer"]
    assert phone.post("/headcount/replace/", _offer_form(phone, body["offer"])).status_code == 302
    told = laptop.get("/notices/").json()
    assert told["user"] is None and told["messages"][0].endswith("because you signed in elsewhere."), told


# -- the site's administrators warned in the site ----------------------------------------------


@pytest.mark.django_db
def test_admin_banner_at_80_percent_and_after_refusals(settings):
    settings.HEADCOUNT = {**settings.HEADCOUNT, "MODE": "local", "SITE": "local-admin-banner"}
    config.apply({"config_version": 1, "session_limit": 5})
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    get_user_model().objects.create_user("editor", password=PASSWORD, is_staff=True)
    root = Client()
    assert login(root, "root")[0] == 200
    for name in ("alice", "bob", "carol"):
        make_user(name)
        assert login(Client(), name)[0] == 200
    page = root.get("/admin/").content.decode()
    assert "4 of 5 user sessions are in use (80 %)." in page, page[:2000]
    assert "refused by the sessions limit" not in page
    # where to look: headcount's page of the site (STATUS_URL's default)
    assert "the site&#x27;s page in headcount, http://127.0.0.1:9/ui/#/sites/local-admin-banner." in page

    make_user("dave")
    make_user("erin")
    assert login(Client(), "dave")[0] == 200
    assert login(Client(), "erin")[0] == 403
    page = root.get("/admin/").content.decode()
    assert "5 of 5 user sessions are in use (100 %). 1 sign-in was refused by the sessions limit in the last 24 hours." in page
    # staff who do not administer the site are not warned
    editor = Client()
    editor.logout()
    config.apply({"config_version": 2, "session_limit": 7})
    assert login(editor, "editor")[0] == 200
    assert "sessions are in use" not in editor.get("/admin/").content.decode()
    sender.reset()


def test_two_configs_stored_at_once_keep_the_newer(site, monkeypatch):
    """headcount sends a site up to four pushes at once: when two workers store two configs at
    the same moment, the newer one stays (the older used to overwrite it now and then)."""
    site(session_limit=3)
    held = _wait_for_config(session_limit=3)
    base = held.as_dict()
    newer = {**base, "config_version": held.config_version + 2, "session_limit": 7}
    older = {**base, "config_version": held.config_version + 1, "session_limit": 5}
    real_current = config.current

    def slow_current():
        # widen the window between reading the held version and storing the new one
        found = real_current()
        time.sleep(0.05)
        return found

    monkeypatch.setattr(config, "current", slow_current)
    results = {}
    workers = [
        threading.Thread(target=lambda d=d: results.setdefault(d["config_version"], config.apply(d)))
        for d in (newer, older)
    ]
    for w in workers:
        w.start()
        time.sleep(0.01)
    for w in workers:
        w.join()
    monkeypatch.setattr(config, "current", real_current)
    stored = config.current()
    assert (stored.config_version, stored.session_limit) == (held.config_version + 2, 7), results
    assert results == {held.config_version + 2: True, held.config_version + 1: False}


# -- a database cache that drops a write ------------------------------------------------------

@contextlib.contextmanager
def _dropped_writes(table: str, key_part: str, times: int):
    """The next ``times`` writes of a key containing ``key_part`` to the cache table fail as SQLite fails
    them when another worker commits at the same moment; Django's DatabaseCache swallows the error."""
    from django.db import OperationalError

    dropped = []

    def wrapper(execute, sql, params, many, context):
        writes = sql.lstrip().upper().startswith(("INSERT", "UPDATE")) and table in sql
        if writes and len(dropped) < times and any(key_part in str(p) for p in params or ()):
            dropped.append(sql.split()[0])
            raise OperationalError("database is locked")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield dropped


@pytest.fixture
def database_cache(settings, db):
    """The agent's shared cache in a database table, as on a site with several worker processes."""
    from headcount_django import shared

    table = "headcount_cache_dropped_writes"
    settings.CACHES = {**settings.CACHES, "headcount": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": table}}
    call_command("createcachetable", table)
    secret = "whsec_" + base64.b64encode(b"dropped-writes-secret").decode()
    settings.HEADCOUNT = {
        "URL": "http://127.0.0.1:9", "SITE": "dropped-writes", "TOKEN": "token", "WEBHOOK_SECRET": secret,
        "MODE": "local", "CACHE": "headcount", "SNAPSHOT_INTERVAL": 0, "CONFIG_INTERVAL": 0,
    }
    shared.reset()
    yield table, secret
    shared.reset()


def _signed_push(secret: str, kind: str, data: dict, msg_id: str):
    body = json.dumps({"type": kind, "timestamp": timezone.now().isoformat(), "data": data}).encode()
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign_webhook(secret, body, msg_id).items()}
    response = Client().post("/headcount/webhook/", body, content_type="application/json", **headers)
    return response.status_code, response.json()


def _config_data(version: int, limit: int) -> dict:
    return {"site": "dropped-writes", "config_version": version, "session_limit": limit}


def test_a_push_whose_id_write_was_dropped_is_applied_not_taken_for_a_duplicate(database_cache):
    """Two workers on SQLite: the write of a push's id failed because the other worker committed at the
    same moment. DatabaseCache.add() then answers False as for a known id; the push used to be answered
    200 "duplicate" and its config lost (seen in the Lino suite: version 5 never applied)."""
    table, secret = database_cache
    with _dropped_writes(table, ":webhook:msg_first", 1) as dropped:
        status, answer = _signed_push(secret, "site.config_changed", _config_data(4, 10), "msg_first")
    assert dropped == ["INSERT"], "no write was dropped; the test proves nothing"
    assert status == 200 and answer["status"] == "applied", answer
    assert config.current().config_version == 4 and config.current().session_limit == 10
    # a real duplicate is still one
    status, answer = _signed_push(secret, "site.config_changed", _config_data(4, 10), "msg_first")
    assert status == 200 and answer["status"] == "duplicate", answer


def test_a_dropped_config_write_is_written_again(database_cache):
    table, secret = database_cache
    with _dropped_writes(table, ":config", 1) as dropped:
        status, answer = _signed_push(secret, "site.config_changed", _config_data(5, 7), "msg_config")
    assert dropped, "no write was dropped; the test proves nothing"
    assert status == 200 and answer["status"] == "applied", answer
    assert caches["headcount"].get("headcount:dropped-writes:config")["config_version"] == 5


def test_a_push_that_could_not_be_recorded_is_asked_for_again(database_cache):
    """Every write dropped: no 2xx (headcount sends the push again), and the push sent again is applied."""
    from headcount_django import shared

    table, secret = database_cache
    with _dropped_writes(table, ":webhook:msg_again", shared.WRITE_ATTEMPTS) as dropped:
        status, answer = _signed_push(secret, "site.config_changed", _config_data(6, 3), "msg_again")
    assert len(dropped) == shared.WRITE_ATTEMPTS
    assert status == 503, answer
    assert config.current() is None
    status, answer = _signed_push(secret, "site.config_changed", _config_data(6, 3), "msg_again")
    assert status == 200 and answer["status"] == "applied", answer
    assert config.current().session_limit == 3

    # the config itself never kept: a 500, the id forgotten, and the push sent again is applied
    with _dropped_writes(table, ":config", shared.WRITE_ATTEMPTS):
        status, answer = _signed_push(secret, "site.config_changed", _config_data(7, 4), "msg_lost")
    assert status == 500, answer
    assert config.current().config_version == 6
    status, answer = _signed_push(secret, "site.config_changed", _config_data(7, 4), "msg_lost")
    assert status == 200 and answer["status"] == "applied", answer
    assert config.current().session_limit == 4
