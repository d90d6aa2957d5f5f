"""The agent in a real Lino 26.10 site (gunicorn, 2 workers, database cache) against a real headcount.

One Lino site per USE_TZ value, reused by the steps of this module in order. After
every step headcount's ``active`` must equal the number of unexpired signed-in rows
of the site's ``django_session`` table, read by the test itself, within CONVERGE
seconds (what the README promises for the settings used here: FLUSH_INTERVAL 0.2 s,
RETRY_MAX_DELAY 1 s, the start-up snapshot 5 s after a worker's first request).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
import threading
import time
import traceback
import urllib.request
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("lino", reason="the Lino tests need the 'lino' extra (run-tests installs it)")

from lino_harness import ADMIN, IDLE_TIMEOUT, Browser, LinoSite, wait_for  # noqa: E402

CONVERGE = 15.0


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(
    scope="module",
    params=[(False, "Europe/Brussels"), (True, "America/New_York")],
    ids=["use_tz_false", "use_tz_true"],
)
def lino(request, headcount):
    use_tz, time_zone = request.param
    site = LinoSite(headcount, use_tz, time_zone)
    try:
        site.prepare()
        site.start()
        # signed in first and never used again: dangling once IDLE_TIMEOUT has passed,
        # in time for the steps near the end of the module
        site.idle = Browser(site)
        assert site.idle.sign_in(site.user()).get("success") is True
        yield site
    finally:
        if site.process is not None and site.process.poll() is not None:
            print(site.log_tail())
        site.cleanup()


def expiry_matches(lino: LinoSite, browser) -> None:
    """headcount's expires_at for the session is the row's expire_date (time zones right)."""
    row = next(r for r in lino.rows() if r["key"] == browser.key)
    theirs = lino.sessions()[browser.ref]
    assert abs(parse(theirs["expires_at"]) - row["expire_date"]) < dt.timedelta(seconds=2), (theirs, row)


def told_when(lino: LinoSite, message: str, why: str, ended_at: str) -> None:
    """The alert says why the session ended and when: headcount's end time in the site's time zone."""
    match = re.search(r"You were signed out at (.+?)(?: by |: | because )", message)
    assert match and why in message, (why, message)
    local = parse(ended_at).astimezone(ZoneInfo(lino.time_zone))
    said = match.group(1)
    # Django's default DATETIME_FORMAT ("N j, Y, P"): the day, the year and the hour are in it
    assert str(local.year) in said and f" {local.day}," in said, (said, local)
    hour = local.hour % 12 or 12
    assert re.search(rf"\b{hour}(:\d\d)? ?[ap]\.m\.|\b(noon|midnight)\b", said), (said, local)


def test_sign_in_activity_sign_out(lino):
    a, b = lino.signed_in(lino.user()), lino.signed_in(lino.user())
    lino.converge("two sign-ins", CONVERGE)
    rows = lino.sessions("active")
    assert rows[a.ref]["user"] == a.user and rows[b.ref]["user"] == b.user
    assert rows[a.ref]["user_agent"] == "lino-test-browser/1.0" and rows[a.ref]["ip"] == "127.0.0.1"
    expiry_matches(lino, a)

    before = parse(rows[a.ref]["last_activity_at"])
    time.sleep(1.1)  # timestamps are in milliseconds; make the next one visibly later
    a.json("/test/anonymous/")  # a request that saves the session: activity
    wait_for(lambda: parse(lino.sessions()[a.ref]["last_activity_at"]) > before, CONVERGE, "the activity")
    expiry_matches(lino, a)

    b.sign_out()
    lino.converge("a sign-out", CONVERGE)
    assert lino.sessions()[b.ref]["end_reason"] == "logout"
    a.sign_out()
    lino.converge("another sign-out", CONVERGE)


def test_kill_pushed_from_headcount(lino):
    c = lino.signed_in(lino.user())
    lino.converge("sign-in before a kill", CONVERGE)
    key, ref = c.key, c.ref
    lino.headcount.api("DELETE", f"/v1/sites/{lino.slug}/sessions/{ref}")
    wait_for(lambda: all(r["key"] != key for r in lino.rows()), CONVERGE, "the pushed kill to delete the row")
    lino.converge("a kill pushed from headcount", CONVERGE)
    assert lino.sessions()[ref]["end_reason"] == "killed"
    # the note of why it ended is kept under headcount's id of the session, never its raw key
    cached = lino.cache_entries()
    assert any(k.endswith(f":ended:{ref}") for k in cached), sorted(cached)
    assert not any(key in k or key in repr(v) for k, v in cached.items()), "the raw session key is kept"
    assert c.whoami() is None
    # signing in again, the user is told (an alert in Lino's front end) when and why the session ended
    name = c.user
    answer = c.sign_in(name)
    assert answer.get("success") is True and answer.get("alert"), answer
    told_when(lino, answer.get("message", ""), "by an administrator.", lino.sessions()[ref]["ended_at"])
    assert c.sign_in(name).get("alert") is None  # told once
    c.sign_out()
    lino.converge("told why, signed in again and out", CONVERGE)


def test_expiry_and_clearsessions(lino):
    lino.restart(cookie_age=8)  # sessions live 8 s unless used
    try:
        d = lino.signed_in(lino.user())
        lino.converge("a session with 8 s to live", CONVERGE)
        expiry_matches(lino, d)
        key, ref = d.key, d.ref
        # both sides let it expire at the same instant, without any event
        wait_for(lambda: all(r["key"] != key for r in lino.rows()), 15, "the row to expire")
        lino.converge("the session expired", CONVERGE)
        assert ref in lino.sessions("expired")
        # a shorter expiry set by the site is not something headcount can learn from an
        # event (expires_at only grows): it learns when clearsessions deletes the row
        e = lino.signed_in(lino.user())
        assert e.json("/test/expire-in/1/") == {"expires_in": 1}
        e_key = e.key
        wait_for(lambda: all(r["key"] != e_key for r in lino.rows()), 10, "the shortened row to expire")
        lino.converge("a shortened expiry passed (headcount still counts it)", CONVERGE, extra=1)
        result = lino.manage("clearsessions")
        assert result.returncode == 0
        lino.converge("clearsessions", CONVERGE)
        row = lino.sessions()[e.ref]
        assert row["state"] == "ended" and row["end_reason"] == "expired"
        d.user = e.user = None
    finally:
        lino.restart()


def test_central_admission_at_the_limit(lino):
    lino.sign_out_all()
    lino.restart(MODE="central")
    try:
        _, signed_in = lino.counts()
        lino.configure(session_limit=signed_in + 1)
        denied = lino.usage()["denied_last_24h"]
        a = lino.signed_in(lino.user())
        # headcount admitted exactly the id the site's session has
        assert lino.sessions("active")[a.ref]["user"] == a.user
        lino.converge("central: admitted at limit - 1", CONVERGE)
        b = lino.browser()
        answer = b.sign_in(lino.user())
        assert answer.get("success") is False and "active user sessions" in str(answer), answer
        assert b.whoami() is None
        lino.converge("central: refused at the limit", CONVERGE)
        wait_for(lambda: lino.usage()["denied_last_24h"] == denied + 1, CONVERGE, "the central refusal")
        time.sleep(1.0)  # a duplicate session.refused would arrive within a flush interval
        assert lino.usage()["denied_last_24h"] == denied + 1, "a central refusal counted twice"
        a.sign_out()
        lino.converge("central: signed out", CONVERGE)
    finally:
        lino.configure(session_limit=None)
        lino.restart()


def test_per_site_deal_above_the_plan(lino):
    """The plan allows 2 sessions, the provider sells this one site 10: the tenth session is admitted,
    the eleventh refused, by the agent (local mode) and by headcount (central mode)."""
    if lino.use_tz:
        pytest.skip("once is enough: nothing here depends on the time zone")
    lino.sign_out_all()
    names = [lino.user() for _ in range(11)]
    plan = lino.created["plan"]
    passed = False
    try:
        # two pushes a few milliseconds apart, as headcount sends them: each must be kept
        lino.headcount.api("PATCH", f"/v1/plans/{plan}", {"session_limit": 2})
        lino.configure(session_limit=10)
        assert lino.headcount.api("GET", f"/v1/sites/{lino.slug}")["provider_session_limit"] == 10
        for mode in ("local", "central"):
            if mode == "central":
                lino.restart(MODE="central")
            _, signed_in = lino.counts()  # the module's idle session
            denied = lino.usage()["denied_last_24h"]
            browsers = [lino.signed_in(name) for name in names[:2]]
            lino.converge(f"deal, {mode}: above the plan's 2", CONVERGE)
            browsers += [lino.signed_in(name) for name in names[2:10 - signed_in]]
            lino.converge(f"deal, {mode}: the tenth admitted", CONVERGE)
            assert lino.counts()[1] == 10
            refused = lino.browser()
            answer = refused.sign_in(names[10 - signed_in])
            assert answer.get("success") is False and "more than 10 active user sessions" in str(answer), answer
            assert refused.whoami() is None
            wait_for(
                lambda expected=denied + 1: lino.usage()["denied_last_24h"] == expected, CONVERGE, f"the refusal ({mode}) in denied_last_24h"
            )
            lino.converge(f"deal, {mode}: the eleventh refused", CONVERGE)
            for b in browsers:
                b.sign_out()
            lino.converge(f"deal, {mode}: signed out", CONVERGE)
        passed = True
    finally:
        try:
            lino.headcount.api("PATCH", f"/v1/plans/{plan}", {"session_limit": 100})
            lino.configure(session_limit=None)
        except Exception:
            if passed:
                raise
            # the step's own failure (above) is the one pytest reports; this one is printed
            traceback.print_exc()
        finally:
            lino.restart()


def test_reserved_place_and_self_service_in_central_mode(lino):
    """The site administrator's reserved place, and a user ending their other session from the sign-in."""
    if lino.use_tz:
        pytest.skip("once is enough: nothing here depends on the time zone")
    lino.sign_out_all()
    lino.restart(MODE="central")
    try:
        _, signed_in = lino.counts()  # the module's idle session
        # a plan limit of signed_in + 2 with one place reserved for the admin role
        lino.configure(session_limit=signed_in + 2, reserved_slots=1)
        a = lino.signed_in(lino.user())  # ordinary users fill limit - 1
        b = lino.browser()
        refused = b.sign_in(lino.user())
        # the message names the reason: the place left is reserved, the limit itself is not reached
        assert refused.get("success") is False and "kept for its administrators" in str(refused), refused
        assert b.whoami() is None
        admin = lino.browser()
        answer = admin.sign_in(ADMIN)
        assert answer.get("success") is True, answer
        # the site administrator is warned, with the numbers: every place in use, a sign-in refused
        assert answer.get("alert") and (
            f"{signed_in + 2} of {signed_in + 2} user sessions are in use (100 %)." in answer["message"]
        ), answer
        # as many refusals as headcount recorded for the site (this one and the earlier steps')
        denied = lino.usage()["denied_last_24h"]
        assert re.search(rf"\b{denied} sign-ins? (was|were) refused by the sessions limit in the last 24 hours", answer["message"]), (denied, answer)
        assert admin.whoami() == ADMIN
        assert lino.sessions("active")[admin.ref]["user"] == ADMIN
        lino.converge("central: the admin took the reserved place", CONVERGE)
        assert lino.usage()["counted"] == signed_in + 2
        a.sign_out()
        admin.sign_out()
        lino.converge("central: signed out after the reserved place", CONVERGE)

        # self-service: the same user, already signed in elsewhere, at a limit that is full
        lino.configure(session_limit=signed_in + 1, reserved_slots=None)
        name = lino.user()
        old = lino.signed_in(name)
        old_key, old_ref = old.key, old.ref
        lino.converge("central: a user signed in on one device", CONVERGE)
        new = lino.browser()
        answer = new.sign_in(name)
        assert answer.get("success") is False, answer
        message = answer.get("message", "")
        assert "You have 1 other session (last used" in message and "end it and sign in" in message, answer
        link = re.search(r'href="(/headcount/replace/\?t=[^"]+)"', message)
        assert link, message
        assert link.group(1) in answer.get("eval_js", ""), answer  # Lino's front end opens the page
        assert new.whoami() is None
        # the link works only in the browser that typed the password
        stranger = lino.browser()
        assert stranger.request(link.group(1))[0] == 400
        status, location = new.follow_offer(link.group(1))
        assert status == 302 and location == "/", (status, location)
        assert new.whoami() == name
        wait_for(lambda: all(r["key"] != old_key for r in lino.rows()), CONVERGE, "the replaced session's row to go")
        assert old.whoami() is None
        ended = lino.sessions()[old_ref]
        assert ended["state"] == "ended" and ended["end_reason"] == "replaced", ended
        # the other device signs in again: told why its session ended, and refused (the place is taken)
        again = old.sign_in(name)
        assert again.get("success") is False and again.get("alert"), again
        told_when(lino, again["message"], "because you signed in elsewhere.", ended["ended_at"])
        assert "You have 1 other session" in again["message"], again
        assert lino.sessions("active")[new.ref]["user"] == name
        old.user = None
        lino.converge("central: self-service replaced the other session", CONVERGE)
        new.sign_out()
        lino.converge("central: signed out after self-service", CONVERGE)
    finally:
        lino.configure(session_limit=None, reserved_slots=None)
        lino.restart()


