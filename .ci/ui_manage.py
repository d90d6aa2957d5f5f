"""Managing from the dashboard, in the browser of ui_check.py: plans, tenants and
sites created and changed through the pages' forms, the new site's agent settings
block read off the page and used as the agent would use it, the wait for the agent's
first report, secret rotation, tokens minted and revoked, and what a tenant
maintainer may and may not change.

Every step that signs in goes through one function given to `run` (`sign_in`), so
that a sign-in through an identity provider can replace the pasted token.
"""

import ast
import datetime as dt
import re
import socket
import subprocess
import time

from selenium.common.exceptions import ElementClickInterceptedException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

KEYS = ["URL", "SITE", "TOKEN", "WEBHOOK_SECRET", "MODE"]


def sign_in_with_token(check, role, tenant=None):
    """Signs the browser in as `role` (of `tenant`) by pasting a token minted for it
    into the sign-in form. Returns the token (the API calls of the check use it)."""
    args = ["--role", role] + (["--tenant", tenant] if tenant else [])
    token = check.token_cli(*args)
    d = check.driver
    d.get(f"{check.url}/ui/#/")
    check.wait(lambda d: d.find_elements(By.ID, "token-input")
               or d.find_element(By.ID, "sign-out").is_displayed(), "a page")
    if d.find_element(By.ID, "sign-out").is_displayed():
        d.find_element(By.ID, "sign-out").click()
    check.wait(lambda d: d.find_element(By.ID, "token-input"), "the sign-in form")
    d.find_element(By.ID, "token-input").send_keys(token + "\n")
    check.wait(lambda d: d.find_element(By.ID, "manage-links"), f"the {role}'s page")
    return token


