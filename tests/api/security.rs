//! Token attacks, caller limits and secrets: every refusal with the status DESIGN
//! names.

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, is_problem, spawn, spawn_with};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn sign(header: &Value, claims: &Value, key: &[u8]) -> String {
    let h = B64.encode(header.to_string());
    let p = B64.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn admin_claims() -> Value {
    json!({"iss": "headcount", "sub": "admin", "role": "admin", "iat": now(), "exp": now() + 600, "jti": "attack"})
}

/// The process's signing key, as every process shares it (read from the settings table).
async fn key(app: &TestApp) -> Vec<u8> {
    let key = app
        .state
        .db
        .run(|c| headcount::db::settings::get(c, "jwt_secret"))
        .await
        .unwrap()
        .unwrap();
    key.into_bytes()
}

async fn status_with(app: &TestApp, token: &str, path: &str) -> StatusCode {
    let r = app.get(path, token).await;
    if r.status.is_client_error() {
        assert!(is_problem(&r), "{}", r.text);
    }
    r.status
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused() {
    let app = spawn().await;
    let k = key(&app).await;
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    // The real key signs a well-formed token: accepted (the control case).
    assert_eq!(
        status_with(&app, &sign(&hs, &admin_claims(), &k), "/v1/plans").await,
        StatusCode::OK
    );
    let mut refused = Vec::new();
    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            B64.encode(admin_claims().to_string())
        ),
    ));
    // HS/RS confusion: an RS256 header signed with the HMAC key.
    cases.push((
        "RS256 header",
        sign(&json!({"alg": "RS256", "typ": "JWT"}), &admin_claims(), &k),
    ));
    cases.push(("HS512", {
        let h = B64.encode(json!({"alg": "HS512"}).to_string());
        let p = B64.encode(admin_claims().to_string());
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(&k).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", B64.encode(mac.finalize().into_bytes()))
    }));
    cases.push((
        "wrong key",
        sign(&hs, &admin_claims(), b"0123456789abcdef0123456789abcdef"),
    ));
    let mut c = admin_claims();
    c["exp"] = json!(now() - 120);
    cases.push(("expired", sign(&hs, &c, &k)));
    let mut c = admin_claims();
    c["nbf"] = json!(now() + 3600);
    cases.push(("not yet valid", sign(&hs, &c, &k)));
    let mut c = admin_claims();
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("missing exp", sign(&hs, &c, &k)));
    let mut c = admin_claims();
    c["iss"] = json!("someone-else");
    cases.push(("wrong iss", sign(&hs, &c, &k)));
    // Tampered claims: a tenant token with its role changed, signature kept.
    app.create_tenant("acme").await;
    let tenant_token = app.token("tenant", Some("acme"), None).await;
    let parts: Vec<&str> = tenant_token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("admin");
    cases.push((
        "role tampered",
        format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(claims.to_string()),
            parts[2]
        ),
    ));
    claims["role"] = json!("tenant");
    claims["tenant"] = json!("other");
    cases.push((
        "tenant tampered",
        format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(claims.to_string()),
            parts[2]
        ),
    ));
    cases.push(("garbage", "not.a.jwt".to_owned()));
    cases.push(("empty", String::new()));
    for (name, token) in &cases {
        let s = status_with(&app, token, "/v1/plans").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{name}");
        refused.push(*name);
    }
    assert_eq!(refused.len(), cases.len());
}