def test_headcount_down_and_back(lino):
    a = lino.signed_in(lino.user())
    lino.converge("sign-in before the outage", CONVERGE)
    lino.headcount.stop()
    try:
        started = time.monotonic()
        b, c = lino.signed_in(lino.user()), lino.signed_in(lino.user())
        a.sign_out()
        assert time.monotonic() - started < 10, "requests waited for headcount"
        # a row deleted without any signal: only a snapshot can tell headcount
        with __import__("sqlite3").connect(lino.db_path, timeout=30) as db:
            db.execute("DELETE FROM django_session WHERE session_key = ?", [c.key])
        c.user = None
    finally:
        lino.headcount.start()
    lino.converge("headcount down and back", CONVERGE)
    assert lino.sessions()[b.ref]["user"] == b.user
    b.sign_out()
    lino.converge("signed out after the outage", CONVERGE)


def test_site_restart_while_headcount_is_down(lino):
    a = lino.signed_in(lino.user())
    lino.converge("sign-in before the restart", CONVERGE)
    # a running worker's periodic round holds the snapshot lock for 540 s
    lock = lino.browser()
    lock.json("/test/snapshot-lock/")
    assert lock.json("/test/snapshot-lock/") == {"taken": False}
    lino.headcount.stop()
    try:
        b = lino.signed_in(lino.user())
        a.sign_out()
        # the workers stop while headcount is down: their queues are lost
        lino.restart()
        lino.browser().json("/test/state/")  # the new workers serve requests
    finally:
        lino.headcount.start()
    assert lock.json("/test/snapshot-lock/") == {"taken": False}, "the old lock is gone; this test needs it"
    lino.converge("site restarted while headcount was down", CONVERGE)
    assert lino.sessions("active")[b.ref]["user"] == b.user
    assert lino.sessions()[a.ref]["state"] == "ended"
    b.sign_out()
    lino.converge("signed out after the restart", CONVERGE)