class Manage:
    def __init__(self, check, sign_in):
        self.c, self.d, self.sign_in = check, check.driver, sign_in

    # ---- helpers

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def click(self, css):
        """Clicks an element once nothing (the status line, say) lies over it."""
        def clicked(d):
            e = self.el(css)
            d.execute_script("arguments[0].scrollIntoView({block: 'center'})", e)
            try:
                e.click()
                return True
            except ElementClickInterceptedException:
                return False
        self.c.wait(clicked, f"click {css}")

    def put(self, form, name, value):
        """Types `value` into a field of a form, or picks it in a select."""
        css = f'#{form} [name="{name}"]'
        self.c.wait(lambda d: self.el(css).is_displayed(), f"the field {css}")
        e = self.el(css)
        if e.tag_name == "select":
            Select(e).select_by_value(value)
        else:
            e.clear()
            e.send_keys(value)

    def value(self, form, name):
        return self.el(f'#{form} [name="{name}"]').get_attribute("value")

    def open_group(self, form, group):
        details = self.el(f'#{form} details[data-group="{group}"]')
        if details.get_attribute("open") is None:
            self.click(f'#{form} details[data-group="{group}"] > summary')

    def submit(self, form):
        self.click(f"#{form} .form-actions button[type=submit]")

    def field_error(self, form, name):
        """Waits for the error shown beside a field; returns its text."""
        css = f'#{form} .field-error[data-for="{name}"]'
        self.c.wait(lambda d: self.el(css).is_displayed() and self.el(css).text, f"the error of {name}")
        assert self.el(f'#{form} [name="{name}"]').get_attribute("aria-invalid") == "true"
        return self.el(css).text

    def form_error(self, form):
        css = f"#{form} .form-error"
        self.c.wait(lambda d: self.el(css).is_displayed(), f"the problem shown on #{form}")
        return self.el(css).text

    def go(self, hash_, ready_css):
        self.d.get(f"{self.c.url}/ui/{hash_}")
        self.c.wait(lambda d: self.el(ready_css), f"{hash_} shows {ready_css}")

    def confirm(self):
        self.c.wait(lambda d: d.find_element(By.ID, "confirm").is_displayed(), "the confirmation")
        self.click("#confirm-ok")

    def status(self, text):
        self.c.wait(lambda d: text in d.find_element(By.ID, "status").text, f"the status says {text!r}")

    def refused(self, token, path, code, timeout=5):
        """The API answers `path` with `code` for `token` within `timeout` s."""
        end = time.monotonic() + timeout
        while True:
            status, data, _ = self.c.api.call("GET", path, token=token)
            if status == code:
                return
            assert time.monotonic() < end, f"GET {path}: {status} {data}, not {code}"
            time.sleep(0.2)

    def settings_block(self):
        """The agent's settings block shown once a site is created: its text, and the
        `HEADCOUNT` dict in it as the site's settings.py would read it."""
        self.c.wait(lambda d: self.el("#settings-block").text, "the settings block")
        block = self.el("#settings-block").get_attribute("textContent")
        m = re.search(r"^HEADCOUNT = (\{.*?^\})", block, re.S | re.M)
        assert m, block
        settings = ast.literal_eval(m.group(1))
        assert list(settings) == KEYS, settings
        return block, settings

    # ---- the steps

    def run(self):
        self.d.set_window_size(1280, 1000)
        self.c.console_errors()
        self.admin = self.sign_in(self.c, "admin")
        self.plans()
        self.tenants()
        block, settings = self.new_site()
        self.first_report(settings)
        self.cli_block_matches(block, settings)
        self.edit_site()
        self.rotate_secret(settings)
        self.tokens()
        self.tenant_maintainer()

    def plans(self):
        c, api = self.c, self.c.api
        self.click('#manage-links a[href="#/plans"]')
        self.c.wait(lambda d: self.el('#plans-list tr[data-plan="small"]'), "the plans list")
        # A slug the API refuses: the problem beside the field, what was typed kept.
        self.put("plan-form", "code", "Team UI")
        self.put("plan-form", "name", "Team (UI)")
        self.put("plan-form", "session_limit", "5")
        self.put("plan-form", "monthly_price_cents", "2500")
        c.console_errors()
        self.submit("plan-form")
        assert "code" in self.form_error("plan-form")
        assert self.field_error("plan-form", "code")
        assert self.value("plan-form", "name") == "Team (UI)"
        assert self.value("plan-form", "session_limit") == "5"
        assert c.console_errors(allow=("status of 422",)), "the 422 was not logged"
        self.shot("plan-refused")
        self.put("plan-form", "code", "team-ui")
        self.submit("plan-form")
        self.c.wait(lambda d: "team-ui" in self.el("#plan-created").text, "the plan is created")
        p = api.ok("GET", "/v1/plans/team-ui")
        assert (p["name"], p["session_limit"], p["monthly_price_cents"]) == ("Team (UI)", 5, 2500), p
        self.c.wait(lambda d: self.el('#plans-list tr[data-plan="team-ui"]'), "the new plan listed")
        self.shot("plans")
        # Change it on its own page; a name emptied is refused beside the name, the
        # other change typed stays.
        self.click('#plans-list tr[data-plan="team-ui"] a.edit')
        self.c.wait(lambda d: self.value("plan-form", "name") == "Team (UI)", "the plan's form")
        self.put("plan-form", "monthly_price_cents", "2900")
        self.el('#plan-form [name="name"]').clear()
        self.submit("plan-form")
        assert "null" in self.field_error("plan-form", "name")
        assert self.value("plan-form", "monthly_price_cents") == "2900"
        c.console_errors(allow=("status of 422",))
        self.put("plan-form", "name", "Team UI")
        self.submit("plan-form")
        self.status("Plan team-ui saved")
        p = api.ok("GET", "/v1/plans/team-ui")
        assert (p["name"], p["monthly_price_cents"]) == ("Team UI", 2900), p
        c.console_errors()

    def tenants(self):
        api = self.c.api
        self.go("#/tenants", '#tenants-list tr[data-tenant="acme"]')
        self.put("tenant-form", "slug", "initech")
        self.put("tenant-form", "name", "Initech")
        self.put("tenant-form", "billing_email", "billing@initech.example")
        self.submit("tenant-form")
        self.c.wait(lambda d: self.el("#tenant-notify-secret").text.startswith("whsec_"),
                    "the alert secret shown once")
        t = api.ok("GET", "/v1/tenants/initech")
        assert (t["name"], t["billing_email"]) == ("Initech", "billing@initech.example"), t
        self.shot("tenants")
        # Its change page: the provider sets the pool.
        self.go("#/tenants/initech/edit", '#tenant-form [name="pooled_session_limit"]')
        self.put("tenant-form", "pooled_session_limit", "50")
        self.submit("tenant-form")
        self.status("Tenant initech saved")
        assert api.ok("GET", "/v1/tenants/initech")["pooled_session_limit"] == 50
        self.go("#/tenants", "#tenants-list")

    def new_site(self):
        api = self.c.api
        self.go("#/tenants", '#tenants-list tr[data-tenant="initech"]')
        self.click('#tenants-list tr[data-tenant="initech"] a[href^="#/new-site"]')
        self.c.wait(lambda d: self.value("site-form", "tenant") == "initech", "the tenant chosen")
        self.put("site-form", "slug", "initech-erp")
        self.put("site-form", "name", "Initech ERP")
        self.put("site-form", "plan", "team-ui")
        self.open_group("site-form", "overrides")
        self.put("site-form", "session_limit", "7")
        self.put("site-form", "count_mode", "live")
        self.shot("site-new")
        self.submit("site-form")
        block, settings = self.settings_block()
        assert settings["URL"] == self.c.url and settings["SITE"] == "initech-erp", settings
        assert settings["MODE"] == "local" and settings["WEBHOOK_SECRET"].startswith("whsec_"), settings
        # The block's token is the agent's: it reads the site's config, and only that.
        cfg = api.ok("GET", "/v1/sites/initech-erp/config", token=settings["TOKEN"])
        assert (cfg["site"], cfg["session_limit"], cfg["count_mode"]) == ("initech-erp", 7, "live"), cfg
        status, _, _ = api.call("GET", "/v1/usage", token=settings["TOKEN"])
        assert status == 403, status
        site = api.ok("GET", "/v1/sites/initech-erp")
        assert (site["tenant"], site["plan"], site["provider_session_limit"]) == ("initech", "team-ui", 7), site
        assert "No webhook_url yet" in self.el("#webhook-advice").text
        self.c.wait(lambda d: "Waiting for the agent" in self.el("#agent-status").text, "waiting for the agent")
        assert self.el("#agent-status").get_attribute("data-state") == "waiting"
        self.shot("site-created")
        self.c.console_errors()
        return block, settings

    def first_report(self, settings):
        """The agent's first event, sent as the agent sends it, is seen by the page."""
        at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        r = self.c.api.ok("POST", "/v1/sites/initech-erp/events", {"events": [
            {"type": "session.started", "session": "i1", "user": "peter", "at": at}]},
            token=settings["TOKEN"])
        assert r["accepted"] == 1, r
        self.c.wait(lambda d: self.el("#agent-status").get_attribute("data-state") == "reported",
                    "the page says the agent reported", timeout=20)
        assert "The agent reported at" in self.el("#agent-status").text, self.el("#agent-status").text
        # Where pushes go, set from the same page.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            hook = f"http://127.0.0.1:{s.getsockname()[1]}/headcount/webhook/"
        self.put("webhook-form", "webhook_url", hook)
        self.submit("webhook-form")
        self.c.wait(lambda d: self.el("#webhook-url").text == hook, "the webhook URL set")
        assert self.c.api.ok("GET", "/v1/sites/initech-erp")["webhook_url"] == hook
        self.shot("site-reported")
        self.c.console_errors()

    def cli_block_matches(self, block, settings):
        """The page's block is the one `headcount site create` prints, but for its values."""
        out = subprocess.run(
            [self.c.binary, "site", "create", "--slug", "initech-cli", "--tenant", "initech",
             "--plan", "team-ui", "--session-limit", "7", "--url", self.c.url, "--token", self.admin],
            env=self.c.env, check=True, capture_output=True, text=True).stdout
        cli = ast.literal_eval(re.search(r"^HEADCOUNT = (\{.*?^\})", out, re.S | re.M).group(1))
        for k in ("TOKEN", "WEBHOOK_SECRET", "SITE"):
            out = out.replace(cli[k], settings[k])
        assert out == block, f"CLI:\n{out}\npage:\n{block}"

    def edit_site(self):
        api = self.c.api
        self.click('#created-links a[href$="/edit"]')
        self.c.wait(lambda d: self.value("site-form", "session_limit") == "7", "the site's form")
        self.open_group("site-form", "overrides")
        self.put("site-form", "idle_timeout_seconds", "5")
        self.put("site-form", "over_limit", "evict_dangling")
        self.put("site-form", "count_mode", "")
        self.put("site-form", "session_limit", "9")
        self.submit("site-form")
        assert "60" in self.field_error("site-form", "idle_timeout_seconds")
        assert "idle_timeout_seconds" in self.form_error("site-form")
        assert self.value("site-form", "session_limit") == "9"
        self.c.console_errors(allow=("status of 422",))
        self.shot("site-edit-refused")
        self.put("site-form", "idle_timeout_seconds", "600")
        self.submit("site-form")
        self.status("Site initech-erp saved")
        s = api.ok("GET", "/v1/sites/initech-erp")
        o = s["overrides"]
        assert (s["provider_session_limit"], o["idle_timeout_seconds"], o["over_limit"], o["count_mode"]) \
            == (9, 600, "evict_dangling", None), s
        assert s["effective"]["count_mode"] == "active", s
        self.c.wait(lambda d: "evict_dangling" in self.el("#site-effective").text, "the effective values")
        self.shot("site-edit")
        self.c.console_errors()

    def rotate_secret(self, settings):
        self.click("#rotate-webhook-secret")
        self.confirm()
        self.c.wait(lambda d: self.el("#new-webhook-secret").text.startswith("whsec_"), "the new secret")
        assert self.el("#new-webhook-secret").text != settings["WEBHOOK_SECRET"]
        assert self.el("#previous-valid time")
        self.c.console_errors()

    def tokens(self):
        api = self.c.api
        # The agent's token from the site's page, revoked from there.
        self.click("#mint-site-token")
        self.c.wait(lambda d: self.el("#site-token-value").text.startswith("ey"), "a site token")
        minted = self.el("#site-token-value").text
        api.ok("GET", "/v1/sites/initech-erp/config", token=minted)
        self.click("#site-token button.revoke")
        self.confirm()
        self.c.wait(lambda d: "revoked" in self.el("#site-token").text, "the token revoked")
        self.refused(minted, "/v1/sites/initech-erp/config", 401)
        # The tokens page: a tenant token minted, listed, revoked from the list.
        self.go("#/tokens", "#mint-form")
        assert not self.el('#mint-form [name="tenant"]').is_displayed()
        self.put("mint-form", "role", "tenant")
        self.put("mint-form", "tenant", "initech")
        self.submit("mint-form")
        self.c.wait(lambda d: self.el("#minted-token").text.startswith("ey"), "a tenant token")
        tenant_token = self.el("#minted-token").text
        jti = self.el("#minted .jti").text
        api.ok("GET", "/v1/tenants/initech", token=tenant_token)
        row = f'#tokens-recent tr[data-jti="{jti}"]'
        self.c.wait(lambda d: self.el(row), "the token listed")
        self.shot("tokens")
        self.click(f"{row} button.revoke")
        self.confirm()
        self.c.wait(lambda d: "revoked" in self.el(row).text, "the token marked revoked")
        self.refused(tenant_token, "/v1/tenants/initech", 401)
        self.c.console_errors()

    def tenant_maintainer(self):
        c, api = self.c, self.c.api
        token = self.sign_in(c, "tenant", "initech")
        self.c.wait(lambda d: self.el('#tenant-sites tr[data-site="initech-erp"]'), "the tenant's site")
        self.go("#/sites/initech-erp/edit", '#site-form [name="limit_message"]')
        # The provider's rules are shown, not offered.
        offered = sorted(e.get_attribute("name") for e in
                         self.d.find_elements(By.CSS_SELECTOR, "#site-form [name]"))
        assert offered == ["limit_message", "session_limit", "webhook_url"], offered
        assert "evict_dangling" in self.el("#site-effective").text
        # ... and the API refuses them to this token.
        status, data, _ = api.call("PATCH", "/v1/sites/initech-erp", {"count_mode": "live"}, token=token)
        assert status == 403 and "count_mode" in data["detail"], (status, data)
        # More than was sold is refused beside the field, what was typed kept.
        self.put("site-form", "session_limit", "10")
        self.put("site-form", "limit_message", "Initech is full, try later.")
        c.console_errors()
        self.submit("site-form")
        assert "9" in self.field_error("site-form", "session_limit")
        assert self.value("site-form", "limit_message") == "Initech is full, try later."
        c.console_errors(allow=("status of 422",))
        self.put("site-form", "session_limit", "8")
        self.submit("site-form")
        self.status("Site initech-erp saved")
        s = api.ok("GET", "/v1/sites/initech-erp")
        assert (s["overrides"]["session_limit"], s["effective"]["session_limit"]) == (8, 8), s
        assert s["effective"]["limit_message"] == "Initech is full, try later.", s
        # Its own secret and tokens: rotate, mint (revoking is the provider's).
        self.click("#rotate-webhook-secret")
        self.confirm()
        self.c.wait(lambda d: self.el("#new-webhook-secret").text.startswith("whsec_"), "the new secret")
        self.click("#mint-site-token")
        self.c.wait(lambda d: self.el("#site-token-value").text.startswith("ey"), "a site token")
        assert not self.d.find_elements(By.CSS_SELECTOR, "#site-token button.revoke")
        api.ok("GET", "/v1/sites/initech-erp/config", token=self.el("#site-token-value").text)
        self.shot("tenant-site-edit")
        c.console_errors()
        # Its own contact: the name and the pool are not offered.
        self.go("#/tenants/initech/edit", '#tenant-form [name="billing_email"]')
        offered = sorted(e.get_attribute("name") for e in
                         self.d.find_elements(By.CSS_SELECTOR, "#tenant-form [name]"))
        assert offered == ["billing_email", "notify_url"], offered
        self.put("tenant-form", "billing_email", "ap@initech.example")
        self.submit("tenant-form")
        self.status("Tenant initech saved")
        assert api.ok("GET", "/v1/tenants/initech")["billing_email"] == "ap@initech.example"
        # The tokens page offers site tokens only.
        self.go("#/tokens", '#mint-form [name="role"]')
        roles = [o.get_attribute("value") for o in
                 self.d.find_elements(By.CSS_SELECTOR, '#mint-form [name="role"] option')]
        assert roles == ["site"], roles
        assert not self.d.find_elements(By.ID, "recent-tokens")
        c.console_errors()
        # Another tenant's site, and the provider's pages, are not reachable.
        for other in ("acme-shop", "globex-web"):
            self.go(f"#/sites/{other}/edit", "#not-found")
        self.go("#/tenants/acme/edit", "#not-found")
        assert c.console_errors(allow=("404 (Not Found)",)), "the 404s were not logged"
        self.d.get(f"{c.url}/ui/#/new-site")
        self.c.wait(lambda d: self.el('#tenant-sites tr[data-site="initech-erp"]'),
                    "the new-site page falls back to the tenant's own page")
        assert not self.d.find_elements(By.ID, "site-form")
        c.console_errors()
        c.no_alert()

    def shot(self, name):
        self.c.shot(f"manage-{name}")


def run(check, sign_in=sign_in_with_token):
    Manage(check, sign_in).run()
