//! Accounts that take no place (`exempt_roles`): their sessions are admitted whatever
//! the counts, listed and marked, and never counted, evicted or billed as peak.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn ask(app: &TestApp, site: &str, token: &str, body: Value) -> Value {
    let r = app
        .post(&format!("/v1/sites/{site}/admissions"), token, body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

fn robot(session: &str) -> Value {
    json!({"session": session, "user": "robot", "roles": ["monitor"]})
}

async fn sessions(app: &TestApp, site: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/v1/sites/{site}/sessions?state=active&limit=200"),
            &app.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn exempt_sessions_are_admitted_at_a_full_site_and_never_counted() {
    let app = spawn().await;
    let token = app
        .site_with(
            "x",
            json!({"session_limit": 2, "exempt_roles": ["monitor"], "per_user_limit": 1}),
        )
        .await;
    let cfg = app.get("/v1/sites/x/config", &token).await;
    assert_eq!(cfg.body["exempt_roles"], json!(["monitor"]), "{}", cfg.text);
    for s in ["a", "b"] {
        let r = ask(&app, "x", &token, json!({"session": s, "user": s})).await;
        assert_eq!(r["admitted"], true, "{r}");
    }
    let r = ask(&app, "x", &token, json!({"session": "c", "user": "c"})).await;
    assert_eq!(r["outcome"], "limit_reached", "{r}");
    // Full site, and the same user over their cap of one: admitted, counted at 2.
    for s in ["r1", "r2", "r3"] {
        let r = ask(&app, "x", &token, robot(s)).await;
        assert_eq!(r["admitted"], true, "{r}");
        assert_eq!(r["outcome"], "within_limit", "{r}");
        assert_eq!(r["counted"], 2, "{r}");
    }
    // Later events keep them exempt.
    let r = app
        .events(
            "x",
            &token,
            json!([{"type": "session.activity", "session": "r1", "at": app.at(0)},
                   {"type": "session.activity", "session": "a", "at": app.at(0)}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let again = ask(&app, "x", &token, robot("r2")).await;
    assert_eq!(again["counted"], 2, "{again}");

    let u = app.usage("x").await;
    assert_eq!(
        (&u["active"], &u["live"], &u["dangling"], &u["counted"]),
        (&json!(2), &json!(2), &json!(0), &json!(2)),
        "{u}"
    );
    let listed = sessions(&app, "x").await;
    assert_eq!(listed.len(), 5);
    for s in &listed {
        let exempt = s["session"].as_str().unwrap().starts_with('r');
        assert_eq!(s["exempt"], exempt, "{s}");
    }
    // Still full for everyone else; ending an exempt session frees nothing.
    let r = app.delete("/v1/sites/x/sessions/r1", &app.admin).await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = ask(&app, "x", &token, json!({"session": "d", "user": "d"})).await;
    assert_eq!(r["outcome"], "limit_reached", "{r}");
    assert_eq!(r["counted"], 2, "{r}");
    // The per-user view does not count them either.
    let users = app.get("/v1/sites/x/users", &app.admin).await;
    assert!(
        !users.text.contains("\"robot\""),
        "exempt sessions hold no user's place: {}",
        users.text
    );
}

#[tokio::test]
async fn exempt_sessions_are_never_evicted() {
    let app = spawn().await;
    let token = app
        .site_with(
            "e",
            json!({"session_limit": 1, "over_limit": "evict_dangling",
                   "idle_timeout_seconds": 60, "exempt_roles": ["monitor"]}),
        )
        .await;
    let r = ask(&app, "e", &token, robot("r1")).await;
    assert_eq!(r["outcome"], "within_limit", "{r}");
    let r = ask(&app, "e", &token, json!({"session": "a"})).await;
    assert_eq!(r["outcome"], "within_limit", "{r}");
    app.advance(120);
    // Both dangling; only the counted one may go.
    let r = ask(&app, "e", &token, json!({"session": "b"})).await;
    assert_eq!(r["outcome"], "evicted_dangling", "{r}");
    assert_eq!(r["evicted"], json!(["a"]), "{r}");
    app.advance(120);
    let r = ask(&app, "e", &token, json!({"session": "c"})).await;
    assert_eq!(r["evicted"], json!(["b"]), "{r}");
    app.advance(120);
    // With the exempt session alone dangling, there is nothing to evict.
    let r = app
        .events(
            "e",
            &token,
            json!([{"type": "session.activity", "session": "c", "at": app.at(0)}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = ask(&app, "e", &token, json!({"session": "d"})).await;
    assert_eq!(r["outcome"], "limit_reached", "{r}");
    let listed = sessions(&app, "e").await;
    assert!(
        listed
            .iter()
            .any(|s| s["session"] == "r1" && s["exempt"] == true),
        "{listed:?}"
    );
}

#[tokio::test]
async fn exempt_sessions_take_no_place_in_the_tenant_pool() {
    let app = spawn().await;
    app.create_plan(
        "p",
        json!({"session_limit": 5, "exempt_roles": ["monitor"]}),
    )
    .await;
    let r = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "t", "name": "t", "pooled_session_limit": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    app.create_site("s1", "t", "p", json!({})).await;
    let token = app.token("site", None, Some("s1")).await;
    let r = ask(&app, "s1", &token, json!({"session": "a"})).await;
    assert_eq!(r["admitted"], true, "{r}");
    let r = ask(&app, "s1", &token, json!({"session": "b"})).await;
    assert_eq!(r["outcome"], "pool_limit_reached", "{r}");
    let r = ask(&app, "s1", &token, robot("r1")).await;
    assert_eq!(r["outcome"], "within_limit", "{r}");
    let u = app.get("/v1/tenants/t/usage", &app.admin).await;
    assert_eq!(u.body["pool_counted"], 1, "{}", u.text);
}

#[tokio::test]
async fn exempt_sessions_are_not_billed_as_peak() {
    let app = spawn().await;
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2031-03-10T00:00:00Z")
            .unwrap()
            .into(),
    );
    let token = app
        .site_with(
            "b",
            json!({"session_limit": 1, "over_limit": "allow_overage", "overage_percent": 100,
                   "exempt_roles": ["monitor"]}),
        )
        .await;
    let r = ask(&app, "b", &token, json!({"session": "a", "user": "a"})).await;
    assert_eq!(r["admitted"], true, "{r}");
    for s in ["r1", "r2", "r3"] {
        let r = ask(&app, "b", &token, robot(s)).await;
        assert_eq!(r["outcome"], "within_limit", "{r}");
    }
    headcount::jobs::sampler::sample(&app.state).await.unwrap();
    app.advance(3600);
    headcount::jobs::sampler::sample(&app.state).await.unwrap();
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2031-04-02T00:00:00Z")
            .unwrap()
            .into(),
    );
    let r = app
        .get("/v1/billing/export?period=2031-03&format=json", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let row = &r.body["rows"][0];
    assert_eq!(row["site"], "b", "{row}");
    assert_eq!(
        (
            &row["peak_active"],
            &row["overage_sessions"],
            &row["sessions_started"]
        ),
        (&json!(1), &json!(0), &json!(1)),
        "{row}"
    );
}

#[tokio::test]
async fn exempt_roles_are_the_providers_and_checked() {
    let app = spawn().await;
    app.site_with("x", json!({"session_limit": 3})).await;
    let plan = app.get("/v1/plans/x-plan", &app.admin).await;
    assert_eq!(plan.body["exempt_roles"], json!([]), "{}", plan.text);
    let cfg = app.get("/v1/sites/x/config", &app.admin).await;
    assert_eq!(cfg.body["exempt_roles"], json!([]), "{}", cfg.text);

    // A tenant may not set them: 403, and nothing changes.
    let tenant = app.token("tenant", Some("x-tenant"), None).await;
    let r = app
        .patch("/v1/sites/x", &tenant, json!({"exempt_roles": ["staff"]}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let after = app.get("/v1/sites/x/config", &app.admin).await;
    assert_eq!(after.body, cfg.body);

    // Bad lists: 422 naming the field, on sites and on plans.
    let many: Vec<String> = (0..17).map(|i| format!("r{i}")).collect();
    for roles in [json!(many), json!(["x".repeat(65)]), json!([""])] {
        let r = app
            .patch("/v1/sites/x", &app.admin, json!({"exempt_roles": roles}))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "exempt_roles", "{}", r.text);
        let r = app
            .patch(
                "/v1/plans/x-plan",
                &app.admin,
                json!({"exempt_roles": roles}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "exempt_roles", "{}", r.text);
    }
    assert_eq!(
        app.get("/v1/sites/x/config", &app.admin).await.body,
        cfg.body
    );

    // The provider's override wins over the plan, bumps the version, and clears.
    let r = app
        .patch(
            "/v1/plans/x-plan",
            &app.admin,
            json!({"exempt_roles": ["bot"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .patch(
            "/v1/sites/x",
            &app.admin,
            json!({"exempt_roles": ["monitor"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let now = app.get("/v1/sites/x/config", &app.admin).await;
    assert_eq!(now.body["exempt_roles"], json!(["monitor"]), "{}", now.text);
    assert!(now.body["config_version"].as_i64() > cfg.body["config_version"].as_i64());
    let r = app
        .patch("/v1/sites/x", &app.admin, json!({"exempt_roles": null}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cleared = app.get("/v1/sites/x/config", &app.admin).await;
    assert_eq!(
        cleared.body["exempt_roles"],
        json!(["bot"]),
        "{}",
        cleared.text
    );
}

/// In local mode the site decides and only reports: a session it reports with one of
/// the site's `exempt_roles` is listed and never counted, and stays so on later events
/// that carry no roles.
#[tokio::test]
async fn sessions_reported_with_an_exempt_role_take_no_place() {
    let app = spawn().await;
    let token = app
        .site_with(
            "l",
            json!({"session_limit": 5, "exempt_roles": ["service"]}),
        )
        .await;
    let started = |session: &str, roles: Value| {
        json!({"type": "session.started", "session": session, "at": app.at(-60),
            "user": session, "roles": roles})
    };
    let r = app
        .events(
            "l",
            &token,
            json!([
                started("ann", json!(["staff"])),
                started("svc", json!(["service"])),
                started("bad", json!([""])),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["accepted"], 2, "{}", r.text);
    assert_eq!(r.body["rejected"][0]["index"], 2, "{}", r.text);
    assert!(
        r.body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("roles"),
        "{}",
        r.text
    );
    let activity = json!({"type": "session.activity", "session": "svc", "at": app.at(0)});
    let r = app.events("l", &token, json!([activity])).await;
    assert_eq!(r.body["accepted"], 1, "{}", r.text);
    let usage = app.usage("l").await;
    assert_eq!(
        (usage["active"].as_i64(), usage["counted"].as_i64()),
        (Some(1), Some(1)),
        "{usage}"
    );
    let listed = sessions(&app, "l").await;
    let exempt: Vec<(&str, bool)> = listed
        .iter()
        .map(|s| (s["session"].as_str().unwrap(), s["exempt"] == true))
        .collect();
    assert!(
        exempt.contains(&("svc", true)) && exempt.contains(&("ann", false)),
        "{exempt:?}"
    );
}