def test_offline_grace_in_central_mode(lino):
    """headcount stops answering a central-mode site: for OFFLINE_GRACE the local rule decides with the
    last pushed config, then the site's choice (closed under one USE_TZ, open under the other); the
    refusal made offline reaches headcount once it is back."""
    grace = 10
    choice = "open" if lino.use_tz else "closed"
    lino.sign_out_all()
    lino.restart(MODE="central", OFFLINE_GRACE=grace, CENTRAL_UNREACHABLE=choice, ADMISSION_TIMEOUT=1.0)
    try:
        _, signed_in = lino.counts()  # the module's idle session
        limit = signed_in + 2
        lino.configure(session_limit=limit)
        _admitted = lino.signed_in(lino.user())  # headcount answers: the grace runs from here
        lino.converge("offline grace: admitted by headcount", CONVERGE)
        denied = lino.usage()["denied_last_24h"]
        lino.headcount.stop()
        try:
            b = lino.signed_in(lino.user())  # the local rule: limit - 1 counted, admitted
            assert lino.counts()[1] == limit
            c = lino.browser()
            answer = c.sign_in(lino.user())
            assert answer.get("success") is False, answer
            assert f"There are more than {limit} active user sessions. Please try again later." in str(answer), answer
            assert c.whoami() is None
            # the grace is over in both workers (each asks the shared cache when headcount last answered)
            seen: dict[int, float] = {}
            probe = lino.browser()

            def grace_over() -> bool:
                state = probe.json("/test/state/")
                seen[state["pid"]] = state["offline"]
                return len(seen) == 2 and all(v is not None and v > grace for v in seen.values())

            wait_for(grace_over, grace + CONVERGE, "the offline grace to be over in both workers")
            d = lino.browser()
            name = lino.user()
            answer = d.sign_in(name)
            if choice == "closed":
                assert answer.get("success") is False, answer
                assert "Sign-in is not possible right now. Please try again later." in str(answer), answer
                assert d.whoami() is None
            else:
                assert answer.get("success") is True, answer
                assert d.whoami() == name
            assert lino.counts()[1] == limit + (choice == "open")
        finally:
            lino.headcount.start()
        # the sessions admitted offline and the one limit refusal reach headcount; the closed
        # refusal is not a limit refusal and is not reported
        wait_for(lambda: lino.usage()["denied_last_24h"] == denied + 1, CONVERGE, "the refusal made offline")
        lino.converge(f"offline grace: back online (after the grace: {choice})", CONVERGE)
        assert lino.sessions("active")[b.ref]["user"] == b.user
        if choice == "open":
            assert lino.sessions("active")[d.ref]["user"] == name
        time.sleep(1.0)  # a second session.refused would arrive within a flush interval
        assert lino.usage()["denied_last_24h"] == denied + 1
        lino.sign_out_all()
        lino.converge("offline grace: signed out", CONVERGE)
    finally:
        lino.configure(session_limit=None)
        lino.restart()


