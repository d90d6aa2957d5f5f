"""A real Lino site served by gunicorn (2 workers, a shared database cache) for the agent's tests.

The site package ``tests/lino_site`` is copied into a temporary directory (Lino keeps
its database and caches next to its settings). The tests reach it over HTTP only,
as a browser would, and read its ``django_session`` table with ``sqlite3`` and their
own decoding, independent of the agent's code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.cookiejar
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

from django.core import signing

HERE = Path(__file__).resolve().parent
SECRET_KEY = "lino-test-secret-key-for-headcount-agent-tests"
HASH_KEY = "lino-test-session-hash-key"
PASSWORD = "lino-test-password"
USERS = [f"user{n:03d}" for n in range(1, 121)]
# a Lino site administrator (UserTypes.admin, role SiteAdmin): the agent sends roles ["admin"]
ADMIN = "siteadmin"
# the plan's idle timeout (headcount's minimum): a session untouched this long is dangling
IDLE_TIMEOUT = 60

# what the tests report at the end: one row per checked step
STEPS: list[dict] = []


def session_ref(key: str) -> str:
    return hmac.new(HASH_KEY.encode(), key.encode(), hashlib.sha256).hexdigest()


class Browser:
    """One browser: a cookie jar, Lino's CSRF dance, sign-in and sign-out."""

    def __init__(self, site: LinoSite):
        self.site = site
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.user: str | None = None
        self.last_user: str | None = None
        self.last_key: str | None = None

    def cookie(self, name: str) -> str | None:
        for c in self.jar:
            if c.name == name:
                return c.value
        return None

    def request(self, path: str, data: list[tuple[str, str]] | None = None, timeout: float = 20):
        headers = {"User-Agent": "lino-test-browser/1.0"}
        body = None
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            token = self.cookie("csrftoken")
            if token:
                headers["X-CSRFToken"] = token
        req = urllib.request.Request(self.site.url + path, data=body, headers=headers)
        try:
            with self.opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str, data=None):
        status, raw = self.request(path, data)
        assert status == 200, f"{path} answered {status}: {raw[:300]!r}"
        return json.loads(raw)

    def sign_in(self, user: str, password: str = PASSWORD) -> dict:
        if not self.cookie("csrftoken"):
            status, _ = self.request("/")
            assert status == 200
        answer = self.json("/api/about/About", [("an", "sign_in"), ("fv", user), ("fv", password)])
        if answer.get("success"):
            self.user = self.last_user = user
            self.last_key = self.key
        return answer

    def social_sign_in(self, user: str) -> int:
        """python-social-auth's username backend (``/oauth/complete/username/``), redirects followed."""
        if not self.cookie("csrftoken"):
            assert self.request("/")[0] == 200
        status, body = self.request("/oauth/complete/username/", [("username", user)])
        assert status == 200, (status, body[:500])
        if status == 200 and self.whoami() == user:
            self.user = self.last_user = user
            self.last_key = self.key
        return status

    def trust_device(self, user: str) -> dict:
        """Lino's two-factor step: enter the code it sent (read from the site's database)."""
        with sqlite3.connect(self.site.db_path, timeout=30) as db:
            (code,) = db.execute("SELECT device_verification_code FROM users_user WHERE username = ?", [user]).fetchone()
        return self.json("/api/about/About", [("an", "trust_device"), ("fv", code), ("fv", user)])

    def follow_offer(self, url: str) -> tuple[int, str]:
        """Open the agent's self-service page, submit its form as a browser would; (status, final path)."""
        status, raw = self.request(url)
        assert status == 200, f"{url} answered {status}: {raw[:300]!r}"
        page = raw.decode()
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))
        assert set(fields) == {"csrfmiddlewaretoken", "t"}, page
        no_redirect = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())
        body = urllib.parse.urlencode(fields).encode()
        req = urllib.request.Request(
            self.site.url + url.split("?")[0], data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "lino-test-browser/1.0",
                     "Referer": self.site.url + url},
        )
        try:
            with no_redirect.open(req, timeout=20) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Location") or exc.read().decode()

    def sign_out(self) -> None:
        self.last_key = self.key or self.last_key
        status, _ = self.request("/auth")
        assert status in (200, 302), status
        self.user = None

    @property
    def key(self) -> str | None:
        return self.cookie("sessionid")

    @property
    def ref(self) -> str | None:
        """headcount's id of the session this browser has, or had when it signed out."""
        key = self.key or self.last_key
        return session_ref(key) if key else None

    def whoami(self) -> str | None:
        return self.json("/test/state/")["user"]


