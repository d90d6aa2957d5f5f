//! People signing in through a real identity provider (django-oauth-toolkit, started
//! by `.ci/oidc-provider`): both roles, the session cookie and its CSRF token, tenant
//! isolation, signing out, and every refused sign-in (wrong audience, unknown issuer,
//! an expired ID token, a replayed state, a wrong PKCE verifier) making no session.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, spawn_with, sql_scalar};

/// The test identity provider, stopped when dropped.
struct IdentityProvider {
    dir: tempfile::TempDir,
    issuer: String,
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", &self.dir.path().display().to_string()])
            .output();
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/oidc-provider")
}

/// A skipped test where the provider cannot start (no Python or no package index),
/// except where `HEADCOUNT_TEST_REQUIRE_ALL` is set (`.ci/run`), where that fails.
fn unavailable(why: &str) -> Option<IdentityProvider> {
    let required = std::env::var_os("HEADCOUNT_TEST_REQUIRE_ALL").is_some();
    assert!(!required, "the test identity provider did not start: {why}");
    eprintln!("skipped: the test identity provider did not start: {why}");
    None
}

/// Starts the provider for a headcount on `port`, its ID tokens valid `token_seconds`.
async fn provider(port: u16, token_seconds: u32) -> Option<IdentityProvider> {
    let dir = tempfile::tempdir().unwrap();
    let idp_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let path = dir.path().display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(script())
            .args(["start", &path, &idp_port.to_string()])
            .env(
                "OIDC_REDIRECT_URIS",
                format!("http://127.0.0.1:{port}/auth/callback"),
            )
            .env(
                "OIDC_POST_LOGOUT_REDIRECT_URIS",
                format!("http://127.0.0.1:{port}/ui/"),
            )
            .env("OIDC_ID_TOKEN_SECONDS", token_seconds.to_string())
            .output()
    })
    .await
    .unwrap();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => return unavailable(&String::from_utf8_lossy(&o.stderr)),
        Err(e) => return unavailable(&e.to_string()),
    };
    let issuer = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    Some(IdentityProvider { dir, issuer })
}

/// Headcount with sign-in by the provider (tokens valid `token_seconds`).
async fn signed_app(token_seconds: u32) -> Option<(TestApp, IdentityProvider)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let idp = provider(port, token_seconds).await?;
    let oidc = headcount::config::Oidc {
        issuer: idp.issuer.clone(),
        client_id: "headcount".to_owned(),
        client_secret: headcount::config::Secret::new("headcount-secret"),
        public_url: format!("http://127.0.0.1:{port}"),
        admin_group: "headcount-admins".to_owned(),
        tenant_group_prefix: "headcount-tenant-".to_owned(),
        groups_claim: "groups".to_owned(),
        idle: std::time::Duration::from_secs(3600),
        max_age: std::time::Duration::from_secs(12 * 3600),
    };
    let app = spawn_with(Options {
        oidc: Some(oidc),
        listener: Some(listener),
        ..Options::default()
    })
    .await;
    Some((app, idp))
}