def test_administrators_warned_at_80_percent_and_after_refusals(lino):
    """Local mode: a site administrator's sign-in comes with the numbers (from 80 % of the limit, and
    the refusals of the last 24 hours) and where to look; ordinary users are not warned."""
    limit = 10
    lino.sign_out_all()
    lino.configure(session_limit=limit)
    try:
        _, signed_in = lino.counts()  # the module's idle session
        users = [lino.signed_in(lino.user()) for _ in range(limit - 4 - signed_in)]
        lino.converge("administrators: 6 of 10 in use", CONVERGE)

        def admin_signs_in() -> tuple[Browser, str]:
            admin = lino.browser()
            answer = admin.sign_in(ADMIN)
            assert answer.get("success") is True, answer
            return admin, html.unescape(answer.get("message") or "")

        denied = lino.usage()["denied_last_24h"]
        refusals = rf"\b{denied} sign-ins? (was|were) refused by the sessions limit in the last 24 hours\."
        admin, said = admin_signs_in()  # 7 of 10: no share given
        assert "user sessions are in use" not in said, said
        assert (re.search(refusals, said) is not None) == (denied > 0), (denied, said)
        lino.converge("administrators: an admin signed in at 70 %", CONVERGE)
        admin.sign_out()
        users.append(lino.signed_in(lino.user()))
        admin, said = admin_signs_in()  # 8 of 10
        assert "8 of 10 user sessions are in use (80 %)." in said, said
        lino.converge("administrators: an admin signed in at 80 %", CONVERGE)

        # the site fills up, one more sign-in is refused
        users += [lino.signed_in(lino.user()) for _ in range(limit - lino.counts()[1])]
        refused = lino.browser()
        answer = refused.sign_in(lino.user())
        assert answer.get("success") is False, answer
        assert "user sessions are in use" not in str(answer), answer  # ordinary users are not warned
        wait_for(lambda: lino.usage()["denied_last_24h"] == denied + 1, CONVERGE, "the refusal in denied_last_24h")
        lino.converge("administrators: full, one refused", CONVERGE)
        admin.sign_out()
        admin, said = admin_signs_in()  # 10 of 10 again, with the refusal
        assert "10 of 10 user sessions are in use (100 %)." in said, said
        assert re.search(rf"\b{denied + 1} sign-ins? (was|were) refused by the sessions limit in the last 24 hours\.", said), said
        # where to look: Lino's table of user sessions and the site's page in headcount's dashboard
        page = f"{lino.headcount.url}/ui/#/sites/{lino.slug}"
        assert "Where to look: the signed-in sessions in the menu Site → User sessions" in said, said
        assert f"the sessions and refused sign-ins on the site's page in headcount, {page}." in said, said
        listed = admin.json("/api/users/Sessions?fmt=json")
        # the table lists the site's sessions, the signed-in ones among them
        assert listed.get("count", 0) >= limit and ADMIN in str(listed.get("rows")), str(listed)[:1500]
        with urllib.request.urlopen(page.split("#")[0], timeout=10) as resp:
            assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
        lino.converge("administrators: the admin warned at 100 % with the refusal", CONVERGE)
    finally:
        lino.sign_out_all()
        lino.configure(session_limit=None)
    lino.converge("administrators: signed out", CONVERGE)


