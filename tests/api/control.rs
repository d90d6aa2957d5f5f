use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{is_problem, spawn};

#[tokio::test]
async fn plans_crud_and_conflicts() {
    let app = spawn().await;
    let r = app
        .create_plan(
            "basic",
            json!({"session_limit": 5, "monthly_price_cents": 1900}),
        )
        .await;
    assert_eq!(r.body["count_mode"], "active");
    assert_eq!(r.body["over_limit"], "reject");
    assert_eq!(r.body["currency"], "EUR");
    assert_eq!(r.body["idle_timeout_seconds"], 86400);
    let dup = app
        .post(
            "/v1/plans",
            &app.admin,
            json!({"code": "basic", "name": "x", "session_limit": 1}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let r = app
        .patch("/v1/plans/basic", &app.admin, json!({"name": "Basic+"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["name"], "Basic+");
    app.create_tenant("acme").await;
    app.create_site("www", "acme", "basic", json!({})).await;
    let r = app.delete("/v1/plans/basic", &app.admin).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(is_problem(&r));
    let r = app.delete("/v1/tenants/acme", &app.admin).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        app.delete("/v1/sites/www", &app.admin).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/v1/plans/basic", &app.admin).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/v1/tenants/acme", &app.admin).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/v1/plans/basic", &app.admin).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn lists_paginate_with_a_cursor() {
    let app = spawn().await;
    for i in 0..5 {
        app.create_plan(&format!("p{i}"), json!({"session_limit": i}))
            .await;
    }
    let r = app.get("/v1/plans?limit=2", &app.admin).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let c = r.body["next_cursor"].as_str().unwrap().to_owned();
    let r2 = app
        .get(&format!("/v1/plans?limit=2&cursor={c}"), &app.admin)
        .await;
    assert_eq!(r2.body["items"][0]["code"], "p2");
    let c = r2.body["next_cursor"].as_str().unwrap().to_owned();
    let r3 = app
        .get(&format!("/v1/plans?limit=2&cursor={c}"), &app.admin)
        .await;
    assert_eq!(r3.body["items"].as_array().unwrap().len(), 1);
    assert!(r3.body["next_cursor"].is_null());
    assert_eq!(
        app.get("/v1/plans?limit=501", &app.admin).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/v1/plans?cursor=zz!", &app.admin).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_plan_edit_bumps_the_config_of_its_sites_and_no_others() {
    let app = spawn().await;
    app.create_plan("a", json!({"session_limit": 5})).await;
    app.create_plan("b", json!({"session_limit": 7})).await;
    app.create_tenant("t").await;
    app.create_site("s1", "t", "a", json!({})).await;
    app.create_site("s2", "t", "a", json!({})).await;
    app.create_site("s3", "t", "b", json!({})).await;
    let r = app
        .patch("/v1/plans/a", &app.admin, json!({"session_limit": 9}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for (s, v, limit) in [("s1", 2, 9), ("s2", 2, 9), ("s3", 1, 7)] {
        let r = app.get(&format!("/v1/sites/{s}/config"), &app.admin).await;
        assert_eq!(r.body["config_version"], v, "{s}");
        assert_eq!(r.body["session_limit"], limit, "{s}");
    }
    // A change that alters nothing effective bumps nothing.
    app.patch("/v1/plans/a", &app.admin, json!({"name": "A"}))
        .await;
    let r = app.get("/v1/sites/s1/config", &app.admin).await;
    assert_eq!(r.body["config_version"], 2);
    // Moving a site to another plan and changing an override bump it.
    app.patch("/v1/sites/s1", &app.admin, json!({"plan": "b"}))
        .await;
    let r = app.get("/v1/sites/s1/config", &app.admin).await;
    assert_eq!(r.body["config_version"], 3);
    assert_eq!(r.body["session_limit"], 7);
    app.patch("/v1/sites/s1", &app.admin, json!({"session_limit": 3}))
        .await;
    let r = app.get("/v1/sites/s1/config", &app.admin).await;
    assert_eq!(r.body["config_version"], 4);
    assert_eq!(r.body["session_limit"], 3);
    // null clears the override.
    let r = app
        .patch("/v1/sites/s1", &app.admin, json!({"session_limit": null}))
        .await;
    assert_eq!(r.body["effective"]["session_limit"], 7);
    assert_eq!(r.body["config_version"], 5);
}

#[tokio::test]
async fn config_honours_if_none_match() {
    let app = spawn().await;
    let site_token = app.site_with("www", json!({"session_limit": 3})).await;
    let r = app.get("/v1/sites/www/config", &site_token).await;
    assert_eq!(r.status, StatusCode::OK);
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    let r = app
        .client
        .get(format!("{}/v1/sites/www/config", app.url))
        .bearer_auth(&site_token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    app.patch(
        "/v1/plans/www-plan",
        &app.admin,
        json!({"session_limit": 4}),
    )
    .await;
    let r = app
        .client
        .get(format!("{}/v1/sites/www/config", app.url))
        .bearer_auth(&site_token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn tenants_may_lower_but_not_raise_the_limit() {
    let app = spawn().await;
    app.site_with("www", json!({"session_limit": 10})).await;
    let tenant = app.token("tenant", Some("www-tenant"), None).await;
    let r = app
        .patch("/v1/sites/www", &tenant, json!({"session_limit": 4}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["effective"]["session_limit"], 4);
    let r = app
        .patch("/v1/sites/www", &tenant, json!({"session_limit": 11}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "session_limit");
    let r = app
        .patch("/v1/sites/www", &tenant, json!({"plan": "www-plan"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A tenant may change its own billing e-mail and notify URL, not its name.
    let r = app
        .patch(
            "/v1/tenants/www-tenant",
            &tenant,
            json!({"billing_email": "b@acme.example"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["billing_email"], "b@acme.example");
    let r = app
        .patch("/v1/tenants/www-tenant", &tenant, json!({"name": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A tenant posting a plan gets 403 whatever the body.
    let r = app.post("/v1/plans", &tenant, json!({"bogus": true})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn site_creation_returns_the_secret_once_and_rotation_replaces_it() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 1})).await;
    app.create_tenant("t").await;
    let r = app
        .create_site(
            "s",
            "t",
            "p",
            json!({"webhook_url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    let secret = r.body["webhook_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let r = app.get("/v1/sites/s", &app.admin).await;
    assert!(!r.text.contains(&secret), "a GET must not show the secret");
    let r = app.get("/v1/sites", &app.admin).await;
    assert!(!r.text.contains("whsec_"));
    let r = app
        .post("/v1/sites/s/webhook-secret", &app.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new = r.body["webhook_secret"].as_str().unwrap();
    assert!(new.starts_with("whsec_") && new != secret);
}

#[tokio::test]
async fn validation_names_each_field() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 1})).await;
    app.create_tenant("t").await;
    let r = app
        .post(
            "/v1/sites",
            &app.admin,
            json!({"slug": "Bad Slug", "tenant": "t", "name": "x", "plan": "p",
                   "webhook_url": "ftp://x", "idle_timeout_seconds": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"slug")
            && fields.contains(&"webhook_url")
            && fields.contains(&"idle_timeout_seconds"),
        "{fields:?}"
    );
    let r = app
        .post(
            "/v1/sites",
            &app.admin,
            json!({"slug": "s", "tenant": "nobody", "name": "x", "plan": "p"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "tenant");
    let r = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "t2", "name": "x", "billing_email": "nope"}),
        )
        .await;
    assert_eq!(r.body["errors"][0]["field"], "billing_email");
    let r = app
        .post(
            "/v1/plans",
            &app.admin,
            json!({"code": "c", "name": "x", "session_limit": 1, "currency": "euro"}),
        )
        .await;
    assert_eq!(r.body["errors"][0]["field"], "currency");
}

fn forge(payload: serde_json::Value, header: serde_json::Value, key: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let h = b64.encode(header.to_string());
    let p = b64.encode(payload.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// Every endpoint class with every kind of caller, asserting the exact status.
#[tokio::test]
async fn authorization_matrix() {
    let app = spawn().await;
    app.site_with("own", json!({"session_limit": 5})).await;
    app.site_with("other", json!({"session_limit": 5})).await;
    let own_tenant = app.token("tenant", Some("own-tenant"), None).await;
    let own_site = app.token("site", None, Some("own")).await;
    let other_site = app.token("site", None, Some("other")).await;
    let now = chrono::Utc::now().timestamp();
    let wrong_key = forge(
        json!({"iss": "headcount", "sub": "admin", "role": "admin", "iat": now, "exp": now + 600, "jti": "w"}),
        json!({"alg": "HS256", "typ": "JWT"}),
        b"not-the-key-not-the-key-not-the-key!",
    );
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg_none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(json!({"iss": "headcount", "sub": "admin", "role": "admin", "iat": now, "exp": now + 600, "jti": "n"}).to_string())
    );
    let expired = {
        let c = headcount::auth::claims(
            headcount::auth::Role::Admin,
            None,
            None,
            None,
            (now - 7200) * 1000,
            60,
        );
        app.state.keys.mint(&c).unwrap()
    };
    let revoked = {
        let r = app
            .post("/v1/tokens", &app.admin, json!({"role": "admin"}))
            .await;
        let jti = r.body["jti"].as_str().unwrap().to_owned();
        assert_eq!(
            app.delete(&format!("/v1/tokens/{jti}"), &app.admin)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        r.body["token"].as_str().unwrap().to_owned()
    };
    let ts = chrono::Utc::now().to_rfc3339();
    let event = json!({"events": [{"type": "session.started", "session": "x1", "at": ts}]});
    // (method, path, body) and the expected status per caller:
    // admin, own tenant, own site, other site, wrong key, alg none, expired, revoked.
    type Case = (
        &'static str,
        &'static str,
        Option<serde_json::Value>,
        [u16; 8],
    );
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/v1/plans",
            None,
            [200, 200, 403, 403, 401, 401, 401, 401],
        ),
        (
            "POST",
            "/v1/plans",
            Some(json!({"code": "zz", "name": "z", "session_limit": 1})),
            [201, 403, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/tenants/own-tenant",
            None,
            [200, 200, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/tenants/other-tenant",
            None,
            [200, 404, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/sites/own",
            None,
            [200, 200, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/sites/other",
            None,
            [200, 404, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/sites/own/config",
            None,
            [200, 200, 200, 404, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/sites/other/config",
            None,
            [200, 404, 404, 200, 401, 401, 401, 401],
        ),
        (
            "POST",
            "/v1/sites/own/events",
            Some(event.clone()),
            [403, 403, 200, 404, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/sites/own/sessions",
            None,
            [200, 200, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/sites/other/sessions",
            None,
            [200, 404, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/sites/other/usage",
            None,
            [200, 404, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/sites/other/deliveries",
            None,
            [200, 404, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/tenants/other-tenant/usage",
            None,
            [200, 404, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/usage",
            None,
            [200, 403, 403, 403, 401, 401, 401, 401],
        ),
        (
            "DELETE",
            "/v1/sites/other/sessions/x1",
            None,
            [404, 404, 403, 403, 401, 401, 401, 401],
        ),
        (
            "POST",
            "/v1/tokens",
            Some(json!({"role": "site", "site": "other"})),
            [201, 404, 403, 403, 401, 401, 401, 401],
        ),
        (
            "POST",
            "/v1/tokens",
            Some(json!({"role": "admin"})),
            [201, 403, 403, 403, 401, 401, 401, 401],
        ),
        (
            "DELETE",
            "/v1/tokens/some-jti",
            None,
            [204, 403, 403, 403, 401, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/audit",
            None,
            [200, 403, 403, 403, 401, 401, 401, 401],
        ),
    ];
    let callers = [
        app.admin.clone(),
        own_tenant,
        own_site,
        other_site,
        wrong_key,
        alg_none,
        expired,
        revoked,
    ];
    let names = [
        "admin",
        "own tenant",
        "own site",
        "other site",
        "wrong key",
        "alg none",
        "expired",
        "revoked",
    ];
    for (method, path, body, expected) in cases {
        for (i, token) in callers.iter().enumerate() {
            let r = app.call(method, path, Some(token), body.clone()).await;
            assert_eq!(
                r.status.as_u16(),
                expected[i],
                "{method} {path} as {}: {}",
                names[i],
                r.text
            );
            if r.status.as_u16() >= 400 {
                assert!(is_problem(&r), "{method} {path}: {}", r.text);
            }
        }
    }
    // No token at all.
    assert_eq!(
        app.call("GET", "/v1/plans", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}