#[tokio::test]
async fn revocation_applies_at_once() {
    let app = spawn().await;
    let r = app
        .post(
            "/v1/tokens",
            &app.admin,
            json!({"role": "admin", "ttl_seconds": 600}),
        )
        .await;
    let token = r.body["token"].as_str().unwrap().to_owned();
    let jti = r.body["jti"].as_str().unwrap().to_owned();
    assert_eq!(status_with(&app, &token, "/v1/plans").await, StatusCode::OK);
    app.delete(&format!("/v1/tokens/{jti}"), &app.admin).await;
    assert_eq!(
        status_with(&app, &token, "/v1/plans").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn site_and_tenant_tokens_stay_in_their_lane() {
    let app = spawn().await;
    let a = app.site_with("a", json!({"session_limit": 5})).await;
    app.site_with("b", json!({"session_limit": 5})).await;
    let ta = app.token("tenant", Some("a-tenant"), None).await;
    // A site token on another site's agent endpoints: 404 (no existence leak).
    for (m, path, body) in [
        ("POST", "/v1/sites/b/events", Some(json!({"events": []}))),
        (
            "POST",
            "/v1/sites/b/admissions",
            Some(json!({"session": "x"})),
        ),
        ("PUT", "/v1/sites/b/sessions", Some(json!({"sessions": []}))),
        ("GET", "/v1/sites/b/config", None),
    ] {
        let r = app.call(m, path, Some(&a), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {path}: {}", r.text);
    }
    // A site token on maintainers' endpoints, even its own: 403.
    for path in [
        "/v1/sites/a/sessions",
        "/v1/sites/a/usage",
        "/v1/sites/a/deliveries",
        "/v1/billing/export?period=2026-01&format=json",
    ] {
        assert_eq!(
            status_with(&app, &a, path).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // A tenant token on another tenant's sites, sessions, usage, deliveries, billing: 404.
    for path in [
        "/v1/sites/b",
        "/v1/sites/b/sessions",
        "/v1/sites/b/users",
        "/v1/sites/b/usage",
        "/v1/sites/b/deliveries",
        "/v1/tenants/b-tenant",
        "/v1/tenants/b-tenant/usage",
        "/v1/billing/export?period=2026-01&format=json&tenant=b-tenant",
    ] {
        assert_eq!(
            status_with(&app, &ta, path).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let r = app
        .post(
            "/v1/sites/b/sessions/kill",
            &ta,
            json!({"state": "dangling"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // And the tenant's own site list holds only its own.
    let r = app.get("/v1/sites", &ta).await;
    let slugs: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, vec!["a"]);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let app = spawn_with(Options {
        rate_limit: Some("1/s,3"),
        ..Default::default()
    })
    .await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let r = app.get("/v1/plans", &app.admin).await;
        statuses.push(r.status.as_u16());
        last = Some(r);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert_eq!(statuses[4], 429);
    let r = last.unwrap();
    assert!(is_problem(&r));
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.headers.contains_key("ratelimit-limit"), "{:?}", r.headers);
    // Another token has its own bucket.
    let (other, _) = app
        .state
        .mint(headcount::auth::Role::Admin, None, None, None, 600)
        .unwrap();
    assert_eq!(app.get("/v1/plans", &other).await.status, StatusCode::OK);
}

#[tokio::test]
async fn secrets_never_show_in_debug_output_or_lists() {
    let app = spawn().await;
    let key = String::from_utf8(key(&app).await).unwrap();
    let debug = format!("{:?} {:?}", app.state, app.state.config);
    assert!(
        !debug.contains(&key),
        "the JWT key leaked into Debug output"
    );
    app.create_plan("p", json!({"session_limit": 1})).await;
    let t = app.create_tenant("t").await;
    let notify = t.body["notify_secret"].as_str().unwrap().to_owned();
    let s = app.create_site("s", "t", "p", json!({})).await;
    let hook = s.body["webhook_secret"].as_str().unwrap().to_owned();
    for path in [
        "/v1/tenants",
        "/v1/tenants/t",
        "/v1/sites",
        "/v1/sites/s",
        "/v1/sites/s/deliveries",
        "/v1/audit",
    ] {
        let r = app.get(path, &app.admin).await;
        for secret in [&notify, &hook, &key] {
            assert!(!r.text.contains(secret.as_str()), "{path} shows a secret");
        }
    }
    // Error bodies do not echo the token either.
    let r = app
        .get("/v1/plans", "eyJhbGciOiJIUzI1NiJ9.e30.c2VjcmV0")
        .await;
    assert!(!r.text.contains("c2VjcmV0"));
}

#[tokio::test]
async fn tokens_die_with_the_site_or_tenant_they_name() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t1").await;
    app.create_tenant("t2").await;
    app.create_site("s", "t1", "p", json!({})).await;
    let site_token = app.token("site", None, Some("s")).await;
    let tenant_token = app.token("tenant", Some("t1"), None).await;
    assert_eq!(
        app.get("/v1/sites/s/config", &site_token).await.status,
        StatusCode::OK
    );
    // Deleted: the site token is refused at once, with 401.
    assert_eq!(
        app.delete("/v1/sites/s", &app.admin).await.status,
        StatusCode::NO_CONTENT
    );
    let r = app.get("/v1/sites/s/config", &site_token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(is_problem(&r));
    // Another tenant creates a site with the same slug, in the same instant: the old
    // token still does not reach it, neither for events nor config.
    app.create_site("s", "t2", "p", json!({})).await;
    let ev = json!([{"type": "session.started", "session": "x", "at": app.at(0)}]);
    assert_eq!(
        app.events("s", &site_token, ev.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/v1/sites/s/config", &site_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let fresh = app.token("site", None, Some("s")).await;
    assert_eq!(app.events("s", &fresh, ev).await.status, StatusCode::OK);

    // A tenant token dies with its tenant, also when the slug comes back.
    assert_eq!(
        app.get("/v1/tenants/t1", &tenant_token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.delete("/v1/tenants/t1", &app.admin).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/v1/tenants/t1", &tenant_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "t1", "name": "new owner", "billing_email": "new@example.org"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app.get("/v1/tenants/t1", &tenant_token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(!r.text.contains("new@example.org"));
    let fresh = app.token("tenant", Some("t1"), None).await;
    assert_eq!(
        app.get("/v1/tenants/t1", &fresh).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_token_signed_elsewhere_for_a_later_site_of_its_slug_is_refused() {
    let app = spawn().await;
    let k = key(&app).await;
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    // Signed with the real key an hour before the site existed, without a subject key.
    let iat = app.now().timestamp() - 3600;
    let claims = json!({"iss": "headcount", "sub": "site:s", "role": "site", "site": "s",
        "iat": iat, "exp": now() + 600, "jti": "old"});
    let old = sign(&hs, &claims, &k);
    app.create_site("s", "t", "p", json!({})).await;
    assert_eq!(
        status_with(&app, &old, "/v1/sites/s/config").await,
        StatusCode::UNAUTHORIZED
    );
    // The same without a key but issued after the site was created works.
    let claims = json!({"iss": "headcount", "sub": "site:s", "role": "site", "site": "s",
        "iat": app.now().timestamp(), "exp": now() + 600, "jti": "new"});
    assert_eq!(
        status_with(&app, &sign(&hs, &claims, &k), "/v1/sites/s/config").await,
        StatusCode::OK
    );
}