def test_headcount_snapshot_command(lino):
    a, b = lino.signed_in(lino.user()), lino.signed_in(lino.user())
    lino.converge("two sign-ins before the snapshot", CONVERGE)
    with __import__("sqlite3").connect(lino.db_path, timeout=30) as db:
        db.execute("DELETE FROM django_session WHERE session_key = ?", [b.key])
    b.user = None
    _, signed_in = lino.counts()
    assert lino.usage()["active"] == signed_in + 1  # headcount cannot know yet
    # a snapshot reconciles only sessions idle for longer than SNAPSHOT_GRACE (1 s here),
    # so that a sign-in still in progress is not ended
    time.sleep(1.2)
    result = lino.manage("headcount_snapshot")
    assert result.returncode == 0 and "snapshot sent" in result.stdout, result.stdout + result.stderr
    # the command itself repairs headcount: no waiting for a periodic or start-up snapshot
    lino.converge("manage.py headcount_snapshot", 1.0)
    assert lino.sessions()[b.ref]["end_reason"] == "reconciled"
    expiry_matches(lino, a)
    a.sign_out()
    lino.converge("signed out after the snapshot", CONVERGE)


def test_dangling_session(lino):
    lino.sign_out_all()
    idle = lino.idle
    wait_for(lambda: lino.sessions()[idle.ref]["state"] == "dangling", IDLE_TIMEOUT + CONVERGE, "the idle session to dangle")
    usage = lino.converge("a dangling session (active counts it)", CONVERGE)
    assert usage["dangling"] == 1 and usage["live"] == usage["active"] - 1, usage
    # the agent's own view of the session (what its snapshot and local rule use) agrees
    result = lino.manage("headcount_snapshot", "--dry-run")
    printed = json.loads(result.stdout[result.stdout.index("{"):])  # Lino may print a locale warning first
    mine = next(s for s in printed["sessions"] if s["session"] == idle.ref)
    theirs = lino.sessions()[idle.ref]
    assert abs(parse(mine["last_activity_at"]) - parse(theirs["last_activity_at"])) < dt.timedelta(seconds=2), (mine, theirs)
    assert abs(parse(mine["expires_at"]) - parse(theirs["expires_at"])) < dt.timedelta(seconds=2), (mine, theirs)