/// A browser: cookies by host and port, redirects followed by hand.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, HashMap<String, String>>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    async fn go(
        &mut self, method: &str, url: &str, form: Option<String>, extra: &[(&str, &str)],
    ) -> Page {
        let u = url::Url::parse(url).unwrap();
        let origin = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(80));
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, url);
        if let Some(cookies) = self.jar.get(&origin).filter(|c| !c.is_empty()) {
            let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(COOKIE, header.join("; "));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(body) = form {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Referer", url)
                .body(body);
        }
        let res = req.send().await.unwrap();
        let jar = self.jar.entry(origin).or_default();
        for c in res.headers().get_all(SET_COOKIE) {
            let first = c.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            if v.is_empty() || c.to_str().unwrap().contains("Max-Age=0") {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status: res.status(),
            headers: res.headers().clone(),
            text: res.text().await.unwrap_or_default(),
        }
    }

    fn cookie(&self, app: &TestApp, name: &str) -> Option<String> {
        let u = url::Url::parse(&app.url).unwrap();
        let origin = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
        self.jar.get(&origin)?.get(name).cloned()
    }

    /// From headcount's `/auth/login` to the identity provider's answer: the callback
    /// address it sends the browser to (not yet followed).
    async fn until_callback(&mut self, app: &TestApp, user: &str) -> String {
        let start = self
            .go("GET", &format!("{}/auth/login", app.url), None, &[])
            .await;
        assert_eq!(start.status, StatusCode::FOUND, "{}", start.text);
        let authorize = start.location();
        for part in [
            "state=",
            "nonce=",
            "code_challenge=",
            "code_challenge_method=S256",
        ] {
            assert!(authorize.contains(part), "{authorize}");
        }
        let to_login = self.go("GET", &authorize, None, &[]).await;
        let login = url::Url::parse(&authorize)
            .unwrap()
            .join(&to_login.location())
            .unwrap();
        let form = self.go("GET", login.as_str(), None, &[]).await;
        let csrf = between(&form.text, "name=\"csrfmiddlewaretoken\" value=\"", "\"");
        let next: String = login
            .query_pairs()
            .find(|(k, _)| k == "next")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("username", user)
            .append_pair("password", "headcount-test-pw")
            .append_pair("csrfmiddlewaretoken", &csrf)
            .append_pair("next", &next)
            .finish();
        let posted = self.go("POST", login.as_str(), Some(body), &[]).await;
        assert_eq!(posted.status, StatusCode::FOUND, "login: {}", posted.text);
        let back = login.join(&posted.location()).unwrap();
        let answer = self.go("GET", back.as_str(), None, &[]).await;
        let callback = answer.location();
        assert!(callback.contains("/auth/callback?"), "{callback}");
        callback
    }

    /// A whole sign-in; the callback's page.
    async fn sign_in(&mut self, app: &TestApp, user: &str) -> Page {
        let callback = self.until_callback(app, user).await;
        self.go("GET", &callback, None, &[]).await
    }

    async fn api(
        &mut self, app: &TestApp, method: &str, path: &str, body: Option<Value>, csrf: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut extra = vec![];
        if let Some(t) = csrf {
            extra.push(("X-CSRF-Token", t));
        }
        let body = body.map(|b| b.to_string());
        if body.is_some() {
            extra.push(("Content-Type", "application/json"));
        }
        let u = format!("{}{path}", app.url);
        let mut req = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), &u);
        if let Some(c) = self.cookie(app, "headcount_session") {
            req = req.header(COOKIE, format!("headcount_session={c}"));
        }
        for (k, v) in extra {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} in {text}"))
        + start.len();
    text[from..from + text[from..].find(end).unwrap()].to_owned()
}

async fn sessions(app: &TestApp) -> i64 {
    sql_scalar(app, "SELECT COUNT(*) AS n FROM web_sessions".to_owned()).await
}

