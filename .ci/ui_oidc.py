"""Signing in to the dashboard through an identity provider, in a real headless
Chromium, against the test OpenID Connect provider (.ci/oidc-provider) and a real
headcount; and a real Django site, configured from the dashboard's settings block,
whose first session the dashboard then shows.

Usage: ui_oidc.py HEADCOUNT_BIN [DATABASE_URL]

The provider's state directory is UI_OIDC_IDP_DIR (.ci/ui-check makes it, and stops
the provider in it whatever happens), else a temporary one. The database must not
hold tenant acme yet: the check creates it from the dashboard.

Steps: the provider's link on the sign-in page; `admin` signs in there and lands on
the provider's page by cookie; a plan, tenant acme and a site created from the pages
(so every write carries the CSRF token); the Django test project of agents/django
(tests/testproject) run with exactly the `HEADCOUNT = {…}` block read off the page,
a user signs in on it over HTTP, and the dashboard shows the agent's report and the
session; a cookie write without the CSRF header is refused (403) and changes
nothing; sign-out ends the server's session (the old cookie gets 401) and the
provider's; `maint-acme` sees acme's sites only, another tenant's site is not
found, a session ended behind the page's back sends it to the sign-in page, and
signing in again returns to the page it was on; a pasted token still signs in; an
account without a headcount group gets the 403 page and no cookie.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

import requests
from selenium.webdriver.common.by import By

import ui_manage
from ui_check import ROOT, SHOTS, Api, Check, free_port

PASSWORD = "headcount-test-pw"
COOKIE = "headcount_session"
CLIENT_ID, CLIENT_SECRET = "headcount", "headcount-secret"
# The provider's users, by the role and tenant ui_manage's sign_in names.
USERS = {("admin", None): "admin", ("tenant", "acme"): "maint-acme", ("tenant", "globex"): "maint-globex"}
# What the check allows in the console: the 401, 403 and 404 it provokes.
PROVOKED = ("status of 401", "status of 403", "status of 404")
SITE_USER = "erp-user"


def log(msg):
    print(f"ui-oidc: {msg}", flush=True)


class IdentityProvider:
    """The test provider of .ci/oidc, started on a free port in its own directory."""

    def __init__(self, directory, public_url):
        self.dir = directory or tempfile.mkdtemp(prefix="headcount-idp-")
        self.port = free_port()
        self.public_url = public_url
        self.issuer = None

    def start(self):
        env = dict(os.environ,
                   OIDC_REDIRECT_URIS=f"{self.public_url}/auth/callback",
                   OIDC_POST_LOGOUT_REDIRECT_URIS=f"{self.public_url}/ui/",
                   OIDC_CLIENT_ID=CLIENT_ID, OIDC_CLIENT_SECRET=CLIENT_SECRET)
        out = subprocess.run([os.path.join(ROOT, ".ci", "oidc-provider"), "start", self.dir, str(self.port)],
                             env=env, check=True, stdout=subprocess.PIPE, text=True, timeout=600)
        self.issuer = out.stdout.strip().splitlines()[-1]
        assert self.issuer == f"http://127.0.0.1:{self.port}/o", self.issuer

    def stop(self):
        subprocess.run([os.path.join(ROOT, ".ci", "oidc-provider"), "stop", self.dir], check=False)


class DjangoSite:
    """agents/django's test project (tests/testproject) as a site of its own: its
    database in a file, its `HEADCOUNT` setting the dict given, served by runserver,
    with the agent's code from this tree."""

    def __init__(self, work, settings):
        self.dir = os.path.join(work, "django-site")
        os.makedirs(self.dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        agent = os.path.join(ROOT, "agents", "django")
        self.env = dict(os.environ,
                        PYTHONPATH=os.pathsep.join([os.path.join(agent, "src"), os.path.join(agent, "tests")]),
                        DJANGO_SETTINGS_MODULE="testproject.settings",
                        HEADCOUNT_TEST_SETTINGS=json.dumps(settings),
                        HEADCOUNT_TEST_SITE_DB=os.path.join(self.dir, "site.sqlite3"))
        self.proc = None
        self.log_path = os.path.join(self.dir, "site.log")

    def prepare(self, user):
        """Its tables, and one user."""
        script = ("import sys, django; django.setup()\n"
                  "from django.core.management import call_command\n"
                  "call_command('migrate', verbosity=0, interactive=False)\n"
                  "from django.contrib.auth import get_user_model\n"
                  "get_user_model().objects.create_user(sys.argv[1], password=sys.argv[2])\n")
        subprocess.run([sys.executable, "-c", script, user, PASSWORD], env=self.env, cwd=self.dir,
                       check=True, timeout=120)

    def start(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            env=self.env, cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"the Django site exited:\n{self.tail()}"
            try:
                if requests.get(self.url + "/whoami/", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the Django site did not start:\n{self.tail()}")

    def sign_in(self, user):
        """A person signs in on the site: the agent reports `session.started`."""
        s = requests.Session()
        r = s.post(self.url + "/login/", data={"username": user, "password": PASSWORD}, timeout=10)
        assert r.status_code == 200 and r.json().get("ok"), (r.status_code, r.text)
        return s

    def tail(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-3000:]
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # SIGTERM: the agent delivers what it holds, then the process ends.
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def sign_in_with_identity_provider(check, role, tenant=None, expect_form=True):
    """Signs the browser in as the provider's user for `role` (of `tenant`): the
    sign-in page's link, the provider's login form, back to the dashboard with a
    session cookie. The same shape as ui_manage.sign_in_with_token; returns the
    cookie's value (what replaces a token for a cookie sign-in)."""
    d = check.driver
    user = USERS[(role, tenant)]
    if not d.find_elements(By.ID, "idp-sign-in"):
        d.get(f"{check.url}/ui/#/")
    check.wait(lambda d: d.find_element(By.ID, "idp-sign-in").is_displayed(), "the identity provider's link")
    d.find_element(By.ID, "idp-sign-in").click()
    if expect_form:
        idp_login(check, user)
    check.wait(lambda d: d.current_url.startswith(check.url + "/ui/")
               and d.find_element(By.ID, "sign-out").is_displayed(), f"{user} back on the dashboard, signed in")
    cookie = d.get_cookie(COOKIE)
    assert cookie, "no session cookie after the sign-in"
    return cookie["value"]


def idp_login(check, user):
    """The provider's login form: user name, password, submit."""
    d = check.driver
    check.wait(lambda d: d.find_element(By.ID, "id_username").is_displayed(), "the provider's login form")
    assert d.current_url.startswith(check.idp.issuer.rsplit("/o", 1)[0] + "/accounts/login/"), d.current_url
    d.find_element(By.ID, "id_username").send_keys(user)
    d.find_element(By.ID, "id_password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-submit").click()


class OidcCheck(Check):
    def __init__(self, binary, database_url):
        super().__init__(binary, database_url)
        self.idp = IdentityProvider(os.environ.get("UI_OIDC_IDP_DIR"), self.url)
        self.site = None
        self.times = {}

    def start(self):
        t = time.monotonic()
        self.idp.start()
        self.times["identity provider start"] = time.monotonic() - t
        self.env.update(
            HEADCOUNT_OIDC_ISSUER=self.idp.issuer,
            HEADCOUNT_OIDC_CLIENT_ID=CLIENT_ID,
            HEADCOUNT_OIDC_CLIENT_SECRET=CLIENT_SECRET,
            HEADCOUNT_PUBLIC_URL=self.url,
        )
        super().start()
        self.api = Api(self.url, self.token_cli("--role", "admin"))

    def stop(self):
        try:
            if self.site:
                self.site.stop()
            super().stop()
        finally:
            self.idp.stop()

    # ---- helpers

    def console_errors(self, allow=()):
        # The test provider has no icon: the browser's 404 for it is the provider's.
        idp_icon = self.idp.issuer.rsplit("/o", 1)[0] + "/favicon.ico"
        return [e for e in super().console_errors(allow=(*allow, idp_icon)) if idp_icon not in e]

    def with_cookie(self, method, path, cookie, **kw):
        """A request of another client that replays the browser's cookie."""
        headers = dict(kw.pop("headers", {}), Cookie=f"{COOKIE}={cookie}")
        return requests.request(method, self.url + path, headers=headers, allow_redirects=False,
                                timeout=10, **kw)

    def page_fetch(self, method, path, body=None, csrf=None):
        """fetch() from the page, with the cookie, as a script on the page could."""
        return self.driver.execute_async_script(
            "const [method, path, body, csrf, done] = arguments;"
            "const headers = {'Content-Type': 'application/json'};"
            "if (csrf) headers['X-CSRF-Token'] = csrf;"
            "fetch(path, {method, headers, credentials: 'same-origin',"
            "             body: body === null ? undefined : JSON.stringify(body)})"
            "  .then((r) => r.text().then((t) => done([r.status, t])))"
            "  .catch((e) => done([0, String(e)]));",
            method, path, body, csrf)

    def who(self):
        return self.driver.find_element(By.ID, "who").text

    def signed_out_page(self):
        """Back from a sign-out: the test provider ends its own session too (the
        end-session address carries the ID token as its hint) and sends the browser
        back to headcount's `/ui/`, which shows the sign-in page."""
        self.wait(lambda d: d.current_url.startswith(self.url + "/ui/")
                  and d.find_element(By.ID, "idp-sign-in").is_displayed(),
                  "headcount's sign-in page after the provider's sign-out")
        assert not self.driver.find_element(By.ID, "sign-out").is_displayed()

    # ---- the steps

    def run(self):
        d = self.driver
        d.set_script_timeout(15)
        m = ui_manage.Manage(self, sign_in_with_identity_provider)

        # The server's side, as any client sees it.
        r = requests.get(self.url + "/auth/session", timeout=10)
        assert r.status_code == 401 and r.json().get("login_url") == "/auth/login", (r.status_code, r.text)
        r = requests.get(self.url + "/auth/login?return_to=/ui/", allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303) and r.headers["Location"].startswith(self.idp.issuer + "/authorize"), \
            (r.status_code, r.headers.get("Location"))

        # The sign-in page: the provider's link above the token form, leading back here.
        d.get(f"{self.url}/ui/#/")
        self.wait(lambda d: d.find_element(By.ID, "idp-sign-in").is_displayed(), "the identity provider's link")
        link = d.find_element(By.ID, "idp-sign-in")
        assert link.text == "Sign in with your identity provider", link.text
        href = urllib.parse.urlsplit(link.get_attribute("href"))
        assert href.path == "/auth/login" and urllib.parse.parse_qs(href.query) == {"return_to": ["/ui/#/"]}, href
        assert link.location["y"] < d.find_element(By.ID, "token-input").location["y"], "the link is above the form"
        self.shot("oidc-sign-in")
        self.console_errors()

        # admin signs in at the provider, and is the provider here.
        link.click()
        self.wait(lambda d: d.find_element(By.ID, "id_username").is_displayed(), "the provider's login form")
        self.shot("oidc-idp-login")
        idp_login(self, "admin")
        self.wait(lambda d: d.current_url.startswith(self.url + "/ui/") and d.find_element(By.ID, "manage-links"),
                  "the provider's page")
        assert d.execute_script("return sessionStorage.getItem('headcount.token')") is None, "a token was kept"
        cookie = d.get_cookie(COOKIE)
        assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Lax" and cookie["path"] == "/", cookie
        assert d.execute_script("return document.cookie").find(COOKIE) < 0, "the cookie is readable by scripts"
        self.wait(lambda d: "Headcount Admin" in self.who() and "admin@example.test" in self.who()
                  and "provider" in self.who(), "the person's name and e-mail by Sign out")
        admin_cookie = cookie["value"]
        me = self.with_cookie("GET", "/auth/session", admin_cookie).json()
        assert (me["role"], me["tenant"], me["email"]) == ("admin", None, "admin@example.test"), me
        self.shot("oidc-provider")
        self.console_errors()

        # Managing with the cookie: every write below needs the CSRF header. The audit
        # trail names the person, not a token.
        self.manage(m)
        self.console_errors()
        actors = {(e["entity"], e["key"]): e["actor"] for e in self.api.ok("GET", "/v1/audit?limit=100")["items"]}
        for key in (("plan", "team"), ("tenant", "acme"), ("site", "acme-erp")):
            assert "person:admin@example.test:" in actors.get(key, ""), (key, actors)

        # A Django site configured from the block on the page reports its first session.
        self.django_site(m)
        self.console_errors()

        # A write by cookie without the CSRF header is refused, and changes nothing.
        self.csrf(admin_cookie)

        # Sign out: the server's session ends, then the provider's.
        self.sign_out(admin_cookie, "oidc-signed-out")

        # A tenant maintainer.
        self.maintainer()

        # A pasted token signs in as before, the provider configured or not.
        self.token_still_works()

        # An account with no headcount role: the 403 page, no cookie.
        self.no_role()

    def manage(self, m):
        api = self.api
        m.go("#/plans", "#plan-form")
        m.put("plan-form", "code", "team")
        m.put("plan-form", "name", "Team")
        m.put("plan-form", "session_limit", "5")
        m.put("plan-form", "monthly_price_cents", "2500")
        m.submit("plan-form")
        self.wait(lambda d: "team" in m.el("#plan-created").text, "the plan is created")
        p = api.ok("GET", "/v1/plans/team")
        assert (p["name"], p["session_limit"]) == ("Team", 5), p

        m.go("#/tenants", "#tenant-form")
        m.put("tenant-form", "slug", "acme")
        m.put("tenant-form", "name", "Acme")
        m.submit("tenant-form")
        self.wait(lambda d: m.el("#tenant-notify-secret").text.startswith("whsec_"), "tenant acme created")
        assert api.ok("GET", "/v1/tenants/acme")["name"] == "Acme"
        # Another tenant, with a site, for the maintainer not to see (through the API).
        api.ok("POST", "/v1/tenants", {"slug": "globex", "name": "Globex"})
        api.ok("POST", "/v1/sites", {"slug": "globex-web", "tenant": "globex", "name": "Globex Web", "plan": "team"})

        m.go("#/new-site?tenant=acme", "#site-form")
        self.wait(lambda d: m.value("site-form", "tenant") == "acme", "the tenant chosen")
        m.put("site-form", "slug", "acme-erp")
        m.put("site-form", "name", "Acme ERP")
        m.put("site-form", "plan", "team")
        m.submit("site-form")
        self.block, self.settings = m.settings_block()
        assert self.settings["URL"] == self.url and self.settings["SITE"] == "acme-erp", self.settings
        s = api.ok("GET", "/v1/sites/acme-erp")
        assert (s["tenant"], s["plan"]) == ("acme", "team"), s
        self.wait(lambda d: m.el("#agent-status").get_attribute("data-state") == "waiting", "waiting for the agent")
        self.shot("oidc-site-created")

    def django_site(self, m):
        t = time.monotonic()
        self.site = site = DjangoSite(self.work, self.settings)
        site.prepare(SITE_USER)
        site.start()
        started = time.monotonic()
        site.sign_in(SITE_USER)
        # The page that showed the block says the agent reported...
        self.wait(lambda d: m.el("#agent-status").get_attribute("data-state") == "reported",
                  "the page says the agent reported", timeout=30)
        reported = time.monotonic()
        # ... and the site's page lists the session.
        m.go("#/sites/acme-erp", "#sessions-table")
        self.wait(lambda d: [c.text for c in d.find_elements(By.CSS_SELECTOR, "#sessions-table td.user")]
                  == [SITE_USER], f"{SITE_USER}'s session in the Sessions table", timeout=30)
        rows = self.api.ok("GET", "/v1/sites/acme-erp/sessions?state=active")["items"]
        assert [r["user"] for r in rows] == [SITE_USER], rows
        self.shot("oidc-site-session")
        self.times["Django site: migrate, start"] = started - t
        self.times["Django site: sign-in to reported"] = reported - started
        self.times["Django site step"] = time.monotonic() - t
        site.stop()

    def csrf(self, cookie):
        api = self.api
        before = api.ok("GET", "/v1/plans/team")
        status, body = self.page_fetch("PATCH", "/v1/plans/team", {"name": "Hijacked", "session_limit": 500})
        assert status == 403, (status, body)
        status, body = self.page_fetch("POST", "/v1/tenants", {"slug": "evil", "name": "Evil"})
        assert status == 403, (status, body)
        status, body = self.page_fetch("DELETE", "/v1/sites/acme-erp")
        assert status == 403, (status, body)
        assert api.ok("GET", "/v1/plans/team") == before
        assert api.call("GET", "/v1/tenants/evil")[0] == 404
        assert api.ok("GET", "/v1/sites/acme-erp")["slug"] == "acme-erp"
        # The same write with the session's CSRF token goes through: the header is
        # what was missing.
        csrf = self.with_cookie("GET", "/auth/session", cookie).json()["csrf_token"]
        status, body = self.page_fetch("PATCH", "/v1/plans/team", {"name": "Team"}, csrf)
        assert status == 200, (status, body)
        # Signing out needs it too: without it the session stays.
        assert self.with_cookie("POST", "/auth/logout", cookie).status_code == 403
        assert self.with_cookie("GET", "/auth/session", cookie).status_code == 200
        assert self.console_errors(allow=PROVOKED), "the 403s were not logged"

    def sign_out(self, cookie, shot):
        """Sign out from the page; the old cookie is refused afterwards."""
        assert self.with_cookie("GET", "/v1/sites", cookie).status_code == 200, "the cookie replays"
        self.driver.find_element(By.ID, "sign-out").click()
        self.signed_out_page()
        assert self.driver.get_cookie(COOKIE) is None, "the cookie was not cleared"
        for path in ("/auth/session", "/v1/sites"):
            r = self.with_cookie("GET", path, cookie)
            assert r.status_code == 401, (path, r.status_code, r.text)
        self.shot(shot)
        self.console_errors(allow=PROVOKED)

    def maintainer(self):
        d = self.driver
        cookie = sign_in_with_identity_provider(self, "tenant", "acme")
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, '#tenant-sites tr[data-site="acme-erp"]'),
                  "acme's page lists acme-erp")
        listed = [r.get_attribute("data-site") for r in d.find_elements(By.CSS_SELECTOR, "#tenant-sites tbody tr")]
        assert listed == ["acme-erp"], listed
        assert "Acme Maintainer" in self.who() and "tenant acme" in self.who(), self.who()
        r = self.with_cookie("GET", "/v1/sites", cookie)
        assert [s["slug"] for s in r.json()["items"]] == ["acme-erp"], r.text
        self.shot("oidc-tenant")
        # Another tenant's site: not found, as the API says.
        d.get(f"{self.url}/ui/#/sites/globex-web")
        self.wait(lambda d: d.find_element(By.ID, "not-found"), "globex-web is not found")
        assert self.with_cookie("GET", "/v1/sites/globex-web", cookie).status_code == 404
        assert self.console_errors(allow=PROVOKED), "the 404 was not logged"

        # The session ends behind the page's back: the next refresh of the site's
        # page gets 401, and the page says so, keeping its address.
        d.get(f"{self.url}/ui/#/sites/acme-erp")
        self.wait(lambda d: [c.text for c in d.find_elements(By.CSS_SELECTOR, "#sessions-table td.user")]
                  == [SITE_USER], "acme-erp's page for its maintainer")
        csrf = self.with_cookie("GET", "/auth/session", cookie).json()["csrf_token"]
        r = self.with_cookie("POST", "/auth/logout", cookie, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, (r.status_code, r.text)
        self.wait(lambda d: "Your session ended; sign in again" in d.find_element(By.CSS_SELECTOR, "main .notice").text,
                  "the page says the session ended", timeout=20)
        assert d.current_url.endswith("/ui/#/sites/acme-erp"), d.current_url
        href = urllib.parse.urlsplit(d.find_element(By.ID, "idp-sign-in").get_attribute("href"))
        assert urllib.parse.parse_qs(href.query) == {"return_to": ["/ui/#/sites/acme-erp"]}, href
        self.shot("oidc-session-ended")
        self.console_errors(allow=PROVOKED)
        # The provider still knows the person: no form, straight back to that page.
        cookie = sign_in_with_identity_provider(self, "tenant", "acme", expect_form=False)
        self.wait(lambda d: d.current_url.endswith("/ui/#/sites/acme-erp")
                  and [c.text for c in d.find_elements(By.CSS_SELECTOR, "#sessions-table td.user")] == [SITE_USER],
                  "back on acme-erp's page")
        self.console_errors()
        self.sign_out(cookie, "oidc-tenant-signed-out")

    def token_still_works(self):
        d = self.driver
        d.get(f"{self.url}/ui/#/")
        self.wait(lambda d: d.find_element(By.ID, "idp-sign-in"), "the sign-in page")
        d.find_element(By.ID, "token-input").send_keys(self.token_cli("--role", "admin") + "\n")
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, '#fleet-sites tr[data-site="acme-erp"]'),
                  "the provider's page by token")
        assert d.get_cookie(COOKIE) is None
        assert self.who().startswith("provider (admin)"), self.who()
        d.find_element(By.ID, "sign-out").click()
        self.wait(lambda d: d.find_element(By.ID, "idp-sign-in"), "the sign-in page")
        assert d.execute_script("return sessionStorage.getItem('headcount.token')") is None
        self.console_errors()

    def no_role(self):
        d = self.driver
        d.find_element(By.ID, "idp-sign-in").click()
        idp_login(self, "nobody")
        self.wait(lambda d: d.current_url.startswith(self.url + "/auth/callback"), "headcount's answer")
        body = d.find_element(By.TAG_NAME, "body").text
        assert "Sign in again" in body, body
        assert d.get_cookie(COOKIE) is None, "a cookie for an account with no role"
        self.shot("oidc-no-role")
        self.console_errors(allow=PROVOKED)


def main():
    binary = sys.argv[1]
    database_url = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
    # A TERM or HUP (CI's time running out) still stops the provider and the servers.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, _: sys.exit(128 + n))
    check = OidcCheck(binary, database_url)
    try:
        check.start()
        check.open_browser()
        check.run()
    except BaseException:
        for name, path in (("server", os.path.join(check.work, "server.log")),
                           ("identity provider", os.path.join(check.idp.dir, "oidc.log"))):
            if os.path.exists(path):
                print(f"--- {name} log ---", file=sys.stderr)
                with open(path) as f:
                    sys.stderr.write(f.read()[-4000:])
        if check.site:
            print(f"--- Django site log ---\n{check.site.tail()}", file=sys.stderr)
        raise
    finally:
        check.stop()
    for what, seconds in check.times.items():
        log(f"{what}: {seconds:.1f} s")
    print(f"ui-oidc: passed in {time.monotonic() - check.started:.1f} s; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
