//! Request hygiene and what a tenant may change: trailing bytes, slow bodies, nulls,
//! and limits that never exceed what was sold.

use std::io::{Read, Write};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{is_problem, spawn};

/// A provider sells one site more (or fewer) places than its plan: an admin's
/// `session_limit` decides, upwards too; the tenant's own override is capped at that
/// deal, or at the plan's limit where there is none, across plan moves.
#[tokio::test]
async fn the_providers_limit_for_a_site_decides_and_caps_the_tenants() {
    let app = spawn().await;
    app.create_plan("two", json!({"session_limit": 2})).await;
    app.create_plan("one", json!({"session_limit": 1})).await;
    app.create_plan("ten", json!({"session_limit": 10})).await;
    app.create_tenant("t").await;
    app.create_site("s", "t", "two", json!({})).await;
    let tenant = app.token("tenant", Some("t"), None).await;
    let site = app.token("site", None, Some("s")).await;
    let r = app
        .patch("/v1/sites/s", &app.admin, json!({"session_limit": 10}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["provider_session_limit"], 10, "{}", r.text);
    assert_eq!(
        r.body["overrides"]["session_limit"],
        json!(null),
        "{}",
        r.text
    );
    assert_eq!(r.body["effective"]["session_limit"], 10, "{}", r.text);
    let mut admitted = Vec::new();
    for i in 0..11 {
        let r = app.admit("s", &site, &format!("a{i}")).await;
        admitted.push(r.body["admitted"] == true);
    }
    assert_eq!(admitted.iter().filter(|a| **a).count(), 10, "{admitted:?}");
    assert!(!admitted[10], "the eleventh is refused");

    // The tenant may lower within the deal, not raise above it.
    let limit = |app: &crate::helpers::TestApp| {
        let site = site.clone();
        let app_url = app.url.clone();
        async move {
            let r = reqwest::Client::new()
                .get(format!("{app_url}/v1/sites/s/config"))
                .bearer_auth(site)
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()["session_limit"].clone()
        }
    };
    let r = app
        .patch("/v1/sites/s", &tenant, json!({"session_limit": 11}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("session_limit") && r.text.contains("10"),
        "{}",
        r.text
    );
    assert_eq!(limit(&app).await, 10, "nothing changed");
    let r = app
        .patch("/v1/sites/s", &tenant, json!({"session_limit": 5}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["overrides"]["session_limit"], 5, "{}", r.text);
    assert_eq!(r.body["provider_session_limit"], 10, "the deal is kept");
    assert_eq!(limit(&app).await, 5);
    // Plan moves: the deal goes with the site; without it the plan caps again.
    app.patch("/v1/sites/s", &app.admin, json!({"plan": "one"}))
        .await;
    assert_eq!(limit(&app).await, 5, "the deal outlives the move");
    let r = app
        .patch("/v1/sites/s", &app.admin, json!({"session_limit": null}))
        .await;
    assert_eq!(r.body["provider_session_limit"], json!(null), "{}", r.text);
    assert_eq!(
        limit(&app).await,
        1,
        "the tenant's 5 is capped by the plan's 1"
    );
    app.patch("/v1/sites/s", &app.admin, json!({"plan": "ten"}))
        .await;
    assert_eq!(
        limit(&app).await,
        5,
        "the tenant's own 5 under the plan's 10"
    );

    // A site created with a limit carries the provider's deal.
    let r = app
        .create_site("deal", "t", "two", json!({"session_limit": 7}))
        .await;
    assert_eq!(r.body["provider_session_limit"], 7, "{}", r.text);
    assert_eq!(r.body["effective"]["session_limit"], 7, "{}", r.text);
}

#[tokio::test]
async fn a_tenant_never_holds_more_than_its_plan_sold() {
    let app = spawn().await;
    app.create_plan("ten", json!({"session_limit": 10})).await;
    app.create_plan("two", json!({"session_limit": 2})).await;
    app.create_tenant("t").await;
    app.create_site("s", "t", "ten", json!({})).await;
    let tenant = app.token("tenant", Some("t"), None).await;
    let site = app.token("site", None, Some("s")).await;
    // Up to the plan's limit is fine; above it a 422.
    let r = app
        .patch("/v1/sites/s", &tenant, json!({"session_limit": 10}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .patch("/v1/sites/s", &tenant, json!({"session_limit": 11}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    // The provider moves the site to a smaller plan: the override no longer lifts it.
    let r = app
        .patch("/v1/sites/s", &app.admin, json!({"plan": "two"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let admitted = {
        let mut n = 0;
        for i in 0..12 {
            if app.admit("s", &site, &format!("a{i}")).await.body["admitted"] == true {
                n += 1;
            }
        }
        n
    };
    assert_eq!(admitted, 2);
    let cfg = app.get("/v1/sites/s/config", &site).await;
    assert_eq!(cfg.body["session_limit"], 2, "{}", cfg.text);
    // Lowering the plan's limit re-clamps too.
    let r = app
        .patch("/v1/plans/two", &app.admin, json!({"session_limit": 1}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cfg = app.get("/v1/sites/s/config", &site).await;
    assert_eq!(cfg.body["session_limit"], 1, "{}", cfg.text);

    // The other overrides are the provider's: 403 for a tenant, nothing changed.
    for body in [
        json!({"count_mode": "live"}),
        json!({"over_limit": "allow_overage"}),
        json!({"idle_timeout_seconds": 60}),
        json!({"session_ttl_seconds": 600}),
        json!({"count_mode": null}),
        json!({"limit_message": "busy", "count_mode": "live"}),
    ] {
        let r = app.patch("/v1/sites/s", &tenant, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}: {}", r.text);
        assert!(is_problem(&r));
    }
    let cfg = app.get("/v1/sites/s/config", &site).await;
    assert_eq!(cfg.body["count_mode"], "active");
    assert_ne!(cfg.body["limit_message"], "busy");
    // What a tenant may word is its own.
    let r = app
        .patch(
            "/v1/sites/s",
            &tenant,
            json!({"limit_message": "Full, sorry."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cfg = app.get("/v1/sites/s/config", &site).await;
    assert_eq!(cfg.body["limit_message"], "Full, sorry.");
}

#[tokio::test]
async fn trailing_bytes_and_nulls_are_refused_and_change_nothing() {
    let app = spawn().await;
    let url = format!("{}/v1/plans", app.url);
    let r = app
        .client
        .post(&url)
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body(r#"{"code": "g", "name": "G", "session_limit": 3}garbage"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("trailing"));
    assert_eq!(
        app.get("/v1/plans/g", &app.admin).await.status,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );
    app.create_plan("p", json!({"session_limit": 3})).await;
    let r = app
        .patch("/v1/plans/p", &app.admin, json!({"session_limit": null}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["field"], "session_limit");
    let r = app
        .patch(
            "/v1/plans/p",
            &app.admin,
            json!({"name": null, "session_limit": 4}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        app.get("/v1/plans/p", &app.admin).await.body["session_limit"],
        3
    );
    // Where null means "clear", it still does.
    app.create_tenant("t").await;
    let r = app
        .patch("/v1/tenants/t", &app.admin, json!({"billing_email": null}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .patch("/v1/tenants/t", &app.admin, json!({"name": null}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

/// A body that does not arrive in time is answered with 408, and the connection
/// does not hold anything else up.
#[tokio::test]
async fn a_body_not_received_in_time_is_a_408() {
    let app = spawn().await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    let admin = app.admin.clone();
    let started = std::time::Instant::now();
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        write!(
            s,
            "POST /v1/plans HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"code\":"
        )
        .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    // Meanwhile other requests are answered.
    assert_eq!(
        app.get("/v1/plans", &app.admin).await.status,
        StatusCode::OK
    );
    let reply = reply.await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(25), "took {took:?}");
}

/// A query parameter with a control character is a 400 naming it, on both backends
/// (PostgreSQL cannot even compare text holding a NUL), not a 500.
#[tokio::test]
async fn control_characters_in_query_parameters_are_refused() {
    let app = spawn().await;
    app.site_with("s", json!({"session_limit": 2})).await;
    for (path, field) in [
        ("/v1/sites?tenant=%00", "tenant"),
        ("/v1/sites/s/sessions?user=ann%00", "user"),
        ("/v1/sites/s/sessions?state=active&user=%1b", "user"),
        ("/v1/sites?x%00=1", "x\u{0}"),
    ] {
        let r = app.get(path, &app.admin).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert!(is_problem(&r), "{path}");
        assert_eq!(r.body["errors"][0]["field"], field, "{path}: {}", r.text);
    }
    let r = app.get("/v1/sites?tenant=s-tenant", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