/// As the provider, through the bearer token: two tenants with a site each.
async fn fleet(app: &TestApp) {
    let admin = app.admin.clone();
    let created = app
        .post(
            "/v1/plans",
            &admin,
            json!({"code": "basic", "name": "Basic", "session_limit": 5}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    for t in ["acme", "globex"] {
        let r = app
            .post("/v1/tenants", &admin, json!({"slug": t, "name": t}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let body = json!({"slug": format!("{t}-erp"), "tenant": t, "plan": "basic", "name": "ERP"});
        let r = app.post("/v1/sites", &admin, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
}

#[tokio::test]
async fn people_sign_in_as_their_role_and_sign_out_ends_the_session() {
    let Some((app, _idp)) = signed_app(300).await else {
        return;
    };
    fleet(&app).await;

    // The provider's operator.
    let mut admin = Browser::new();
    let done = admin.sign_in(&app, "admin").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(done.location(), "/ui/");
    let set = done
        .headers
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for part in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(part), "{set}");
    }
    let (s, me) = admin.api(&app, "GET", "/auth/session", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["role"], "admin");
    assert_eq!(me["email"], "admin@example.test");
    let (s, all) = admin.api(&app, "GET", "/v1/sites", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 2);

    // A tenant's maintainer sees only its tenant.
    let mut maint = Browser::new();
    let done = maint.sign_in(&app, "maint-acme").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let (_, me) = maint.api(&app, "GET", "/auth/session", None, None).await;
    assert_eq!(
        (me["role"].as_str(), me["tenant"].as_str()),
        (Some("tenant"), Some("acme"))
    );
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let (_, own) = maint.api(&app, "GET", "/v1/sites", None, None).await;
    let slugs: Vec<&str> = own["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme-erp"]);
    let (s, _) = maint
        .api(&app, "GET", "/v1/sites/globex-erp", None, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A change with the cookie but without its CSRF token is refused and changes
    // nothing; with it, it is made and the audit trail names the person.
    let change = json!({"limit_message": "Full, sorry."});
    let (s, problem) = maint
        .api(
            &app,
            "PATCH",
            "/v1/sites/acme-erp",
            Some(change.clone()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("X-CSRF-Token"));
    let (s, _) = maint
        .api(
            &app,
            "PATCH",
            "/v1/sites/acme-erp",
            Some(change.clone()),
            Some("wrong"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let site = app.get("/v1/sites/acme-erp", &app.admin).await;
    assert_ne!(
        site.body["overrides"]["limit_message"], "Full, sorry.",
        "{}",
        site.text
    );
    let (s, changed) = maint
        .api(
            &app,
            "PATCH",
            "/v1/sites/acme-erp",
            Some(change),
            Some(&csrf),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{changed}");
    let audit = app.get("/v1/audit?limit=50", &app.admin).await;
    let by_person = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "update" && e["entity"] == "site")
        .map(|e| e["actor"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(by_person.contains("maint-acme@example.test"), "{by_person}");
    let subject = me["subject"].as_str().unwrap();
    assert!(by_person.ends_with(&format!(":{subject}")), "{by_person}");

    // Signing out ends the session on the server: the old cookie gets 401.
    let old = maint.cookie(&app, "headcount_session").unwrap();
    let (s, _) = maint.api(&app, "POST", "/auth/logout", None, None).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "signing out needs the CSRF token too"
    );
    let (s, out) = maint
        .api(&app, "POST", "/auth/logout", None, Some(&csrf))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        out["end_session_url"]
            .as_str()
            .unwrap()
            .contains("id_token_hint=")
    );
    for path in ["/auth/session", "/v1/sites"] {
        let r = app
            .client
            .get(format!("{}{path}", app.url))
            .header(COOKIE, format!("headcount_session={old}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // The operator's session is its own.
    let (s, _) = admin.api(&app, "GET", "/auth/session", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn refused_sign_ins_say_why_and_make_no_session() {
    let Some((app, _idp)) = signed_app(60).await else {
        return;
    };
    fleet(&app).await;
    let refused = |p: &Page, status: StatusCode, why: &str| {
        assert_eq!(p.status, status, "{}", p.text);
        assert!(p.text.contains(why), "{why:?} not in {}", p.text);
        assert!(p.text.contains("href=\"/auth/login\""), "{}", p.text);
        assert!(p.headers.get(SET_COOKIE).is_none());
    };

    // Each sign-in in a browser of its own: the provider remembers who signed in.
    refused(
        &Browser::new().sign_in(&app, "wrong-audience").await,
        StatusCode::BAD_REQUEST,
        "another application (audience)",
    );
    refused(
        &Browser::new().sign_in(&app, "other-issuer").await,
        StatusCode::BAD_REQUEST,
        "unknown issuer",
    );
    refused(
        &Browser::new().sign_in(&app, "nobody").await,
        StatusCode::FORBIDDEN,
        "none of headcount",
    );
    assert_eq!(sessions(&app).await, 0);
    let globex = Browser::new().sign_in(&app, "maint-globex").await;
    assert_eq!(globex.status, StatusCode::SEE_OTHER, "{}", globex.text);
    assert_eq!(sessions(&app).await, 1);

    // An ID token past its expiry by headcount's clock (tokens live 60 s here).
    let mut b = Browser::new();
    let callback = b.until_callback(&app, "admin").await;
    app.clock.advance(chrono::Duration::seconds(180));
    refused(
        &b.go("GET", &callback, None, &[]).await,
        StatusCode::BAD_REQUEST,
        "expired",
    );
    app.clock.advance(chrono::Duration::seconds(-180));

    // A state used twice: the second time is refused.
    let mut b = Browser::new();
    let callback = b.until_callback(&app, "admin").await;
    assert_eq!(
        b.go("GET", &callback, None, &[]).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(sessions(&app).await, 2);
    refused(
        &b.go("GET", &callback, None, &[]).await,
        StatusCode::BAD_REQUEST,
        "finished already",
    );

    // A code sent back with another sign-in's state: headcount proves that other
    // sign-in's PKCE verifier, which the provider refuses.
    let first = Browser::new().until_callback(&app, "admin").await;
    let second = Browser::new().until_callback(&app, "admin").await;
    let code = between(&first, "code=", "&");
    let state = between(&format!("{second}&"), "state=", "&");
    let swapped = format!("{}/auth/callback?code={code}&state={state}", app.url);
    refused(
        &b.go("GET", &swapped, None, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );

    // An unknown state and a callback without a code.
    let made_up = format!("{}/auth/callback?code=abc&state=made-up", app.url);
    refused(
        &b.go("GET", &made_up, None, &[]).await,
        StatusCode::BAD_REQUEST,
        "unknown",
    );
    let bare = format!("{}/auth/callback", app.url);
    refused(
        &b.go("GET", &bare, None, &[]).await,
        StatusCode::BAD_REQUEST,
        "lacks",
    );
    assert_eq!(sessions(&app).await, 2, "no refused sign-in made a session");
}

#[tokio::test]
async fn without_an_identity_provider_tokens_still_sign_in() {
    let app = spawn_with(Options::default()).await;
    let login = app.call("GET", "/auth/login", None, None).await;
    assert_eq!(login.status, StatusCode::NOT_FOUND);
    let me = app.call("GET", "/auth/session", None, None).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert!(me.body.get("login_url").is_none(), "{}", me.text);
    // A cookie is not a way in without the provider configured.
    let r = app
        .client
        .get(format!("{}/v1/sites", app.url))
        .header(COOKIE, "headcount_session=anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/v1/sites", &app.admin).await.status,
        StatusCode::OK
    );
}
