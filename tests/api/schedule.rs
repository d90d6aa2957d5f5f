//! Limits over time: scheduled changes of sites and plans and temporary boosts, applied
//! by the background runner when the clock is moved, each dated its own instant.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, Reply, TestApp, is_problem, spawn, spawn_with};
use crate::receiver::Receiver;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Polls `check` until it holds; the runner wakes every few seconds of real time.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn change_status(app: &TestApp, path: &str, id: i64) -> String {
    let r = app.get(path, &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let items = r.body["items"].as_array().unwrap();
    let item = items.iter().find(|i| i["id"] == id).unwrap();
    item["status"].as_str().unwrap().to_owned()
}

async fn wait_done(app: &TestApp, path: &str, id: i64) {
    eventually(&format!("change {id} done"), || async {
        change_status(app, path, id).await == "done"
    })
    .await;
}

/// The site's plan-history rows: (plan id, limit, effective_from).
async fn plan_history(app: &TestApp, slug: &str) -> Vec<(i64, i64, i64)> {
    let slug = slug.to_owned();
    app.state
        .db
        .run(move |c| {
            use diesel::prelude::*;
            use headcount::db::schema::{site_plan_history as h, sites as s};
            let id: i64 = s::table.filter(s::slug.eq(&slug)).select(s::id).first(c)?;
            Ok::<_, headcount::db::Error>(
                h::table
                    .filter(h::site_id.eq(id))
                    .order((h::effective_from, h::id))
                    .select((h::plan_id, h::session_limit, h::effective_from))
                    .load(c)?,
            )
        })
        .await
        .unwrap()
}

fn assert_invalid(r: &Reply, field: &str) {
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(is_problem(r), "{}", r.text);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&field), "{field} not in {}", r.text);
}