def rule_admits(count_mode: str, over_limit: str, limit: int, overage_percent: int, counted_active: int,
                counted_live: int, dangling: int) -> tuple[bool, bool]:
    """headcount's rule (DESIGN §3), written out independently: (admit, evict one dangling)."""
    counted = counted_live if count_mode == "live" else counted_active
    ceiling = math.ceil(limit * (1 + overage_percent / 100)) if over_limit == "allow_overage" else limit
    if counted < ceiling:
        return True, False
    if over_limit == "evict_dangling" and count_mode == "active" and dangling:
        return True, True
    return False, False


RULES = [
    ("active", "reject"),
    ("live", "reject"),
    ("live", "evict_dangling"),
    ("active", "allow_overage"),
    ("live", "allow_overage"),
    ("active", "evict_dangling"),  # last: it evicts the dangling session the others share
]


def test_local_refusal_in_each_count_mode_and_over_limit_rule(lino):
    limit, overage = 2, 50
    lino.sign_out_all()
    lino.converge("clean slate before the refusals", CONVERGE)
    # anonymous rows: Lino's own check would count them, headcount and the agent do not
    for _ in range(3):
        lino.browser().json("/test/anonymous/")
    lino.configure(session_limit=limit, count_mode="active", over_limit="reject")
    idle_one = lino.idle
    wait_for(lambda: lino.usage()["dangling"] == 1, IDLE_TIMEOUT + CONVERGE, "one dangling session")
    lino.converge("one dangling session, three anonymous rows", CONVERGE)
    denied = lino.usage()["denied_last_24h"]

    for count_mode, over_limit in RULES:
        step = f"{count_mode}/{over_limit}"
        lino.configure(count_mode=count_mode, over_limit=over_limit)
        admitted = []
        dangling = 1 if any(r["key"] == idle_one.key for r in lino.rows()) else 0
        assert dangling == 1, "the shared dangling session is gone too early"
        for attempt in range(6):
            live = len(admitted)
            admit, evict = rule_admits(count_mode, over_limit, limit, overage, live + dangling, live, dangling)
            b = lino.browser()
            name = lino.user()
            answer = b.sign_in(name)
            lino_rows, signed_in = lino.counts()
            if admit:
                assert answer.get("success") is True, (step, attempt, answer)
                admitted.append(b)
                if evict:
                    wait_for(lambda: lino.sessions()[idle_one.ref]["state"] == "ended", CONVERGE, "the eviction")
                    assert lino.sessions()[idle_one.ref]["end_reason"] == "evicted"
                    assert all(r["key"] != idle_one.key for r in lino.rows())
                    dangling = 0
                    idle_one.user = None
                lino.converge(f"{step}: sign-in {attempt + 1} admitted (Lino's own rule would see {lino_rows} rows)", CONVERGE)
                continue
            # refused: Lino's words, nobody signed in, and headcount learns of the refusal
            assert answer.get("success") is False, (step, answer)
            assert f"There are more than {limit} active user sessions. Please try again later." in str(answer), answer
            assert b.whoami() is None
            denied += 1
            wait_for(
                lambda expected=denied: lino.usage()["denied_last_24h"] == expected, CONVERGE, f"the refusal ({step}) in denied_last_24h"
            )
            usage = lino.converge(f"{step}: sign-in {attempt + 1} refused", CONVERGE)
            assert usage["counted"] == (live if count_mode == "live" else live + dangling), usage
            break
        else:
            raise AssertionError(f"{step}: never refused")
        for b in admitted:
            b.sign_out()
        lino.converge(f"{step}: signed out again", CONVERGE)
        # wait a moment longer than the round trip: no second denial (one event per refusal)
        assert lino.usage()["denied_last_24h"] == denied
    lino.sign_out_all()
    lino.configure(session_limit=None, count_mode=None, over_limit=None)
    # the evicted session's browser signs in again: told why and when its session ended, once
    ended = lino.sessions()[idle_one.ref]
    assert ended["end_reason"] == "evicted", ended
    answer = idle_one.sign_in(lino.user())
    assert answer.get("success") is True and answer.get("alert"), answer
    told_when(lino, answer["message"], "your session had been unused for a long time and its place was needed.", ended["ended_at"])
    idle_one.sign_out()
    assert idle_one.sign_in(idle_one.last_user).get("alert") is None  # told once
    idle_one.sign_out()
    lino.converge("the evicted session's browser told why, signed in and out", CONVERGE)


