"""The dashboard in a real headless Chromium against a real headcount.

Usage: ui_check.py HEADCOUNT_BIN [DATABASE_URL]

Starts `headcount serve` on a free port with a fresh data directory, seeds two
tenants through the API (one site at its limit with live, dangling and refused
sessions and a user named like an HTML injection, one site of another tenant),
then drives the dashboard with Selenium and checks it against the API; then manages
from the dashboard (ui_manage.py): plans, tenants, a site and its agent's settings,
secrets and tokens, as the provider and as a tenant maintainer.
"""

import base64
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

import ui_manage

XSS = "<img src=x onerror=alert(1)>"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = os.path.join(ROOT, "target", "ui-check")


def decode(text, headers):
    return json.loads(text) if text and "json" in (headers.get("Content-Type") or "") else text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    def __init__(self, url, token):
        self.url, self.token = url, token

    def call(self, method, path, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                text = res.read().decode()
                return res.status, decode(text, res.headers), res.headers
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            return e.code, decode(text, e.headers), e.headers

    def ok(self, method, path, body=None, token=None):
        status, data, _ = self.call(method, path, body, token)
        assert 200 <= status < 300, f"{method} {path}: {status} {data}"
        return data


class Check:
    def __init__(self, binary, database_url):
        self.binary = os.path.abspath(binary)
        self.work = tempfile.mkdtemp(prefix="headcount-ui-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update(
            HEADCOUNT_JWT_SECRET=os.urandom(32).hex(),
            HEADCOUNT_LISTEN=f"127.0.0.1:{self.port}",
            HEADCOUNT_SAMPLE_INTERVAL="1s",
            # One attempt, then `failed`: the page then has a failed push to retry.
            HEADCOUNT_RETRY_SCHEDULE="0s",
            HEADCOUNT_LOG="warn",
        )
        self.db_args = ["--data-dir", self.work]
        if database_url:
            self.db_args += ["--database-url", database_url]
        self.server = None
        self.driver = None
        self.started = time.monotonic()

    # ---- the server

    def start(self):
        self.log = open(os.path.join(self.work, "server.log"), "w")
        self.server = subprocess.Popen(
            [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", *self.db_args],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(200):
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("headcount did not become ready")

    def token_cli(self, *args):
        out = subprocess.run(
            [self.binary, "token", "create", *args, *self.db_args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def seed(self):
        admin = self.token_cli("--role", "admin")
        self.api = api = Api(self.url, admin)
        api.ok("POST", "/v1/plans", {
            "code": "small", "name": "Small", "session_limit": 8,
            "idle_timeout_seconds": 3600, "monthly_price_cents": 1900,
        })
        for t in ("acme", "globex"):
            api.ok("POST", "/v1/tenants", {"slug": t, "name": t.title()})
        # A webhook nobody listens on: every push to it fails, once.
        dead = f"http://127.0.0.1:{free_port()}/hook"
        api.ok("POST", "/v1/sites", {
            "slug": "acme-shop", "tenant": "acme", "name": "Acme Shop", "plan": "small",
            "webhook_url": dead,
        })
        api.ok("POST", "/v1/sites", {
            "slug": "globex-web", "tenant": "globex", "name": "Globex Web", "plan": "small",
        })
        site_token = api.ok("POST", "/v1/tokens", {"role": "site", "site": "acme-shop"})["token"]
        now = dt.datetime.now(dt.timezone.utc)
        live = [("l1", "alice"), ("l2", "bob"), ("l3", XSS)]
        dangling = [("d1", "carol"), ("d2", "carol"), ("d3", "carol"), ("d4", "dave"), ("d5", None)]
        events = []
        for s, u in live:
            events.append({"type": "session.started", "session": s, "user": u, "at": iso(now),
                           "user_agent": XSS if u == XSS else "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
                           "ip": "203.0.113.7"})
        for i, (s, u) in enumerate(dangling):
            # Last seen days ago, within the 35 days the API accepts, still unexpired.
            at = now - dt.timedelta(days=2 + i, hours=3)
            e = {"type": "session.started", "session": s, "at": iso(at), "ip": "198.51.100.4"}
            if u:
                e["user"] = u
            events.append(e)
        r = api.ok("POST", "/v1/sites/acme-shop/events", {"events": events}, token=site_token)
        assert r["accepted"] == len(events), r
        # The site is full (8 of 8): one more admission is refused and counts as a denial.
        r = api.ok("POST", "/v1/sites/acme-shop/admissions", {"session": "x1", "user": "erin"},
                   token=site_token)
        assert r["admitted"] is False, r
        globex_site = api.ok("POST", "/v1/tokens", {"role": "site", "site": "globex-web"})["token"]
        api.ok("POST", "/v1/sites/globex-web/events", {"events": [
            {"type": "session.started", "session": "g1", "user": "gina", "at": iso(now)}]},
            token=globex_site)

    # ---- the browser

    def open_browser(self):
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,1000", "--lang=en-GB"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        self.downloads = os.path.join(self.work, "downloads")
        os.makedirs(self.downloads)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                    {"behavior": "allow", "downloadPath": self.downloads})

    def wait(self, cond, what, timeout=15):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1,
                                 ignored_exceptions=[NoSuchElementException,
                                                     StaleElementReferenceException]
                                 ).until(lambda d: cond(d))
        except Exception:
            try:
                self.shot("failure")
            except Exception:
                pass
            raise AssertionError(f"timed out waiting for: {what}") from None

    def text(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def click(self, css):
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True, f"click {css}")

    def shot(self, name):
        """A PNG of the whole page, not only the part in the window."""
        # A page that shows what it was given, not the script's placeholders (a page
        # of another server, the identity provider's, may have no <main>).
        for main in self.driver.find_elements(By.TAG_NAME, "main"):
            shown = main.text
            assert not re.search(r"\b(null|undefined|NaN|\[object Object\])\b", shown), shown
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, f"{name}.png")
        width, height = self.driver.execute_script(
            "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
        png = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
        with open(path, "wb") as f:
            f.write(base64.b64decode(png["data"]))
        return path

    def console_errors(self, allow=()):
        bad, allowed = [], []
        for e in self.driver.get_log("browser"):
            if e["level"] != "SEVERE":
                continue
            # The page asks who the session cookie names whenever it holds no token:
            # the server's 401 is the answer "nobody", not a fault.
            if "/auth/session" in e["message"] and "status of 401" in e["message"]:
                continue
            (allowed if any(a in e["message"] for a in allow) else bad).append(e["message"])
        assert not bad, f"console errors: {bad}"
        return allowed

    def no_alert(self):
        try:
            alert = self.driver.switch_to.alert
            text = alert.text
            alert.dismiss()
            raise AssertionError(f"a script ran: alert({text})")
        except NoAlertPresentException:
            pass

    # ---- the checks

    def run(self):
        d = self.driver
        api = self.api

        # The served page carries the policy; the script is a script.
        status, _, headers = api.call("GET", "/ui/")
        assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]

        # Provider: sign in with the link the CLI prints.
        link = self.token_cli("--role", "admin", "--ui")
        assert link.startswith(f"{self.url}/ui/#token="), link
        d.get(link)
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-site="acme-shop"]'),
                  "the provider page lists acme-shop")
        assert "token=" not in d.current_url, d.current_url
        assert d.execute_script("return sessionStorage.getItem('headcount.token')"), "token kept"
        usage = api.ok("GET", "/v1/usage")
        acme = next(s for t in usage["tenants"] for s in t["sites"] if s["site"] == "acme-shop")
        row = self.text('#fleet-sites tr[data-site="acme-shop"]')
        assert f"{acme['counted']} / {acme['session_limit']}" in row, row
        assert f"{round(acme['utilization'] * 100)} %" in row and "at limit" in row, row
        # Fullest first: the full site leads the table.
        first = d.find_element(By.CSS_SELECTOR, "#fleet-sites tbody tr").get_attribute("data-site")
        assert first == "acme-shop", first
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#fleet-failed tr button.retry"),
                  "the failed config push of acme-shop is listed")
        self.shot("provider")
        self.console_errors()

        # Site page: the gauge shows the API's numbers.
        d.find_element(By.CSS_SELECTOR, 'tr[data-site="acme-shop"] a.site-link').click()
        self.wait(lambda d: d.find_element(By.ID, "gauge-counted").text != "", "the gauge")
        u = api.ok("GET", "/v1/sites/acme-shop/usage")
        assert (u["counted"], u["session_limit"], u["active"], u["live"], u["dangling"]) == (8, 8, 8, 3, 5), u
        self.wait(lambda d: [self.text(f"#{i}") for i in
                             ("gauge-counted", "gauge-limit", "gauge-active", "gauge-live",
                              "gauge-dangling", "gauge-denied")]
                  == [str(u[k]) for k in ("counted", "session_limit", "active", "live",
                                          "dangling", "denied_last_24h")],
                  "gauge numbers equal the API's")
        assert u["denied_last_24h"] >= 1, u

        # The hostile user name and user agent are text, and nothing ran.
        self.wait(lambda d: any(c.text == XSS for c in
                                d.find_elements(By.CSS_SELECTOR, "#sessions-table td.user")),
                  "the XSS user shown as text in the sessions table")
        assert any(c.text == XSS for c in d.find_elements(By.CSS_SELECTOR, "#users-table td.user"))
        assert any(c.text == XSS for c in d.find_elements(By.CSS_SELECTOR, "#sessions-table td.ua"))
        assert d.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
        self.no_alert()

        # Insight: the month's advice sentence as the API words it, and who was on at
        # the month's peak, as many as the billing export's peak.
        period = time.strftime("%Y-%m", time.gmtime())
        advice = api.ok("GET", f"/v1/sites/acme-shop/advice?period={period}")
        self.wait(lambda d: self.text("#advice-text") == advice["recommendation"]["text"],
                  "the advice sentence")
        self.click("#show-peak")
        bill = api.ok("GET", f"/v1/billing/export?period={period}&format=json&tenant=acme")
        peak = max((r for r in bill["rows"] if r["site"] == "acme-shop"), key=lambda r: r["peak_active"])
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#peak-sessions tbody tr"))
                  == peak["peak_active"], "the sessions on at the peak")

        # History: the chart is drawn (the sampler runs every second here). The chart
        # reloads once a minute, so first wait until the sampler has the refusal's
        # minute; the range clicks below then reload it with the refusal in.
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#history-chart svg.history"),
                  "the history chart")

        def refusal_sampled(_):
            to = dt.datetime.now(dt.timezone.utc)
            q = urllib.parse.urlencode({"from": iso(to - dt.timedelta(days=1)),
                                        "to": iso(to + dt.timedelta(minutes=1)), "step": "minute"})
            h = api.ok("GET", f"/v1/sites/acme-shop/usage/history?{q}")
            return any(p["denied"] > 0 for p in h["points"])

        self.wait(refusal_sampled, "the sampler to record the refusal", timeout=60)
        for rng in ("week", "month", "day"):
            self.click(f'button[data-range="{rng}"]')
            self.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#history-chart svg.history path.limit"),
                      f"the {rng} chart with its limit line")
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#history-chart path.refusal"),
                  "the refusal is marked on the chart")

        # Filter the sessions table by state.
        Select(d.find_element(By.ID, "session-state")).select_by_value("dangling")
        self.wait(lambda d: sorted(r.get_attribute("data-state") for r in
                                   d.find_elements(By.CSS_SELECTOR, "#sessions-table tbody tr"))
                  == ["dangling"] * 5, "only the 5 dangling sessions")
        Select(d.find_element(By.ID, "session-state")).select_by_value("live")
        self.wait(lambda d: sorted(r.get_attribute("data-state") for r in
                                   d.find_elements(By.CSS_SELECTOR, "#sessions-table tbody tr"))
                  == ["live"] * 3, "only the 3 live sessions")
        # And by user.
        Select(d.find_element(By.ID, "session-state")).select_by_value("active")
        d.find_element(By.ID, "session-user").send_keys("carol")
        self.wait(lambda d: [c.text for c in d.find_elements(By.CSS_SELECTOR, "#sessions-table td.user")]
                  == ["carol"] * 3, "carol's 3 sessions")
        d.find_element(By.ID, "session-user").clear()
        d.execute_script("document.getElementById('session-user').dispatchEvent(new Event('input'))")
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sessions-table tbody tr")) == 8,
                  "all 8 active sessions again")
        # Users ranked by dangling sessions: carol first.
        first_user = d.find_element(By.CSS_SELECTOR, "#users-table tbody tr td.user").text
        assert first_user == "carol", first_user
        self.shot("site")
        self.console_errors()

        # Bulk-kill the dangling ones, with a confirmation that says how many.
        self.wait(lambda d: d.find_element(By.ID, "kill-dangling").is_enabled(), "bulk kill enabled")
        d.find_element(By.ID, "kill-dangling").click()
        self.wait(lambda d: d.find_element(By.ID, "confirm").is_displayed(), "the confirmation")
        confirm_text = self.text("#confirm-text")
        assert "5 dangling sessions" in confirm_text, confirm_text
        self.shot("confirm")
        d.find_element(By.ID, "confirm-ok").click()
        self.wait(lambda d: "Ended 5 dangling sessions" in self.text("#status"), "the kill is reported")
        u = api.ok("GET", "/v1/sites/acme-shop/usage")
        assert u["dangling"] == 0 and u["active"] == 3, u
        self.wait(lambda d: self.text("#gauge-dangling") == "0", "the gauge shows 0 dangling")
        kills = api.ok("GET", "/v1/sites/acme-shop/deliveries")["items"]
        killed = sorted(s for k in kills if k["type"] == "session.kill" for s in k["payload"]["data"]["sessions"])
        assert killed == ["d1", "d2", "d3", "d4", "d5"], killed

        # Kill one live session from its row.
        def kill_bob(d):
            for r in d.find_elements(By.CSS_SELECTOR, "#sessions-table tbody tr"):
                if r.find_element(By.CSS_SELECTOR, "td.user").text == "bob":
                    r.find_element(By.CSS_SELECTOR, "button.kill").click()
                    return True
            return False
        self.wait(kill_bob, "bob's End button")
        self.wait(lambda d: d.find_element(By.ID, "confirm").is_displayed(), "the confirmation")
        d.find_element(By.ID, "confirm-ok").click()
        self.wait(lambda d: "Session ended" in self.text("#status"), "the single kill is reported")
        bob = api.ok("GET", "/v1/sites/acme-shop/sessions?state=ended&user=bob")["items"]
        assert [(s["session"], s["end_reason"]) for s in bob] == [("l2", "killed")], bob

        # The deliveries log: each push with its attempts; retry a failed one.
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#deliveries-table ol.attempts li"),
                  "attempts in the deliveries log")
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#deliveries-table button.retry").click() or True,
                  "a retry button")
        self.wait(lambda d: "queued again" in self.text("#status"), "the retry is reported")
        self.console_errors()

        # Tenant: paste a token into the sign-in form.
        d.find_element(By.ID, "sign-out").click()
        self.wait(lambda d: d.find_element(By.ID, "token-input"), "the sign-in form")
        assert d.execute_script("return sessionStorage.getItem('headcount.token')") is None
        # No identity provider is configured here: no link to one, and no sign-in by it.
        assert not d.find_elements(By.ID, "idp-sign-in")
        assert api.call("GET", "/auth/login?return_to=/ui/")[0] == 404
        tenant_link = self.token_cli("--role", "tenant", "--tenant", "acme", "--ui")
        tenant_token = tenant_link.split("#token=", 1)[1]
        d.find_element(By.ID, "token-input").send_keys(tenant_token + "\n")
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-site="acme-shop"]'),
                  "the tenant page lists acme-shop")
        listed = [r.get_attribute("data-site") for r in
                  d.find_elements(By.CSS_SELECTOR, "#tenant-sites tbody tr")]
        assert listed == ["acme-shop"], listed
        tu = api.ok("GET", "/v1/tenants/acme/usage", token=tenant_token)
        assert self.text("#total-counted") == f"{tu['counted']} / {tu['session_limit']}"
        # The billing export downloads as CSV.
        self.click("#billing-download")
        csv = self.wait(lambda d: next((os.path.join(self.downloads, f) for f in os.listdir(self.downloads)
                                        if f.endswith(".csv")), None), "the CSV download")
        time.sleep(0.3)
        with open(csv) as f:
            head = f.readline()
        assert head.startswith("tenant,site,plan,"), head
        self.shot("tenant")
        self.console_errors()

        # Another tenant's site does not exist for this token.
        d.get(f"{self.url}/ui/#/sites/globex-web")
        self.wait(lambda d: d.find_element(By.ID, "not-found"), "globex-web is not found")
        assert "globex" not in self.text("main").replace("globex-web", ""), self.text("main")
        # The browser logs the API's 404 itself: proof that the console is being read.
        assert self.console_errors(allow=("404 (Not Found)",)), "the 404 was not logged"

        # A phone's width.
        d.set_window_size(390, 900)
        d.get(f"{self.url}/ui/#/sites/acme-shop")
        self.wait(lambda d: self.text("#gauge-counted") == "2", "the site page at a phone's width")
        self.shot("site-phone")
        self.console_errors()
        self.no_alert()

        # The policy holds in the browser: an injected inline script does not run.
        d.execute_script("const s = document.createElement('script');"
                         "s.textContent = 'window.injected = 1'; document.body.append(s);")
        assert d.execute_script("return window.injected") is None, "an inline script ran"
        assert self.console_errors(allow=("Content Security Policy",)), "no CSP report"

    def stop(self):
        if self.driver:
            self.driver.quit()
        if self.server:
            self.server.terminate()
            self.server.wait(timeout=20)


def main():
    binary = sys.argv[1]
    database_url = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
    check = Check(binary, database_url)
    try:
        check.start()
        check.seed()
        check.open_browser()
        check.run()
        ui_manage.run(check)
    except BaseException:
        if check.server:
            print("--- server log ---", file=sys.stderr)
            with open(os.path.join(check.work, "server.log")) as f:
                sys.stderr.write(f.read()[-4000:])
        raise
    finally:
        check.stop()
    print(f"ui-check: passed in {time.monotonic() - check.started:.1f} s; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