/// Plans `big` (10) and `small` (2), tenant `acme` and its site `erp` on `big`; the
/// site as created.
async fn setup(app: &TestApp, site_extra: Value) -> Value {
    app.create_plan(
        "big",
        json!({"session_limit": 10, "monthly_price_cents": 3100}),
    )
    .await;
    app.create_plan(
        "small",
        json!({"session_limit": 2, "monthly_price_cents": 620}),
    )
    .await;
    app.create_tenant("acme").await;
    let r = app.create_site("erp", "acme", "big", site_extra).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

const CHANGES: &str = "/v1/sites/erp/scheduled-changes";

#[tokio::test]
async fn a_scheduled_downgrade_splits_the_bill_exactly_at_its_instant() {
    let app = spawn().await;
    app.clock.set(t("2031-03-01T00:00:00Z"));
    setup(&app, json!({})).await;
    let r = app
        .post(
            CHANGES,
            &app.admin,
            json!({"at": "2031-03-16T12:00:00Z", "plan": "small"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["plan"], "small");
    assert_eq!(r.body["scheduled_by"], "provider");
    let id = r.body["id"].as_i64().unwrap();
    // Nothing happens before its time.
    assert_eq!(
        app.get("/v1/sites/erp", &app.admin).await.body["plan"],
        "big"
    );

    app.clock.set(t("2031-03-16T12:00:20Z"));
    wait_done(&app, CHANGES, id).await;
    let site = app.get("/v1/sites/erp", &app.admin).await.body;
    assert_eq!(site["plan"], "small");
    assert_eq!(site["config_version"], 2);
    assert_eq!(site["effective"]["session_limit"], 2);
    let at = t("2031-03-16T12:00:00Z").timestamp_millis();
    assert_eq!(plan_history(&app, "erp").await.last().unwrap().2, at);

    app.clock.set(t("2031-04-02T00:00:00Z"));
    let r = app
        .get("/v1/billing/export?period=2031-03&format=json", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = r.body["rows"].as_array().unwrap();
    let lines: Vec<(&str, i64, &str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["plan"].as_str().unwrap(),
                r["session_limit"].as_i64().unwrap(),
                r["from"].as_str().unwrap(),
                r["to"].as_str().unwrap(),
                r["base_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    // 15.5 of 31 days on each plan.
    assert_eq!(
        lines,
        [
            (
                "big",
                10,
                "2031-03-01T00:00:00.000Z",
                "2031-03-16T12:00:00.000Z",
                1550
            ),
            (
                "small",
                2,
                "2031-03-16T12:00:00.000Z",
                "2031-04-01T00:00:00.000Z",
                310
            ),
        ]
    );
}

#[tokio::test]
async fn a_cancelled_change_changes_nothing() {
    let app = spawn().await;
    setup(&app, json!({})).await;
    let r = app
        .post(
            CHANGES,
            &app.admin,
            json!({"at": app.at(3600), "plan": "small",
            "overrides": {"limit_message": "Full."}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let cancelled = r.body["id"].as_i64().unwrap();
    // A later one, to know the runner has gone past the cancelled one's time.
    let r = app
        .post(
            CHANGES,
            &app.admin,
            json!({"at": app.at(5400),
            "overrides": {"idle_timeout_seconds": 600}}),
        )
        .await;
    let later = r.body["id"].as_i64().unwrap();
    let path = format!("{CHANGES}/{cancelled}");
    let r = app.delete(&path, &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "cancelled");
    let again = app.delete(&path, &app.admin).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(is_problem(&again));

    app.advance(7200);
    wait_done(&app, CHANGES, later).await;
    assert_eq!(change_status(&app, CHANGES, cancelled).await, "cancelled");
    let site = app.get("/v1/sites/erp", &app.admin).await.body;
    assert_eq!(site["plan"], "big");
    assert_eq!(site["effective"]["idle_timeout_seconds"], 600);
    assert!(site["overrides"]["limit_message"].is_null());
    assert_eq!(site["config_version"], 2);
    // A change that ran cannot be cancelled.
    let r = app.delete(&format!("{CHANGES}/{later}"), &app.admin).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

#[tokio::test]
async fn two_processes_apply_a_change_once() {
    let a = spawn().await;
    let b = spawn_with(Options {
        database_url: Some(a.database_url.clone()),
        ..Default::default()
    })
    .await;
    b.clock.set(a.now());
    let rx = Receiver::start().await;
    a.create_plan("big", json!({"session_limit": 10})).await;
    a.create_plan("small", json!({"session_limit": 2})).await;
    a.create_tenant("acme").await;
    let r = a
        .create_site("erp", "acme", "big", json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    rx.wait_for("the first config", |r| r.len() == 1).await;
    let r = a
        .post(CHANGES, &a.admin, json!({"at": a.at(60), "plan": "small"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    let history_before = plan_history(&a, "erp").await.len();

    // Both processes find it due; each also runs a pass of its own at once.
    a.advance(120);
    b.advance(120);
    let (na, nb) = tokio::join!(
        headcount::jobs::schedule::tick(&a.state),
        headcount::jobs::schedule::tick(&b.state)
    );
    assert!(na.unwrap() + nb.unwrap() <= 1);
    wait_done(&a, CHANGES, id).await;
    let pushes = rx
        .wait_for("config version 2", |r| {
            r.iter().any(|m| m.body["data"]["config_version"] == 2)
        })
        .await;
    assert!(pushes.iter().all(|m| m.signature_ok));
    let versions: Vec<&Value> = pushes
        .iter()
        .map(|m| &m.body["data"]["config_version"])
        .collect();
    assert_eq!(versions, [&json!(1), &json!(2)]);
    assert_eq!(plan_history(&a, "erp").await.len(), history_before + 1);
    assert_eq!(
        b.get("/v1/sites/erp", &b.admin).await.body["config_version"],
        2
    );
    // Another pass on either finds nothing left to do.
    assert_eq!(headcount::jobs::schedule::tick(&b.state).await.unwrap(), 0);
    assert_eq!(headcount::jobs::schedule::tick(&a.state).await.unwrap(), 0);
}

#[tokio::test]
async fn a_change_missed_while_stopped_runs_at_start() {
    let app = spawn().await;
    app.clock.set(t("2031-06-01T00:00:00Z"));
    setup(&app, json!({})).await;
    let r = app
        .post(
            CHANGES,
            &app.admin,
            json!({"at": "2031-06-01T01:00:00Z", "overrides": {"session_limit": 7}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    app.stop_jobs();
    app.clock.set(t("2031-06-02T00:00:00Z"));
    let app = app.restart(Options::default()).await;
    wait_done(&app, CHANGES, id).await;
    let site = app.get("/v1/sites/erp", &app.admin).await.body;
    assert_eq!(site["provider_session_limit"], 7);
    assert_eq!(site["effective"]["session_limit"], 7);
    // Dated its own time, not the time it ran.
    let last = *plan_history(&app, "erp").await.last().unwrap();
    assert_eq!(
        (last.1, last.2),
        (7, t("2031-06-01T01:00:00Z").timestamp_millis())
    );
}

#[tokio::test]
async fn a_boost_raises_the_limit_for_its_window_and_restores_it() {
    let app = spawn().await;
    app.clock.set(t("2031-05-06T08:00:00Z"));
    let rx = Receiver::start().await;
    app.create_plan("office", json!({"session_limit": 5})).await;
    app.create_tenant("acme").await;
    let r = app
        .create_site("erp", "acme", "office", json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    let token = app.token("site", None, Some("erp")).await;
    // One session on all day, so the history has a point every hour.
    let r = app
        .events(
            "erp",
            &token,
            json!([{"type": "session.started", "session": "s1",
            "at": "2031-05-06T08:00:00Z", "expires_at": "2031-05-07T08:00:00Z"}]),
        )
        .await;
    assert_eq!(r.body["accepted"], 1, "{}", r.text);
    let r = app
        .post(
            "/v1/sites/erp/boosts",
            &app.admin,
            json!({"session_limit": 12,
            "from": "2031-05-06T09:00:00Z", "until": "2031-05-06T17:00:00Z", "note": "exams"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "scheduled");
    let boost = r.body["id"].as_i64().unwrap();

    app.clock.set(t("2031-05-06T09:00:05Z"));
    let got = rx
        .wait_for("the boosted config", |r| {
            r.iter().any(|m| m.body["data"]["session_limit"] == 12)
        })
        .await;
    let up = got.last().unwrap();
    assert!(up.signature_ok);
    assert_eq!(up.body["data"]["config_version"], 2);
    let config = app.get("/v1/sites/erp/config", &app.admin).await.body;
    assert_eq!(config["session_limit"], 12);
    let list = app.get("/v1/sites/erp/boosts", &app.admin).await.body;
    assert_eq!(list["items"][0]["id"], boost);
    assert_eq!(list["items"][0]["status"], "active");
    assert_eq!(list["items"][0]["note"], "exams");
    // Six sessions fit where five did before.
    app.clock.set(t("2031-05-06T10:00:00Z"));
    for i in 2..=6 {
        let r = app.admit("erp", &token, &format!("s{i}")).await;
        assert_eq!(r.body["admitted"], true, "{}", r.text);
    }

    app.clock.set(t("2031-05-06T17:00:05Z"));
    let got = rx
        .wait_for("the config back at the plan's limit", |r| {
            r.iter().any(|m| m.body["data"]["config_version"] == 3)
        })
        .await;
    let down = got.last().unwrap();
    assert!(down.signature_ok);
    assert_eq!(down.body["data"]["session_limit"], 5);
    let list = app.get("/v1/sites/erp/boosts", &app.admin).await.body;
    assert_eq!(list["items"][0]["status"], "ended");
    let edges: Vec<(i64, i64)> = plan_history(&app, "erp")
        .await
        .iter()
        .map(|h| (h.1, h.2))
        .collect();
    assert_eq!(
        edges,
        [
            (5, t("2031-05-06T08:00:00Z").timestamp_millis()),
            (12, t("2031-05-06T09:00:00Z").timestamp_millis()),
            (5, t("2031-05-06T17:00:00Z").timestamp_millis()),
        ]
    );

    app.clock.set(t("2031-05-06T18:00:00Z"));
    let r = app
        .get(
            "/v1/sites/erp/usage/history?from=2031-05-06T08:00:00Z&to=2031-05-06T18:00:00Z&step=hour",
            &app.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let line: Vec<(String, i64)> = r.body["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let at = p["at"].as_str().unwrap();
            (at[11..13].to_owned(), p["session_limit"].as_i64().unwrap())
        })
        .collect();
    let want: Vec<(String, i64)> = (8..18)
        .map(|h| (format!("{h:02}"), if (9..17).contains(&h) { 12 } else { 5 }))
        .collect();
    assert_eq!(line, want);

    // The bill: the window is a segment of its own, at the boost's limit.
    app.clock.set(t("2031-06-01T00:00:00Z"));
    let r = app
        .get("/v1/billing/export?period=2031-05&format=json", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let lines: Vec<(i64, &str, &str, i64)> = r.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["session_limit"].as_i64().unwrap(),
                r["from"].as_str().unwrap(),
                r["to"].as_str().unwrap(),
                r["peak_active"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (5, "2031-05-01T00:00:00.000Z", "2031-05-06T09:00:00.000Z", 1),
            (
                12,
                "2031-05-06T09:00:00.000Z",
                "2031-05-06T17:00:00.000Z",
                6
            ),
            (5, "2031-05-06T17:00:00.000Z", "2031-06-01T00:00:00.000Z", 6),
        ]
    );
}

#[tokio::test]
async fn a_plan_change_scheduled_applies_at_its_instant() {
    let app = spawn().await;
    app.clock.set(t("2031-07-01T00:00:00Z"));
    setup(&app, json!({})).await;
    let r = app
        .post(
            "/v1/plans/big/scheduled-changes",
            &app.admin,
            json!({"at": "2031-07-11T00:00:00Z",
                   "changes": {"session_limit": 20, "monthly_price_cents": 6200}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["plan"], "big");
    assert_eq!(r.body["changes"]["session_limit"], 20);
    let id = r.body["id"].as_i64().unwrap();
    let bad = app
        .post(
            "/v1/plans/big/scheduled-changes",
            &app.admin,
            json!({"at": "2031-07-12T00:00:00Z", "changes": {"session_limit": -1}}),
        )
        .await;
    assert_invalid(&bad, "session_limit");
    let tenant = app.token("tenant", Some("acme"), None).await;
    let r = app
        .post(
            "/v1/plans/big/scheduled-changes",
            &tenant,
            json!({"at": "2031-07-12T00:00:00Z", "changes": {"session_limit": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    app.clock.set(t("2031-07-11T00:00:03Z"));
    wait_done(&app, "/v1/plans/big/scheduled-changes", id).await;
    let plan = app.get("/v1/plans/big", &app.admin).await.body;
    assert_eq!(plan["session_limit"], 20);
    let site = app.get("/v1/sites/erp", &app.admin).await.body;
    assert_eq!(site["config_version"], 2);
    assert_eq!(site["effective"]["session_limit"], 20);

    app.clock.set(t("2031-08-01T00:00:00Z"));
    let r = app
        .get("/v1/billing/export?period=2031-07&format=json", &app.admin)
        .await;
    let rows = r.body["rows"].as_array().unwrap();
    let lines: Vec<(i64, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["session_limit"].as_i64().unwrap(),
                r["from"].as_str().unwrap(),
                r["base_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    // 10 days at 3100 a month, 21 at 6200.
    assert_eq!(
        lines,
        [
            (10, "2031-07-01T00:00:00.000Z", 1000),
            (20, "2031-07-11T00:00:00.000Z", 4200)
        ]
    );
}

#[tokio::test]
async fn tenants_schedule_their_own_moves_and_bad_input_changes_nothing() {
    let app = spawn().await;
    app.clock.set(t("2031-09-01T08:00:00Z"));
    setup(&app, json!({})).await;
    app.create_tenant("other").await;
    app.create_site("theirs", "other", "big", json!({})).await;
    let tenant = app.token("tenant", Some("acme"), None).await;
    let site_before = app.get("/v1/sites/erp", &app.admin).await.body;

    // A tenant may schedule a move of its own site to a plan it sees, and cancel it.
    let r = app
        .post(
            CHANGES,
            &tenant,
            json!({"at": "2031-09-02T00:00:00Z", "plan": "small"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["scheduled_by"], "tenant");
    let own = r.body["id"].as_i64().unwrap();
    let r = app.delete(&format!("{CHANGES}/{own}"), &tenant).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let at = "2031-09-02T00:00:00Z";
    let cases = [
        (
            CHANGES,
            &app.admin,
            json!({"at": "2031-09-01T07:00:00Z", "plan": "small"}),
            "at",
        ),
        (
            CHANGES,
            &app.admin,
            json!({"at": "soon", "plan": "small"}),
            "at",
        ),
        (CHANGES, &tenant, json!({"at": at, "plan": "gold"}), "plan"),
        (CHANGES, &app.admin, json!({"at": at}), "plan"),
        (
            CHANGES,
            &app.admin,
            json!({"at": at, "overrides": {"session_limit": -3}}),
            "session_limit",
        ),
        (
            CHANGES,
            &tenant,
            json!({"at": at, "overrides": {"session_limit": 50}}),
            "session_limit",
        ),
        (
            CHANGES,
            &app.admin,
            json!({"at": at, "overrides": {"webhook_url": "http://x"}}),
            "overrides.webhook_url",
        ),
    ];
    for (path, token, body, field) in cases {
        let r = app.post(path, token, body.clone()).await;
        assert_invalid(&r, field);
    }

    let boosts = "/v1/sites/erp/boosts";
    let ok = app
        .post(
            boosts,
            &app.admin,
            json!({"session_limit": 20,
            "from": "2031-09-01T09:00:00Z", "until": "2031-09-01T17:00:00Z"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let bad_boosts = [
        (
            json!({"session_limit": 20, "from": "2031-09-01T07:00:00Z", "until": "2031-09-01T08:30:00Z"}),
            "from",
        ),
        (
            json!({"session_limit": 20, "from": "2031-09-02T17:00:00Z", "until": "2031-09-02T09:00:00Z"}),
            "until",
        ),
        (
            json!({"session_limit": 20, "from": "2031-09-01T16:00:00Z", "until": "2031-09-01T18:00:00Z"}),
            "from",
        ),
        (
            json!({"session_limit": 9, "from": "2031-09-03T09:00:00Z", "until": "2031-09-03T17:00:00Z"}),
            "session_limit",
        ),
    ];
    for (body, field) in bad_boosts {
        let r = app.post(boosts, &app.admin, body).await;
        assert_invalid(&r, field);
    }
    // Back to back is no overlap.
    let next = app
        .post(
            boosts,
            &app.admin,
            json!({"session_limit": 15,
            "from": "2031-09-01T17:00:00Z", "until": "2031-09-01T19:00:00Z"}),
        )
        .await;
    assert_eq!(next.status, StatusCode::CREATED, "{}", next.text);
    let r = app
        .delete(&format!("{boosts}/{}", next.body["id"]), &app.admin)
        .await;
    assert_eq!(r.body["status"], "cancelled", "{}", r.text);
    // Boosts are the provider's; another tenant's site is not found.
    let r = app
        .post(
            boosts,
            &tenant,
            json!({"session_limit": 20,
            "from": "2031-09-04T09:00:00Z", "until": "2031-09-04T17:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    for (method, path) in [
        ("POST", "/v1/sites/theirs/scheduled-changes"),
        ("GET", "/v1/sites/theirs/scheduled-changes"),
        ("POST", "/v1/sites/theirs/boosts"),
        ("GET", "/v1/sites/theirs/boosts"),
    ] {
        let body = (method == "POST").then(|| {
            json!({"at": at, "plan": "small",
            "session_limit": 20, "from": at, "until": "2031-09-03T00:00:00Z"})
        });
        let body = body.map(|b| {
            if path.ends_with("boosts") {
                json!({"session_limit": b["session_limit"], "from": b["from"], "until": b["until"]})
            } else {
                json!({"at": b["at"], "plan": b["plan"]})
            }
        });
        let r = app.call(method, path, Some(&tenant), body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
    }

    // Nothing changed: the site, and only the accepted rows are listed.
    let site_after = app.get("/v1/sites/erp", &app.admin).await.body;
    assert_eq!(site_after, site_before);
    let changes = app.get(CHANGES, &app.admin).await.body;
    let statuses: Vec<&Value> = changes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["status"])
        .collect();
    assert_eq!(statuses, [&json!("cancelled")]);
    let listed = app.get(boosts, &tenant).await.body;
    let ids: Vec<&Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["status"])
        .collect();
    assert_eq!(ids, [&json!("cancelled"), &json!("scheduled")]);
}

#[tokio::test]
async fn a_change_that_can_no_longer_apply_fails_and_changes_nothing() {
    let app = spawn().await;
    setup(&app, json!({})).await;
    let r = app
        .post(
            CHANGES,
            &app.admin,
            json!({"at": app.at(600), "plan": "small"}),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    // No site is on it yet, so the plan may go.
    let r = app.delete("/v1/plans/small", &app.admin).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    app.advance(700);
    eventually("the change to fail", || async {
        change_status(&app, CHANGES, id).await == "failed"
    })
    .await;
    let list = app.get(CHANGES, &app.admin).await.body;
    assert!(
        list["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("small"),
        "{list}"
    );
    let site = app.get("/v1/sites/erp", &app.admin).await.body;
    assert_eq!(site["plan"], "big");
    assert_eq!(site["config_version"], 1);
}

#[tokio::test]
async fn cancelling_an_active_boost_ends_it_at_once() {
    let app = spawn().await;
    let rx = Receiver::start().await;
    let site = setup(&app, json!({"webhook_url": rx.url})).await;
    rx.trust(site["webhook_secret"].as_str().unwrap());
    let r = app
        .post(
            "/v1/sites/erp/boosts",
            &app.admin,
            json!({"session_limit": 30,
            "from": app.at(0), "until": app.at(3600)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    app.advance(5);
    rx.wait_for("the boost's push", |r| {
        r.iter().any(|m| m.body["data"]["session_limit"] == 30)
    })
    .await;
    app.advance(60);
    let r = app
        .delete(&format!("/v1/sites/erp/boosts/{id}"), &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "cancelled");
    let got = rx
        .wait_for("the plan's limit again", |r| {
            r.last()
                .is_some_and(|m| m.body["data"]["session_limit"] == 10)
        })
        .await;
    assert!(got.iter().all(|m| m.signature_ok));
    let site = app.get("/v1/sites/erp", &app.admin).await.body;
    assert_eq!(site["effective"]["session_limit"], 10);
    assert_eq!(site["config_version"], 3);
    let again = app
        .delete(&format!("/v1/sites/erp/boosts/{id}"), &app.admin)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
}
