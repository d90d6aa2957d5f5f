#!/usr/bin/env python3
"""Self-test of the test OpenID Connect provider, driven as a browser and an RP would.

Usage: .ci/oidc/.venv/bin/python .ci/oidc/selftest.py ISSUER

Reads the same environment as `.ci/oidc-provider start` (OIDC_REDIRECT_URIS: the
first one is used; OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_POST_LOGOUT_REDIRECT_URIS,
OIDC_ID_TOKEN_SECONDS). The redirect URI is never fetched: the test stops at the
provider's redirect and reads `code`, `state` and `iss` from it.
Prints one line per check and exits non-zero if any failed.
"""
import base64
import hashlib
import os
import secrets
import sys
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import requests

PASSWORD = "headcount-test-pw"
TIMEOUT = 10

EXPECTED = {
    "admin": ("admin@example.test", ["headcount-admins"]),
    "maint-acme": ("maint-acme@example.test", ["headcount-tenant-acme"]),
    "maint-globex": ("maint-globex@example.test", ["headcount-tenant-globex"]),
    "nobody": ("nobody@example.test", []),
}


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name}" + (f": {detail}" if detail else ""))
        sys.stdout.flush()
        return ok


class Forms(HTMLParser):
    """The forms of a page: action and the named inputs' values."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


class Provider:
    def __init__(self, issuer):
        self.issuer = issuer.rstrip("/")
        uris = os.environ.get("OIDC_REDIRECT_URIS", "http://127.0.0.1:9/auth/callback").split()
        self.redirect_uri = uris[0]
        logout = os.environ.get("OIDC_POST_LOGOUT_REDIRECT_URIS", "").split()
        self.post_logout_uri = logout[0] if logout else None
        self.client_id = os.environ.get("OIDC_CLIENT_ID") or "headcount"
        self.client_secret = os.environ.get("OIDC_CLIENT_SECRET") or "headcount-secret"
        self.id_token_seconds = int(os.environ.get("OIDC_ID_TOKEN_SECONDS") or 300)
        self.http = self.session()
        self.discovery = self.http.get(
            self.issuer + "/.well-known/openid-configuration", timeout=TIMEOUT
        ).json()
        self.jwks = self.http.get(self.discovery["jwks_uri"], timeout=TIMEOUT).json()

    @staticmethod
    def session():
        s = requests.Session()
        s.trust_env = False  # loopback only: no proxy from the environment
        return s

    def authorize_url(self, **overrides):
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid email profile",
        }
        params.update(overrides)
        params = {k: v for k, v in params.items() if v is not None}
        return self.discovery["authorization_endpoint"] + "?" + urlencode(params)

    def browse(self, browser, url, username=None, password=PASSWORD, stop_at=None):
        """Follow redirects as a browser would, filling the login form once.

        Stops at the first redirect to `stop_at` (default: the redirect URI) and
        returns ("redirect", query dict); otherwise ("page", response).
        """
        stop_at = stop_at or self.redirect_uri
        resp = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
        posted = False
        for _ in range(10):
            if resp.is_redirect:
                location = urljoin(resp.url, resp.headers["Location"])
                if location.split("?")[0] == stop_at:
                    return "redirect", {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
                if urlsplit(location).netloc != urlsplit(self.issuer).netloc:
                    raise AssertionError(f"redirect off the provider: {location}")
                resp = browser.get(location, allow_redirects=False, timeout=TIMEOUT)
                continue
            forms = Forms()
            forms.feed(resp.text)
            login = [f for f in forms.forms if "username" in f["fields"]]
            if resp.status_code == 200 and login and username and not posted:
                form = login[0]
                data = dict(form["fields"])
                data.update(username=username, password=password)
                # Django's CSRF check: the csrftoken cookie (kept by the session)
                # and the csrfmiddlewaretoken field from the form must match.
                resp = browser.post(
                    urljoin(resp.url, form["action"]),
                    data=data,
                    headers={"Referer": resp.url},
                    allow_redirects=False,
                    timeout=TIMEOUT,
                )
                posted = True
                continue
            return "page", resp
        raise AssertionError("too many redirects")

    def sign_in(self, username, browser=None, method="S256", challenge=None, password=PASSWORD):
        """The authorization request up to the redirect. Returns (kind, data, verifier, state, nonce)."""
        browser = browser or self.session()
        verifier, s256 = pkce_pair()
        if challenge is None and method is not None:
            challenge = s256
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        url = self.authorize_url(
            state=state, nonce=nonce, code_challenge=challenge, code_challenge_method=method
        )
        kind, data = self.browse(browser, url, username=username, password=password)
        return kind, data, verifier, state, nonce

    def exchange(self, code, verifier, auth="basic", secret=None):
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
        }
        secret = self.client_secret if secret is None else secret
        kwargs = {}
        if auth == "basic":
            kwargs["auth"] = (self.client_id, secret)
        else:
            data.update(client_id=self.client_id, client_secret=secret)
        return self.http.post(self.discovery["token_endpoint"], data=data, timeout=TIMEOUT, **kwargs)

    def signing_key(self, token):
        kid = jwt.get_unverified_header(token).get("kid")
        for jwk in self.jwks.get("keys", []):
            if jwk.get("kid") == kid:
                return jwt.PyJWK(jwk).key
        raise AssertionError(f"kid {kid!r} not in the JWKS")

    def verify(self, token, audience=None, issuer=None):
        return jwt.decode(
            token,
            self.signing_key(token),
            algorithms=["RS256"],
            audience=audience or self.client_id,
            issuer=issuer or self.issuer,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )


def full_flow(p, r, username, auth, browser=None):
    """Sign in, exchange the code; returns (claims, token response, browser) or None."""
    browser = browser or p.session()
    email, groups = EXPECTED[username]
    kind, data, verifier, state, nonce = p.sign_in(username, browser)
    if not r.check(f"{username}: authorize redirects back with a code", kind == "redirect" and "code" in data,
                   f"{kind} {getattr(data, 'status_code', data)}"):
        return None
    r.check(f"{username}: state comes back unchanged", data.get("state") == state, data.get("state"))
    r.check(f"{username}: authorization response carries iss (RFC 9207)", data.get("iss") == p.issuer,
            data.get("iss"))
    resp = p.exchange(data["code"], verifier, auth=auth)
    if not r.check(f"{username}: token endpoint answers 200 (client_secret_{auth})", resp.status_code == 200,
                   f"{resp.status_code} {resp.text[:200]}"):
        return None
    tokens = resp.json()
    r.check(f"{username}: token response has access_token, id_token, Bearer type",
            tokens.get("access_token") and tokens.get("id_token") and tokens.get("token_type") == "Bearer",
            sorted(tokens))
    header = jwt.get_unverified_header(tokens["id_token"])
    r.check(f"{username}: ID token header alg RS256 with a kid from the JWKS",
            header.get("alg") == "RS256" and any(k.get("kid") == header.get("kid") for k in p.jwks["keys"]),
            header)
    try:
        claims = p.verify(tokens["id_token"])
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        r.check(f"{username}: ID token signature, iss and aud verify", False, repr(e))
        return None
    r.check(f"{username}: ID token signature, iss and aud verify", True)
    r.check(f"{username}: nonce echoed", claims.get("nonce") == nonce, claims.get("nonce"))
    r.check(f"{username}: groups == {groups}", claims.get("groups") == groups, claims.get("groups"))
    r.check(f"{username}: email and email_verified", claims.get("email") == email
            and claims.get("email_verified") is True, (claims.get("email"), claims.get("email_verified")))
    r.check(f"{username}: preferred_username and name", claims.get("preferred_username") == username
            and bool(claims.get("name")), (claims.get("preferred_username"), claims.get("name")))
    lifetime = claims["exp"] - claims["iat"]
    r.check(f"{username}: ID token lifetime ~{p.id_token_seconds} s", abs(lifetime - p.id_token_seconds) <= 5,
            lifetime)
    return claims, tokens, browser, data["code"], verifier


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    r = Report()
    p = Provider(sys.argv[1])
    d = p.discovery

    # Discovery and keys
    r.check("discovery: issuer matches", d.get("issuer") == p.issuer, d.get("issuer"))
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                "end_session_endpoint"):
        r.check(f"discovery: {key} under the issuer", str(d.get(key, "")).startswith(p.issuer + "/"), d.get(key))
    r.check("discovery: RS256 ID tokens", "RS256" in d.get("id_token_signing_alg_values_supported", []))
    r.check("discovery: PKCE S256 only", d.get("code_challenge_methods_supported") == ["S256"],
            d.get("code_challenge_methods_supported"))
    r.check("discovery: client_secret_basic and client_secret_post",
            {"client_secret_basic", "client_secret_post"} <= set(d.get("token_endpoint_auth_methods_supported", [])))
    r.check("discovery: claims listed", {"sub", "email", "email_verified", "name", "preferred_username", "groups"}
            <= set(d.get("claims_supported", [])), d.get("claims_supported"))
    rsa = [k for k in p.jwks.get("keys", []) if k.get("kty") == "RSA" and k.get("kid")]
    r.check("jwks: an RSA key with a kid", len(rsa) >= 1, p.jwks)

    # Full flows, both client authentication methods
    admin = full_flow(p, r, "admin", "basic")
    for username in ("maint-acme", "maint-globex", "nobody"):
        full_flow(p, r, username, "post")

    if admin:
        claims, tokens, admin_browser, used_code, used_verifier = admin
        resp = p.http.get(d["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"},
                          timeout=TIMEOUT)
        info = resp.json() if resp.status_code == 200 else {}
        r.check("userinfo: same sub, groups and email as the ID token",
                info.get("sub") == claims["sub"] and info.get("groups") == claims["groups"]
                and info.get("email") == claims["email"], f"{resp.status_code} {resp.text[:200]}")
        resp = p.exchange(used_code, used_verifier)
        r.check("token: a code is refused the second time", resp.status_code == 400
                and resp.json().get("error") == "invalid_grant", f"{resp.status_code} {resp.text[:200]}")

        # A second authorization in the same browser: no login page, straight back.
        kind, data, *_ = p.sign_in(None, admin_browser)
        r.check("authorize: signed-in user goes straight back (skip_authorization)",
                kind == "redirect" and "code" in data, kind)

    # PKCE
    kind, data, verifier, *_ = p.sign_in("admin")
    if kind == "redirect" and "code" in data:
        resp = p.exchange(data["code"], verifier[::-1] + "x")
        r.check("token: wrong PKCE verifier refused (invalid_grant)", resp.status_code == 400
                and resp.json().get("error") == "invalid_grant", f"{resp.status_code} {resp.text[:200]}")
    else:
        r.check("token: wrong PKCE verifier refused (invalid_grant)", False, "no code")
    kind, data, *_ = p.sign_in("admin", method=None)
    r.check("authorize: no code_challenge refused", kind == "redirect" and data.get("error") == "invalid_request"
            and "code" not in data, data if kind == "redirect" else data.status_code)
    kind, data, *_ = p.sign_in("admin", method="plain", challenge=secrets.token_urlsafe(48))
    r.check("authorize: PKCE plain refused", kind == "redirect" and data.get("error") == "invalid_request"
            and "code" not in data, data if kind == "redirect" else data.status_code)

    # Client authentication and redirect URI
    kind, data, verifier, *_ = p.sign_in("admin")
    if kind == "redirect" and "code" in data:
        resp = p.exchange(data["code"], verifier, secret="not-the-secret")
        r.check("token: wrong client secret refused (401 invalid_client)", resp.status_code == 401
                and resp.json().get("error") == "invalid_client", f"{resp.status_code} {resp.text[:200]}")
    else:
        r.check("token: wrong client secret refused (401 invalid_client)", False, "no code")
    elsewhere = "http://127.0.0.1:9/elsewhere"
    kind, data = p.browse(p.session(), p.authorize_url(redirect_uri=elsewhere, state="s",
                                                       code_challenge=pkce_pair()[1], code_challenge_method="S256"),
                          username="admin", stop_at=elsewhere)
    r.check("authorize: unregistered redirect_uri gets an error page, no redirect",
            kind == "page" and data.status_code == 400, data if kind == "redirect" else data.status_code)

    # Login form
    kind, data, *_ = p.sign_in("admin", password="not-the-password")
    r.check("login: wrong password stays on the login page", kind == "page" and data.status_code == 200
            and 'id="id_username"' in data.text, kind)

    # Correctly signed tokens a relying party must refuse
    for username, claim, want, error in (
        ("wrong-audience", "aud", "someone-else", jwt.InvalidAudienceError),
        ("other-issuer", "iss", p.issuer + "-other", jwt.InvalidIssuerError),
    ):
        kind, data, verifier, *_ = p.sign_in(username)
        resp = p.exchange(data["code"], verifier) if kind == "redirect" and "code" in data else None
        if not r.check(f"{username}: token issued", resp is not None and resp.status_code == 200,
                       resp.text[:200] if resp is not None else kind):
            continue
        token = resp.json()["id_token"]
        try:
            p.verify(token)
            refused = False
        except error:
            refused = True
        r.check(f"{username}: verification with the real {claim} fails", refused)
        kwargs = {"audience": want} if claim == "aud" else {"issuer": want}
        try:
            got = p.verify(token, **kwargs)
            r.check(f"{username}: {claim} is {want!r}, signature valid", got.get(claim) == want, got.get(claim))
        except Exception as e:  # noqa: BLE001
            r.check(f"{username}: {claim} is {want!r}, signature valid", False, repr(e))
        r.check(f"{username}: groups == ['headcount-admins']",
                jwt.decode(token, options={"verify_signature": False}).get("groups") == ["headcount-admins"])

    # RP-initiated logout
    if admin:
        claims, tokens, admin_browser, *_ = admin
        params = {"id_token_hint": tokens["id_token"], "client_id": p.client_id, "state": "bye"}
        if p.post_logout_uri:
            params["post_logout_redirect_uri"] = p.post_logout_uri
        resp = admin_browser.get(d["end_session_endpoint"] + "?" + urlencode(params), allow_redirects=False,
                                 timeout=TIMEOUT)
        location = resp.headers.get("Location", "")
        if p.post_logout_uri:
            ok = resp.status_code == 302 and location == p.post_logout_uri + "?state=bye"
        else:
            ok = resp.status_code == 302
        r.check("end_session: logs out without a prompt and redirects", ok, f"{resp.status_code} {location}")
        kind, data, *_ = p.sign_in(None, admin_browser)
        r.check("end_session: the session is gone (authorize asks for a login again)",
                kind == "page" and 'id="id_username"' in data.text, kind)
    else:
        resp = p.http.get(d["end_session_endpoint"], allow_redirects=False, timeout=TIMEOUT)
        r.check("end_session: endpoint answers", resp.status_code in (200, 302), resp.status_code)

    print(f"{r.passed} passed, {r.failed} failed")
    sys.exit(1 if r.failed else 0)


if __name__ == "__main__":
    main()