def test_sigterm_flushes_the_queue(lino):
    """A stopping worker (Lino's SIGTERM handler raises SystemExit, also mid-request) sends its queue."""
    # FLUSH_INTERVAL 60: events stay queued; no start-up snapshot could deliver them instead
    lino.restart(FLUSH_INTERVAL=60, SNAPSHOT_INTERVAL=0)
    try:
        a = lino.signed_in(lino.user())
        assert a.ref not in lino.sessions(), "delivered before the stop; the test proves nothing"
        slow = threading.Thread(target=lambda: lino.browser().request("/test/slow/5/", timeout=30), daemon=True)
        slow.start()
        time.sleep(0.5)  # let the slow request reach a worker
        lino.stop()
        slow.join(10)
        rows = lino.sessions()
        assert rows[a.ref]["user"] == a.user, "the stopping worker did not flush its queue"
        lino.converge("site stopped with SIGTERM (queue flushed at exit)", 1.0)
    finally:
        lino.start()
    a.sign_out()
    lino.converge("signed out after the SIGTERM", CONVERGE)


def test_database_rebuilt_without_the_cache_table(lino):
    """Lino's ``prep`` rebuilds the database, the shared cache's table is gone: nothing is blocked."""
    if lino.use_tz:
        pytest.skip("once is enough: nothing here depends on the time zone")
    lino.stop()
    lino.manage("prep", "--noinput")  # drops every table, the cache's too; no createcachetable after it
    lino.create_users()
    lino.browsers = []
    logged_before = lino.log_path.stat().st_size
    lino.start()
    try:
        check = lino.manage("headcount_check", check=False)
        assert check.returncode != 0, check.stdout
        assert "headcount_cache" in check.stderr and "manage.py createcachetable" in check.stderr, check.stderr
        a, b = lino.signed_in(lino.user()), lino.signed_in(lino.user())
        lino.converge("database rebuilt without the cache table: two sign-ins", CONVERGE)
        # a kill pushed by headcount still ends the session (the webhook answers 200)
        lino.headcount.api("DELETE", f"/v1/sites/{lino.slug}/sessions/{b.ref}")
        wait_for(lambda: all(r["key"] != b.key for r in lino.rows()), CONVERGE, "the kill after the rebuild")
        assert b.whoami() is None
        b.user = None
        lino.converge("database rebuilt without the cache table: a kill", CONVERGE)
        with open(lino.log_path, "rb") as log:
            log.seek(logged_before)
            lines = log.read().decode("utf-8", "replace").splitlines()
        errors = [line for line in lines if "cannot be used" in line]
        # one clear error per worker process (two here), naming the fix
        assert 1 <= len(errors) <= 2 and all("manage.py createcachetable" in e for e in errors), "\n".join(lines[-40:])
        a.sign_out()
    finally:
        lino.manage("createcachetable")
    assert lino.manage("headcount_check", check=False).returncode == 0
    lino.converge("cache table created again", CONVERGE)