class LinoSite:
    def __init__(self, headcount, use_tz: bool, time_zone: str, two_factor: bool = False, social: bool = False):
        self.headcount = headcount
        self.two_factor = two_factor
        self.social = social
        self.use_tz = use_tz
        self.time_zone = time_zone
        self.tz = dt.timezone.utc if use_tz else ZoneInfo(time_zone)
        self.root = Path(tempfile.mkdtemp(prefix="headcount-lino-"))
        shutil.copytree(HERE / "lino_site", self.root / "lino_site", ignore=shutil.ignore_patterns("__pycache__"))
        self.db_path = self.root / "lino_site" / "default.db"
        from conftest import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = self.root / "gunicorn.log"
        self.created = headcount.create_site(
            f"{self.url}/headcount/webhook/", session_limit=100, overage_percent=50, idle_timeout_seconds=IDLE_TIMEOUT
        )
        self.slug = self.created["slug"]
        self.agent: dict = {}
        self.cookie_age: int | None = None
        self.browsers: list[Browser] = []
        self.unused_users = iter(USERS)

    # -- processes -------------------------------------------------------------------------

    def agent_settings(self, **overrides) -> dict:
        return {
            "URL": self.headcount.url,
            "SITE": self.slug,
            "TOKEN": self.created["token"],
            "WEBHOOK_SECRET": self.created["webhook_secret"],
            "SESSION_HASH_KEY": HASH_KEY,
            "MODE": "local",
            "ACTIVITY_INTERVAL": 0,
            "FLUSH_INTERVAL": 0.2,
            "SNAPSHOT_INTERVAL": 600,
            "CONFIG_INTERVAL": 0,
            "RETRY_MAX_DELAY": 1.0,
            "TIMEOUT": 2.0,
            "SHUTDOWN_TIMEOUT": 5.0,
            "SNAPSHOT_GRACE": 1,
            **overrides,
        }

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="lino_site.settings",
            PYTHONPATH=str(self.root),
            HEADCOUNT_LINO_SETTINGS=json.dumps(self.agent),
            HEADCOUNT_LINO_USE_TZ="1" if self.use_tz else "0",
            HEADCOUNT_LINO_TIME_ZONE=self.time_zone,
            HEADCOUNT_LINO_SECRET_KEY=SECRET_KEY,
            HEADCOUNT_LINO_COOKIE_AGE=str(self.cookie_age or ""),
            HEADCOUNT_LINO_TWO_FACTOR="1" if self.two_factor else "0",
            HEADCOUNT_LINO_SOCIAL="1" if self.social else "0",
        )
        return env

    def manage(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def prepare(self) -> None:
        self.agent = self.agent_settings()
        self.manage("prep", "--noinput")
        self.manage("createcachetable")
        self.create_users()

    def create_users(self) -> None:
        script = (
            "from lino.api import rt\n"
            "from lino.modlib.users.choicelists import UserTypes\n"
            f"for name in {USERS!r}:\n"
            "    u = rt.models.users.User(username=name, user_type=UserTypes.user, email=name + '@example.org')\n"
            f"    u.set_password({PASSWORD!r})\n"
            "    u.full_clean(); u.save()\n"
            f"u = rt.models.users.User(username={ADMIN!r}, user_type=UserTypes.admin)\n"
            f"u.set_password({PASSWORD!r})\n"
            "u.full_clean(); u.save()\n"
        )
        self.manage("shell", "-c", script)

    def start(self, cookie_age: int | None = None, **agent_overrides) -> None:
        assert self.process is None
        self.agent = self.agent_settings(**agent_overrides)
        self.cookie_age = cookie_age
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{self.port}",
                "--no-control-socket", "--graceful-timeout", "5", "--timeout", "60", "lino_site.wsgi",
            ],
            cwd=self.root, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/test/state/", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"the Lino site did not answer:\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to gunicorn's master (a graceful stop: it passes SIGTERM to its workers)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self, cookie_age: int | None = None, **agent_overrides) -> None:
        self.stop()
        self.start(cookie_age, **agent_overrides)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cleanup(self) -> None:
        self.stop()
        if os.environ.get("HEADCOUNT_KEEP_DATA"):
            print(f"Lino site kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- browsers --------------------------------------------------------------------------

    def user(self) -> str:
        """A user name no earlier step of this site used."""
        return next(self.unused_users)

    def browser(self) -> Browser:
        b = Browser(self)
        self.browsers.append(b)
        return b

    def signed_in(self, user: str) -> Browser:
        b = self.browser()
        answer = b.sign_in(user)
        assert answer.get("success") is True, answer
        return b

    def sign_out_all(self) -> None:
        for b in self.browsers:
            if b.user is not None:
                b.sign_out()
        self.browsers = [b for b in self.browsers if b.user is not None]

    # -- the site's session table, read independently of the agent ---------------------------

    def rows(self) -> list[dict]:
        """Every unexpired django_session row: key, user id (None when anonymous), expiry (UTC)."""
        with sqlite3.connect(self.db_path, timeout=30) as db:
            raw = db.execute("SELECT session_key, session_data, expire_date FROM django_session").fetchall()
        now = dt.datetime.now(dt.timezone.utc)
        result = []
        for key, data, expire in raw:
            expire_date = dt.datetime.fromisoformat(str(expire))
            # USE_TZ=True stores UTC; USE_TZ=False stores local time in TIME_ZONE
            expire_date = (expire_date.replace(tzinfo=self.tz) if expire_date.tzinfo is None else expire_date)
            expire_date = expire_date.astimezone(dt.timezone.utc)
            if expire_date <= now:
                continue
            try:
                decoded = signing.loads(
                    data, key=SECRET_KEY, salt="django.contrib.sessions.SessionStore",
                    serializer=signing.JSONSerializer, fallback_keys=[],
                )
            except signing.BadSignature:
                decoded = {}
            result.append({"key": key, "user": decoded.get("_auth_user_id"), "expire_date": expire_date, "data": decoded})
        return result

    def cache_entries(self) -> dict[str, object]:
        """The shared database cache's entries (key: value), decoded as Django stores them."""
        import base64
        import pickle

        with sqlite3.connect(self.db_path, timeout=30) as db:
            raw = db.execute("SELECT cache_key, value FROM headcount_cache").fetchall()
        return {key: pickle.loads(base64.b64decode(value)) for key, value in raw}

    def counts(self) -> tuple[int, int]:
        """(Lino's own count: every unexpired row, signed-in unexpired rows)."""
        rows = self.rows()
        return len(rows), sum(1 for r in rows if r["user"] is not None)

    # -- headcount -------------------------------------------------------------------------

    def usage(self) -> dict:
        return self.headcount.api("GET", f"/v1/sites/{self.slug}/usage")

    def sessions(self, state: str = "all") -> dict[str, dict]:
        return self.headcount.sessions(self.slug, state)

    def configure(self, **overrides) -> int:
        """PATCH the site's overrides in headcount; wait until the push reached the site's shared cache."""
        site = self.headcount.api("PATCH", f"/v1/sites/{self.slug}", overrides)
        version = site["config_version"]
        probe = Browser(self)
        held: dict = {}

        def arrived() -> bool:
            held["version"] = probe.json("/test/state/")["config_version"] or 0
            return held["version"] >= version

        try:
            wait_for(arrived, 20, f"the push of config version {version}")
        except AssertionError as exc:
            # say where it was lost: never sent, refused by the site, or answered 2xx and not kept
            raise AssertionError(
                f"{exc}: the site holds version {held.get('version')}; headcount's last pushes "
                f"(version, status, [(HTTP status, ms, error)]): {self.pushes()}\n{self.log_tail(20)}"
            ) from None
        return version

    def pushes(self, last: int = 6) -> list[tuple]:
        page = self.headcount.api("GET", f"/v1/sites/{self.slug}/deliveries?limit={last}")
        return [
            (d["payload"].get("data", {}).get("config_version", d["type"]), d["status"],
             [(a["status_code"], a["duration_ms"], a["error"]) for a in d["attempts"]])
            for d in page["items"]
        ]

    def converge(self, step: str, timeout: float, extra: int = 0) -> dict:
        """Wait until headcount's active equals the signed-in unexpired rows (plus ``extra``, where
        the README says headcount cannot know better yet)."""
        last: dict = {}

        def agreed():
            rows = self.rows()
            signed_in = {session_ref(r["key"]) for r in rows if r["user"] is not None}
            usage = self.usage()
            last.update(lino=len(rows), signed_in=len(signed_in), headcount=usage["active"], usage=usage)
            if usage["active"] != len(signed_in) + extra:
                return False
            # the same sessions, not only as many: headcount's active ones are the site's
            theirs = set(self.sessions("active"))
            return signed_in <= theirs if extra else signed_in == theirs

        started = time.monotonic()
        try:
            wait_for(agreed, timeout, f"headcount to agree with the site after '{step}'", interval=0.2)
        finally:
            STEPS.append({
                "tz": f"USE_TZ={self.use_tz} {self.time_zone}", "step": step + (f" (rule: +{extra})" if extra else ""),
                "lino": last.get("lino"), "signed_in": last.get("signed_in"), "headcount": last.get("headcount"),
                "seconds": round(time.monotonic() - started, 1),
            })
        return last["usage"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def wait_for(predicate, timeout: float, message: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
