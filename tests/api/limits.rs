//! Limits that fit real sites: reserved places, per-user caps, self-service replace,
//! tenant pools and the denials list.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn};

async fn ask(app: &TestApp, site: &str, token: &str, body: Value) -> Value {
    let r = app
        .post(&format!("/v1/sites/{site}/admissions"), token, body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

#[tokio::test]
async fn a_reserved_place_keeps_room_for_the_admin_under_concurrency() {
    let app = spawn().await;
    let t = app
        .site_with("r", json!({"session_limit": 5, "reserved_slots": 1}))
        .await;
    let plan = app.get("/v1/plans/r-plan", &app.admin).await;
    assert_eq!(plan.body["reserved_slots"], 1);
    assert_eq!(plan.body["reserved_roles"], json!(["admin"]));
    // Ordinary sign-ins fill the open places, concurrently: exactly limit - reserved.
    let ordinary = |from: usize, n: usize| {
        let (t, app) = (t.clone(), &app);
        join_all((from..from + n).map(move |i| {
            let t = t.clone();
            async move {
                let body = json!({"session": format!("o{i}"), "user": format!("u{i}")});
                ask(app, "r", &t, body).await
            }
        }))
    };
    let admitted = |results: &[Value]| results.iter().filter(|r| r["admitted"] == true).count();
    let first = ordinary(0, 50).await;
    assert_eq!(admitted(&first), 4, "limit 5 minus 1 reserved place");
    // The admin gets the reserved place while more ordinary sign-ins race it. (Sent
    // with the first wave, the admin could be decided before the fourth ordinary one
    // and, counted like any session (DESIGN §3), leave it only three places.)
    let admin = ask(
        &app,
        "r",
        &t,
        json!({"session": "boss", "user": "root", "roles": ["staff", "admin"]}),
    );
    let (more, admin) = tokio::join!(ordinary(50, 20), admin);
    assert_eq!(
        admitted(&more),
        0,
        "no ordinary session takes the reserved place"
    );
    assert_eq!(admin["admitted"], true, "{admin}");
    // Full now, for the admin too.
    let again = ask(
        &app,
        "r",
        &t,
        json!({"session": "boss2", "roles": ["admin"]}),
    )
    .await;
    assert_eq!(again["outcome"], "limit_reached", "{again}");
    // Bad roles: 422 naming the field.
    let many: Vec<String> = (0..17).map(|i| format!("r{i}")).collect();
    for roles in [json!(many), json!(["x".repeat(65)])] {
        let r = app
            .post(
                "/v1/sites/r/admissions",
                &t,
                json!({"session": "z", "roles": roles}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "roles");
    }
}

#[tokio::test]
async fn a_per_user_cap_refuses_or_replaces_the_users_oldest() {
    let app = spawn().await;
    let t = app
        .site_with("u", json!({"session_limit": 10, "per_user_limit": 2}))
        .await;
    for s in ["a1", "a2"] {
        app.advance(1);
        let r = ask(&app, "u", &t, json!({"session": s, "user": "ann"})).await;
        assert_eq!(r["admitted"], true);
    }
    let r = ask(&app, "u", &t, json!({"session": "a3", "user": "ann"})).await;
    assert_eq!(r["outcome"], "user_limit_reached", "{r}");
    assert_eq!(r["own_sessions"].as_array().unwrap().len(), 2, "{r}");
    let r = ask(&app, "u", &t, json!({"session": "b1", "user": "bob"})).await;
    assert_eq!(r["admitted"], true, "another user is not held up: {r}");

    // replace_oldest: the user's most idle session makes way.
    let r = app
        .patch(
            "/v1/sites/u",
            &app.admin,
            json!({"per_user_over_limit": "replace_oldest"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = ask(&app, "u", &t, json!({"session": "a3", "user": "ann"})).await;
    assert_eq!(r["outcome"], "replaced", "{r}");
    assert_eq!(r["replaced"], json!(["a1"]), "{r}");
    let ended = app
        .get("/v1/sites/u/sessions?state=ended", &app.admin)
        .await;
    let row = ended.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"] == "a1")
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["end_reason"], "replaced", "{}", ended.text);
    // Its kill is queued for the site.
    let d = app.get("/v1/sites/u/deliveries", &app.admin).await;
    assert!(
        d.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["type"] == "session.kill" && x["payload"]["data"]["reason"] == "replaced"),
        "{}",
        d.text
    );
}

#[tokio::test]
async fn a_refused_user_can_end_own_sessions_and_sign_in_in_one_decision() {
    let app = spawn().await;
    let t = app.site_with("x", json!({"session_limit": 2})).await;
    ask(
        &app,
        "x",
        &t,
        json!({"session": "old", "user": "ann", "user_agent": "Firefox"}),
    )
    .await;
    ask(&app, "x", &t, json!({"session": "bobs", "user": "bob"})).await;
    let r = ask(&app, "x", &t, json!({"session": "new", "user": "ann"})).await;
    assert_eq!(r["outcome"], "limit_reached", "{r}");
    let own = r["own_sessions"].as_array().unwrap();
    assert_eq!(own.len(), 1, "{r}");
    assert_eq!(own[0]["session"], "old");
    assert_eq!(own[0]["state"], "live");
    assert_eq!(own[0]["user_agent"], "Firefox");
    // Naming another user's or an unknown session: 422, nothing ended.
    for bad in ["bobs", "nope"] {
        let r = app
            .post(
                "/v1/sites/x/admissions",
                &t,
                json!({"session": "new", "user": "ann", "replace": [bad]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "replace");
    }
    assert_eq!(app.usage("x").await["active"], 2);
    // Concurrent: two devices of ann each replace "old"; one wins, nothing passes the limit.
    let tries = (0..2).map(|i| {
        let t = t.clone();
        let app = &app;
        async move {
            app.post(
                "/v1/sites/x/admissions",
                &t,
                json!({"session": format!("new{i}"), "user": "ann", "replace": ["old"]}),
            )
            .await
        }
    });
    let replies = join_all(tries).await;
    let won: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK && r.body["outcome"] == "replaced")
        .collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert_eq!(won[0].body["replaced"], json!(["old"]));
    let u = app.usage("x").await;
    assert_eq!(u["active"], 2, "{u}");
}

#[tokio::test]
async fn a_tenant_pool_holds_across_its_sites_under_concurrency() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    let r = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "t", "name": "t", "pooled_session_limit": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut tokens = Vec::new();
    for s in ["s1", "s2", "s3"] {
        app.create_site(s, "t", "p", json!({})).await;
        tokens.push((s, app.token("site", None, Some(s)).await));
    }
    let calls = (0..45).map(|i| {
        let (site, token) = tokens[i % 3].clone();
        let app = &app;
        async move { ask(app, site, &token, json!({"session": format!("k{i}")})).await }
    });
    let results = join_all(calls).await;
    let admitted = results.iter().filter(|r| r["admitted"] == true).count();
    assert_eq!(admitted, 10);
    assert!(results.iter().any(|r| r["outcome"] == "pool_limit_reached"));
    let u = app.get("/v1/tenants/t/usage", &app.admin).await;
    assert_eq!(u.body["pooled_session_limit"], 10, "{}", u.text);
    assert_eq!(u.body["pool_counted"], 10, "{}", u.text);
    // A tenant may not set its own pool.
    let tenant = app.token("tenant", Some("t"), None).await;
    let r = app
        .patch(
            "/v1/tenants/t",
            &tenant,
            json!({"pooled_session_limit": 100}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}

#[tokio::test]
async fn denials_say_what_each_refusal_saw() {
    let app = spawn().await;
    let t = app
        .site_with(
            "d",
            json!({"session_limit": 2, "idle_timeout_seconds": 600}),
        )
        .await;
    ask(&app, "d", &t, json!({"session": "a", "user": "ann"})).await;
    app.advance(3600);
    ask(&app, "d", &t, json!({"session": "b", "user": "bob"})).await;
    let r = ask(&app, "d", &t, json!({"session": "c", "user": "cid"})).await;
    assert_eq!(r["admitted"], false);
    let l = app.get("/v1/sites/d/denials", &app.admin).await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.text);
    let items = l.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", l.text);
    let d = &items[0];
    assert_eq!(d["session"], "c");
    assert_eq!(d["user"], "cid");
    assert_eq!(d["outcome"], "limit_reached");
    assert_eq!(d["counted"], 2);
    assert_eq!(d["session_limit"], 2);
    assert_eq!(d["count_mode"], "active");
    let seen = d["counted_sessions"].as_array().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["session"], "a", "most idle first");
    assert_eq!(seen[0]["state"], "dangling");
    assert_eq!(seen[0]["idle_seconds"], 3600);
    assert_eq!(seen[1]["state"], "live");
    // The owning tenant sees them; another tenant gets 404.
    let own = app.token("tenant", Some("d-tenant"), None).await;
    assert_eq!(
        app.get("/v1/sites/d/denials", &own).await.status,
        StatusCode::OK
    );
    app.create_tenant("other").await;
    let other = app.token("tenant", Some("other"), None).await;
    assert_eq!(
        app.get("/v1/sites/d/denials", &other).await.status,
        StatusCode::NOT_FOUND
    );
    // A window that ends before the refusal is empty.
    let before = app.at(-10).replace('+', "%2B");
    let l = app
        .get(&format!("/v1/sites/d/denials?to={before}"), &app.admin)
        .await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.text);
    assert_eq!(l.body["items"].as_array().unwrap().len(), 0);
}

/// A `replace` naming one session twice frees one place, ends it once, and an active
/// session asking again with `replace` is not counted twice.
#[tokio::test]
async fn a_repeated_replace_frees_one_place_once() {
    let app = spawn().await;
    let t = app.site_with("rr", json!({"session_limit": 2})).await;
    ask(&app, "rr", &t, json!({"session": "old", "user": "ann"})).await;
    ask(&app, "rr", &t, json!({"session": "bob1", "user": "bob"})).await;
    let r = ask(
        &app,
        "rr",
        &t,
        json!({"session": "new", "user": "ann", "replace": ["old", "old"]}),
    )
    .await;
    assert_eq!(r["outcome"], "replaced", "{r}");
    assert_eq!(r["replaced"], json!(["old"]), "{r}");
    assert_eq!(r["counted"], 2, "{r}");
    // A third user is refused: the repeat did not make room twice.
    let r = ask(&app, "rr", &t, json!({"session": "cid1", "user": "cid"})).await;
    assert_eq!(r["outcome"], "limit_reached", "{r}");
    // "new" asks again with a replace of a session that frees nothing: still admitted.
    let r = ask(
        &app,
        "rr",
        &t,
        json!({"session": "new", "user": "ann", "replace": ["new"]}),
    )
    .await;
    assert_eq!(r["admitted"], true, "{r}");
    assert_eq!(app.usage("rr").await["active"], 2);
}
