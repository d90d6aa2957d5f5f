"""Fixtures: a real headcount process per test module, and a site created in it per test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from headcount_django import adminstatus, client as hc_client, conf, reporting, sender, shared

REPO = Path(__file__).resolve().parents[3]
HEADCOUNT_BIN = os.environ.get("HEADCOUNT_BIN") or str(REPO / "target" / "debug" / "headcount")

_counter = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")


class ApiError(AssertionError):
    pass


class Headcount:
    """One headcount process on a free port with its own data directory."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.jwt_secret = secrets.token_hex(32)
        self.admin_token: str | None = None
        self.log_path = os.path.join(data_dir, "headcount.log")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HEADCOUNT_JWT_SECRET=self.jwt_secret,
            HEADCOUNT_RETRY_SCHEDULE="0s,1s,1s,2s,5s",
            HEADCOUNT_LOG="info",
        )
        env.pop("DATABASE_URL", None)
        return env

    def start(self) -> None:
        if not os.access(HEADCOUNT_BIN, os.X_OK):
            pytest.fail(f"headcount binary not found at {HEADCOUNT_BIN} (build it, or set HEADCOUNT_BIN)")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [HEADCOUNT_BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"headcount exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        else:
            pytest.fail(f"headcount did not become ready:\n{self.log_tail()}")
        if self.admin_token is None:
            self.admin_token = self.create_admin_token()

    def create_admin_token(self) -> str:
        result = subprocess.run(
            [HEADCOUNT_BIN, "token", "create", "--role", "admin", "--data-dir", self.data_dir],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=30,
        )
        token = result.stdout.strip()
        if result.returncode != 0 or token.count(".") != 2:
            pytest.fail(f"`headcount token create --role admin` failed ({result.returncode}): {result.stderr}{result.stdout}")
        return token

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return b"\n".join(fh.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def api(self, method: str, path: str, body=None, token: str | None = None, expect=(200, 201, 204)):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        parsed = json.loads(raw) if raw else None
        if expect is not None and status not in expect:
            raise ApiError(f"{method} {path} answered {status}: {raw[:500]!r}")
        return parsed

    def create_site(self, webhook_url: str, session_limit: int = 10, **plan_fields) -> dict:
        n = next(_counter)
        suffix = f"{os.getpid()}-{n}"
        plan = f"plan-{suffix}"
        tenant = f"tenant-{suffix}"
        slug = f"site-{suffix}"
        self.api("POST", "/v1/plans", {"code": plan, "name": f"Plan {n}", "session_limit": session_limit, **plan_fields})
        self.api("POST", "/v1/tenants", {"slug": tenant, "name": f"Tenant {n}"})
        created = self.api(
            "POST", "/v1/sites", {"slug": slug, "tenant": tenant, "name": f"Site {n}", "plan": plan, "webhook_url": webhook_url}
        )
        token = self.api("POST", "/v1/tokens", {"role": "site", "site": slug})["token"]
        return {"slug": slug, "plan": plan, "tenant": tenant, "token": token, "webhook_secret": created["webhook_secret"]}

    def sessions(self, slug: str, state: str = "all") -> dict[str, dict]:
        page = self.api("GET", f"/v1/sites/{slug}/sessions?state={state}&limit=500")
        return {row["session"]: row for row in page["items"]}


@pytest.fixture(scope="module")
def headcount():
    data_dir = tempfile.mkdtemp(prefix="headcount-data-")
    server = Headcount(data_dir)
    server.start()
    yield server
    server.stop()
    if os.environ.get("HEADCOUNT_KEEP_DATA"):
        print(f"headcount data kept in {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)


def agent_settings(headcount: Headcount, created: dict, **overrides) -> dict:
    return {
        "URL": headcount.url,
        "SITE": created["slug"],
        "TOKEN": created["token"],
        "WEBHOOK_SECRET": created["webhook_secret"],
        "MODE": "off",
        "ACTIVITY_INTERVAL": 0,
        "FLUSH_INTERVAL": 0.05,
        "SNAPSHOT_INTERVAL": 0,
        "CONFIG_INTERVAL": 0,
        "RETRY_MAX_DELAY": 0.5,
        "TIMEOUT": 3.0,
        **overrides,
    }


@pytest.fixture
def site(headcount, live_server, settings):
    """A site in headcount whose webhook_url is this Django site's live server."""

    class Site:
        def __init__(self, **plan_fields):
            base = live_server.url.replace("//localhost:", "//127.0.0.1:")
            self.created = headcount.create_site(f"{base}/headcount/webhook/", **plan_fields)
            self.slug = self.created["slug"]
            self.configure()

        def configure(self, **overrides):
            settings.HEADCOUNT = agent_settings(headcount, self.created, **overrides)

        def sessions(self, state: str = "all") -> dict[str, dict]:
            assert sender.flush(15), "the agent's sender did not deliver its queue"
            return headcount.sessions(self.slug, state)

    yield Site
    # deliver this test's events while its settings still point at its site
    sender.flush(5)


@pytest.fixture(autouse=True)
def clean_agent_state():
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()
    shared.reset()
    adminstatus.reset()
    hc_client.reset_contact()
    sender.reset()
    reporting.throttle.clear()
    yield
    sender.reset()
    conf.reset()


def session_ref(client) -> str:
    return conf.get().session_ref(client.cookies["sessionid"].value)


def sign_webhook(secret: str, body: bytes, msg_id: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    key = base64.b64decode(secret[len("whsec_"):])
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{signature}"}


def pytest_terminal_summary(terminalreporter):
    """The Lino steps: Lino's own count, the signed-in rows, and headcount's active."""
    try:
        from lino_harness import STEPS
    except Exception:
        return
    if not STEPS:
        return
    terminalreporter.section("Lino steps: every unexpired row (Lino's count) / signed-in rows / headcount active")
    for row in STEPS:
        terminalreporter.write_line(
            f"{row['tz']:<34} lino {row['lino']!s:>3}  signed-in {row['signed_in']!s:>3}  "
            f"headcount {row['headcount']!s:>3}  ({row['seconds']:>4}s)  {row['step']}"
        )