def test_two_factor_sign_in_takes_the_place_when_the_session_is_created(headcount):
    """Lino's two-factor sign-in in central mode: a code never entered leaves nothing counted in headcount."""
    site = LinoSite(headcount, False, "Europe/Brussels", two_factor=True)
    try:
        site.prepare()
        site.start(MODE="central")
        name = site.user()
        b = site.browser()
        answer = b.sign_in(name)
        assert "device verification code" in answer.get("message", ""), answer
        assert b.whoami() is None
        # headcount admitted the password step; the agent ended that admission with its request
        wait_for(lambda: any(r["state"] == "ended" for r in site.sessions().values()), CONVERGE, "the release")
        (pending,) = site.sessions().values()
        assert pending["end_reason"] == "logout" and pending["user"] == name, pending
        # and it would have lapsed on its own: the admission holds its place two minutes at most
        assert parse(pending["expires_at"]) - parse(pending["started_at"]) <= dt.timedelta(seconds=121), pending
        assert site.usage()["active"] == 0
        site.converge("two-factor: the code is not entered yet", CONVERGE)

        verified = b.trust_device(name)
        assert verified.get("success") is True, verified
        answer = b.sign_in(name)  # Lino's front end signs in again once the device is trusted
        assert answer.get("success") is True, answer
        assert b.whoami() == name
        active = site.sessions("active")
        assert list(active) == [b.ref] and active[b.ref]["user"] == name
        site.converge("two-factor: the code entered, counted once", CONVERGE)
        assert site.usage()["active"] == 1
        b.sign_out()
        site.converge("two-factor: signed out", CONVERGE)
    finally:
        site.cleanup()


@pytest.mark.parametrize("mode", ["local", "central"])
def test_social_sign_in_goes_through_the_limit(headcount, mode):
    """Lino's third-party sign-in (python-social-auth's username backend, no provider needed): admitted
    under the limit, refused at it (the user told why at the next sign-in), counted once."""
    site = LinoSite(headcount, mode == "central", "America/New_York" if mode == "central" else "Europe/Brussels", social=True)
    try:
        site.prepare()
        site.start(MODE=mode)
        site.configure(session_limit=1)
        a = site.signed_in(site.user())  # a password sign-in takes the one place
        site.converge(f"social, {mode}: a password sign-in fills the limit", CONVERGE)
        denied = site.usage()["denied_last_24h"]

        name = site.user()
        b = site.browser()
        status = b.social_sign_in(name)
        assert status == 200, status
        assert b.whoami() is None and site.counts()[1] == 1
        wait_for(lambda: site.usage()["denied_last_24h"] == denied + 1, CONVERGE, "the social refusal in denied_last_24h")
        site.converge(f"social, {mode}: refused at the limit", CONVERGE)
        # told why with the answer to the next sign-in (refused again: a is still signed in)
        answer = b.sign_in(name)
        assert answer.get("success") is False, answer
        assert str(answer["message"]).count("There are more than 1 active user sessions.") == 2, answer

        a.sign_out()
        site.converge(f"social, {mode}: the place is free", CONVERGE)
        assert b.social_sign_in(name) == 200
        assert b.whoami() == name  # the next request finds the user (Lino's lookup through social-auth)
        site.converge(f"social, {mode}: admitted, counted once", CONVERGE)
        active = site.sessions("active")
        assert list(active) == [b.ref] and active[b.ref]["user"] == name, active
        assert site.usage()["active"] == 1
        assert site.usage()["denied_last_24h"] == denied + 2  # the social refusal and the password retry
        b.sign_out()
        site.converge(f"social, {mode}: signed out", CONVERGE)
    finally:
        if site.process is not None and site.process.poll() is not None:
            print(site.log_tail())
        site.cleanup()
