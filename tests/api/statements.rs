//! Every statement headcount runs on a per-site table (a table with a `site_id`
//! column) names `site_id` in its filter, so that distributing those tables by
//! `site_id` (Citus, see docs/scaling.md) routes each such statement to one shard
//! without rewriting it. The few fleet-wide statements, which Citus runs on every
//! shard, are listed below with the reason they may be.
//!
//! The SQL is captured in-process: a diesel default instrumentation, installed
//! before the app opens its pool, records the statements of the connections to this
//! test's database (and only those: other tests of the binary run beside it).

use std::sync::{Mutex, OnceLock};

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};
use headcount::db::{Backend, sqlite_path};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Options, TestApp, fresh_database, spawn_with};
use crate::receiver::Receiver;

/// Parts of the database URL whose connections are recorded.
static WATCHED: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The recorded statements, with the watched key of their connection.
static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// One connection's recorder: it learns its URL when the connection is made.
struct Recorder {
    key: Option<String>,
}

impl Instrumentation for Recorder {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartEstablishConnection { url, .. } => {
                let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
                self.key = watched.iter().find(|k| url.contains(k.as_str())).cloned();
            }
            InstrumentationEvent::StartQuery { query, .. } => {
                if let Some(key) = &self.key {
                    let sql = query.to_string();
                    SEEN.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((key.clone(), sql));
                }
            }
            _ => {}
        }
    }
}

fn recorder() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(Recorder { key: None }))
}

/// Starts recording the statements of connections to `database_url` from now on.
fn watch(database_url: &str) -> String {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| set_default_instrumentation(recorder).unwrap());
    let key = match Backend::of_url(database_url) {
        Some(Backend::Sqlite) => sqlite_path(database_url).to_owned(),
        _ => url::Url::parse(database_url).unwrap().path()[1..].to_owned(),
    };
    WATCHED.lock().unwrap().push(key.clone());
    key
}

fn recorded(key: &str) -> Vec<String> {
    SEEN.lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, sql)| sql.clone())
        .collect()
}

/// The tables with a `site_id` column, read from the schema diesel checks against
/// the migrations, but for the fleet-wide ones Citus copies to every node (the
/// register of slugs maps slugs to sites for the whole fleet).
fn per_site_tables() -> Vec<String> {
    let schema = std::fs::read_to_string("src/db/schema.rs").unwrap();
    let mut tables = Vec::new();
    for block in schema.split("diesel::table!").skip(1) {
        let name = block
            .trim_start_matches([' ', '{', '\n'])
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default();
        let body = block.split("joinable!").next().unwrap_or(block);
        if body.lines().any(|l| l.trim().starts_with("site_id ->"))
            && !headcount::db::citus::REFERENCE.contains(&name)
        {
            tables.push(name.to_owned());
        }
    }
    tables
}

/// Fleet-wide statements on per-site tables. Citus runs each on every shard
/// (in parallel, one statement per shard), which is what they are for.
const FLEET_WIDE: &[(&str, &str)] = &[
    // The sender's claim reads the fleet's due rows without a lock; the lease that
    // follows names their sites (no `FOR UPDATE` over several shards anywhere).
    ("outbox", "outbox.locked_until is null"),
    // `/metrics`: pending pushes by kind and age over the fleet.
    ("outbox", "group by outbox.kind"),
    // The sender sleeps until the fleet's earliest due push.
    (
        "outbox",
        "select min(outbox.next_attempt_at) from outbox where",
    ),
    // `/v1/deliveries/{id}` names a push by its id alone: the one read that finds
    // the push's site (every later statement of the request names it).
    ("outbox", "where ( outbox.id = "),
    // The sampler's pass compares every site's figures with its latest ones.
    (
        "usage_current",
        "usage_current.session_limit from usage_current",
    ),
    // The sampler's forecast: every site's daily peaks.
    ("usage_rollups", "order by usage_rollups.site_id"),
    // Retention: expired sessions ended and old ones deleted, in batches by id.
    ("sessions", "sessions.expires_at <="),
    ("sessions", "sessions.ended_at <"),
    ("sessions", "delete from sessions where"),
    ("usage_samples", "delete from usage_samples where"),
    ("usage_rollups", "delete from usage_rollups where"),
    ("denials", "delete from denials where"),
    // The runner of scheduled changes and boosts: what is due over the fleet.
    ("scheduled_changes", "scheduled_changes.at <="),
    ("site_boosts", "site_boosts.starts_at <="),
];

/// Single-site statements that do not name `site_id` yet. They work on Citus but
/// run on every shard. Listed so that the test guards everything else; the list is to
/// shrink, not grow (it is empty: every single-site statement names its site).
const SINGLE_SITE_TO_FIX: &[(&str, &str)] = &[];

/// Words of a statement: identifiers (with their `table.` prefix), placeholders and
/// operators; quotes dropped, lower case.
fn words(sql: &str) -> Vec<String> {
    let sql = sql
        .split(" -- binds:")
        .next()
        .unwrap_or(sql)
        .replace(['"', '`'], "")
        .to_lowercase();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut op = String::new();
    for ch in sql.chars() {
        let ident = ch.is_alphanumeric() || "_.$?".contains(ch);
        let oper = "<>=!".contains(ch);
        if !ident && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if !oper && !op.is_empty() {
            out.push(std::mem::take(&mut op));
        }
        if ident {
            cur.push(ch);
        } else if oper {
            op.push(ch);
        } else if !ch.is_whitespace() && ch != '"' && ch != '`' {
            out.push(ch.to_string());
        }
    }
    out.extend([cur, op].into_iter().filter(|w| !w.is_empty()));
    out
}

/// The tables a statement reads or writes.
fn tables_in(w: &[String]) -> Vec<String> {
    w.windows(2)
        .filter(|p| matches!(p[0].as_str(), "from" | "join" | "update" | "into"))
        .map(|p| p[1].rsplit('.').next().unwrap_or_default().to_owned())
        .collect()
}

fn is_site_id(w: &str) -> bool {
    w == "site_id" || w.ends_with(".site_id")
}

/// Whether `site_id` is compared in a filter (WHERE, JOIN … ON, also inside a
/// subquery) or is a column the statement inserts. A `site_id` in a select list,
/// GROUP BY or ORDER BY does not count.
fn filters_by_site_id(w: &[String]) -> bool {
    const CMP: &[&str] = &["=", "<>", "!=", "in", "is", "<", ">", "<=", ">="];
    let compared = w.iter().enumerate().any(|(i, x)| {
        is_site_id(x)
            && (w.get(i + 1).is_some_and(|n| CMP.contains(&n.as_str()))
                || i.checked_sub(1)
                    .and_then(|p| w.get(p))
                    .is_some_and(|p| CMP.contains(&p.as_str())))
    });
    let inserted = w.first().is_some_and(|f| f == "insert") && {
        // The column list: from the first "(" to its ")".
        let cols = w.iter().skip_while(|x| *x != "(").take_while(|x| *x != ")");
        cols.into_iter().any(|x| is_site_id(x))
    };
    compared || inserted
}

/// The statements on per-site tables that neither filter by `site_id` nor are
/// listed as fleet-wide.
fn unfiltered(statements: &[String], tables: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for sql in statements {
        let w = words(sql);
        let touched: Vec<String> = tables_in(&w)
            .into_iter()
            .filter(|t| tables.contains(t))
            .collect();
        if touched.is_empty() || filters_by_site_id(&w) {
            continue;
        }
        let flat = w.join(" ");
        let allowed = FLEET_WIDE
            .iter()
            .chain(SINGLE_SITE_TO_FIX)
            .any(|(t, pat)| touched.contains(&(*t).to_owned()) && flat.contains(pat));
        let text = sql.split(" -- binds:").next().unwrap_or(sql).to_owned();
        if !allowed && !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

/// Statements that lock rows (`FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`) of
/// distributed tables without naming exactly one site: Citus runs a row lock only on
/// one shard. The fleet-wide tables (reference tables on Citus) may be locked.
fn multi_site_locks(statements: &[String]) -> Vec<String> {
    let distributed: Vec<String> = headcount::db::citus::BY_SITE
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    let mut out = Vec::new();
    for sql in statements {
        let w = words(sql);
        let locks = w
            .windows(2)
            .any(|p| p[0] == "for" && matches!(p[1].as_str(), "update" | "no" | "share"));
        let on_distributed = tables_in(&w).iter().any(|t| distributed.contains(t));
        let one_site = w.windows(3).any(|p| {
            (is_site_id(&p[0]) || p[0] == "sites.id" || p[0] == "id")
                && p[1] == "="
                && p[2] != "any"
        });
        let text = sql.split(" -- binds:").next().unwrap_or(sql).to_owned();
        if locks && on_distributed && !one_site && !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

#[test]
fn the_check_catches_a_row_lock_over_several_sites() {
    let bad = [
        r#"SELECT "sites"."id" FROM "sites" WHERE ("sites"."id" = ANY($1)) FOR NO KEY UPDATE"#,
        r#"SELECT "outbox"."id" FROM "outbox" WHERE "outbox"."status" = $1 FOR UPDATE SKIP LOCKED"#,
    ]
    .map(str::to_owned);
    assert_eq!(multi_site_locks(&bad).len(), 2);
    let good = [
        r#"SELECT "sites"."id" FROM "sites" WHERE ("sites"."id" = $1) FOR NO KEY UPDATE"#,
        r#"SELECT "tenants"."id" FROM "tenants" WHERE ("tenants"."id" = $1) FOR NO KEY UPDATE"#,
    ]
    .map(str::to_owned);
    assert_eq!(multi_site_locks(&good), Vec::<String>::new());
}

#[test]
fn the_check_catches_a_statement_without_site_id() {
    let tables = vec!["sessions".to_owned(), "outbox".to_owned()];
    let bad = [
        r#"SELECT "sessions"."site_id", "sessions"."id" FROM "sessions" WHERE ("sessions"."id" = $1) -- binds: [1]"#,
        r#"UPDATE "sessions" SET "end_reason" = $1 WHERE ("sessions"."id" = $2)"#,
        "SELECT s.site_id, count(*) FROM sessions s GROUP BY s.site_id",
    ]
    .map(str::to_owned);
    assert_eq!(unfiltered(&bad, &tables).len(), 3);
    let good = [
        r#"SELECT "sessions"."id" FROM "sessions" WHERE (("sessions"."site_id" = $1) AND ("sessions"."session" = $2))"#,
        r#"SELECT x FROM sessions WHERE site_id IN (?, ?)"#,
        r#"SELECT x FROM sites JOIN sessions ON sessions.site_id = sites.id"#,
        r#"INSERT INTO "outbox" ("webhook_id", "site_id") VALUES ($1, $2)"#,
        r#"SELECT "plans"."id" FROM "plans" WHERE "plans"."code" = $1"#,
    ]
    .map(str::to_owned);
    assert_eq!(unfiltered(&good, &tables), Vec::<String>::new());
    assert!(per_site_tables().contains(&"sessions".to_owned()));
    assert!(!per_site_tables().contains(&"plans".to_owned()));
}

#[tokio::test]
async fn statements_on_per_site_tables_filter_by_site_id() {
    let (url, _data, _guard) = fresh_database().await;
    let key = watch(&url);
    let app = spawn_with(Options {
        database_url: Some(url),
        retry_schedule: "0s,1s",
        ..Default::default()
    })
    .await;
    // Migrations and start-up reads are not the workload.
    let before = recorded(&key).len();
    control_workload(&app).await;
    session_workload(&app).await;
    read_workload(&app).await;
    jobs_workload(&app).await;
    let statements = recorded(&key).split_off(before);
    let tables = per_site_tables();
    // The capture worked: every kind of per-site table was reached.
    for t in ["sessions", "denials", "outbox", "usage_samples"] {
        assert!(
            statements
                .iter()
                .any(|s| tables_in(&words(s)).contains(&t.to_owned())),
            "no statement on {t} was recorded ({} statements)",
            statements.len()
        );
    }
    // One PostgreSQL may lock a batch's sites in one statement; Citus may not.
    let locking = if crate::helpers::citus() {
        multi_site_locks(&statements)
    } else {
        Vec::new()
    };
    assert!(
        locking.is_empty(),
        "row locks that may span several sites (Citus refuses them):\n{}",
        locking.join("\n")
    );
    let bad = unfiltered(&statements, &tables);
    assert!(
        bad.is_empty(),
        "{} statements on per-site tables ({}) do not filter by site_id:\n{}",
        bad.len(),
        tables.join(", "),
        bad.join("\n")
    );
}

/// Plans, tenants, sites, tokens, config and pushes.
async fn control_workload(app: &TestApp) {
    let rx = Receiver::start().await;
    app.create_plan(
        "p",
        json!({"session_limit": 3, "over_limit": "evict_dangling"}),
    )
    .await;
    app.create_plan("q", json!({"session_limit": 2, "per_user_limit": 1}))
        .await;
    let t = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "t", "name": "T", "notify_url": rx.url}),
        )
        .await;
    rx.trust(t.body["notify_secret"].as_str().unwrap());
    let r = app
        .create_site("s", "t", "p", json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    app.create_site("quiet", "t", "q", json!({})).await;
    app.create_site("gone", "t", "q", json!({})).await;
    let tenant = app.token("tenant", Some("t"), None).await;
    let site = app.token("site", None, Some("s")).await;
    let r = app
        .patch("/v1/sites/s", &tenant, json!({"session_limit": 2}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    app.patch("/v1/plans/p", &app.admin, json!({"session_limit": 4}))
        .await;
    app.patch("/v1/plans/q", &app.admin, json!({"limit_message": "full"}))
        .await;
    let r = app
        .post("/v1/sites/s/webhook-secret", &app.admin, json!({}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    let cfg = app.get("/v1/sites/s/config", &site).await;
    assert_eq!(cfg.status, StatusCode::OK, "{}", cfg.text);
    let minted = app
        .post(
            "/v1/tokens",
            &app.admin,
            json!({"role": "tenant", "tenant": "t"}),
        )
        .await;
    let jti = minted.body["jti"].as_str().unwrap();
    app.delete(&format!("/v1/tokens/{jti}"), &app.admin).await;
    let r = app
        .client
        .post(format!("{}/v1/tokens", app.url))
        .bearer_auth(&app.admin)
        .header("Idempotency-Key", "k1")
        .json(&json!({"role": "site", "site": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    rx.wait_for("the site's pushes", |m| {
        m.iter().any(|x| x.body["data"]["session_limit"] == 2)
    })
    .await;
    let r = app.delete("/v1/sites/gone", &app.admin).await;
    assert!(r.status.is_success(), "{}", r.text);
}

/// Events, snapshots, admissions at and over the limit, kills.
async fn session_workload(app: &TestApp) {
    let site = app.token("site", None, Some("s")).await;
    let quiet = app.token("site", None, Some("quiet")).await;
    let r = app
        .events(
            "s",
            &site,
            json!([
                {"type": "session.started", "session": "a", "at": app.at(-60), "user": "ann"},
                {"type": "session.activity", "session": "a", "at": app.at(-30)},
                {"type": "session.started", "session": "b", "at": app.at(-7200), "user": "bob"},
                {"type": "session.ended", "session": "c", "at": app.at(-10), "reason": "logout"},
                {"type": "session.refused", "at": app.at(-5), "user": "cy"},
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let snapshot = json!({"sessions": [
        {"session": "a", "started_at": app.at(-60), "last_activity_at": app.at(-20), "user": "ann"},
        {"session": "d", "started_at": app.at(-90), "last_activity_at": app.at(-80)},
    ]});
    let r = app.put("/v1/sites/s/sessions", &site, snapshot).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for i in 0..4 {
        app.admit("s", &site, &format!("n{i}")).await;
    }
    let r = app
        .post(
            "/v1/sites/quiet/admissions",
            &quiet,
            json!({"session": "q1", "user": "u"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .post(
            "/v1/sites/quiet/admissions",
            &quiet,
            json!({"session": "q2", "user": "u", "replace": ["q1"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    app.admit("quiet", &quiet, "q3").await;
    app.admit("quiet", &quiet, "q4").await;
    let r = app.delete("/v1/sites/s/sessions/d", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .post(
            "/v1/sites/s/sessions/kill",
            &app.admin,
            json!({"state": "active", "user": "ann"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    app.advance(90_000);
    let r = app
        .post(
            "/v1/sites/s/sessions/kill",
            &app.admin,
            json!({"state": "dangling"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Everything a maintainer or the provider reads, and a retried delivery.
async fn read_workload(app: &TestApp) {
    let period = app.now().format("%Y-%m").to_string();
    let paths = [
        "/v1/sites/s/sessions?state=all".to_owned(),
        "/v1/sites/s/sessions?user=ann&state=ended".to_owned(),
        format!(
            "/v1/sites/s/sessions?at={}",
            (app.now() - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ")
        ),
        "/v1/sites/s/users".to_owned(),
        "/v1/sites/s/usage".to_owned(),
        "/v1/tenants/t/usage".to_owned(),
        "/v1/usage".to_owned(),
        "/v1/sites/s/usage/history?step=minute".to_owned(),
        "/v1/sites/s/usage/history?step=day".to_owned(),
        "/v1/sites/s/denials".to_owned(),
        format!("/v1/sites/s/advice?period={period}"),
        format!("/v1/billing/export?period={period}&format=json"),
        format!("/v1/billing/export?period={period}&format=csv&tenant=t"),
        "/v1/sites/s/deliveries".to_owned(),
        "/v1/sites/quiet/deliveries".to_owned(),
        "/v1/sites".to_owned(),
        "/v1/tenants/t".to_owned(),
        "/metrics".to_owned(),
        "/readyz".to_owned(),
    ];
    for p in &paths {
        let r = app.get(p, &app.admin).await;
        assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.text);
    }
    // The quiet site has no webhook: its pushes stay pending; retry one by hand.
    let d = app.get("/v1/sites/quiet/deliveries", &app.admin).await;
    let id = d.body["items"][0]["id"].as_i64().unwrap();
    let r = app
        .post(&format!("/v1/deliveries/{id}/retry"), &app.admin, json!({}))
        .await;
    assert!(
        r.status.is_success() || r.status == StatusCode::CONFLICT,
        "{}",
        r.text
    );
}

/// The sampler and retention, as their schedules would run them.
async fn jobs_workload(app: &TestApp) {
    headcount::jobs::sampler::sample(&app.state).await.unwrap();
    schedule_workload(app).await;
    app.advance(120);
    headcount::jobs::sampler::sample(&app.state).await.unwrap();
    headcount::jobs::schedule::tick(&app.state).await.unwrap();
    app.advance(400 * 86_400);
    headcount::jobs::retention::sweep(&app.state).await.unwrap();
    let r = app.delete("/v1/sites/quiet", &app.admin).await;
    assert!(r.status.is_success(), "{}", r.text);
}

/// A scheduled change and a boost, each listed, one of each cancelled; the runner
/// applies the others once the clock has moved.
async fn schedule_workload(app: &TestApp) {
    let changes = "/v1/sites/s/scheduled-changes";
    let boosts = "/v1/sites/s/boosts";
    for _ in 0..2 {
        let body = json!({"at": app.at(60), "overrides": {"limit_message": "later"}});
        let r = app.post(changes, &app.admin, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = app.delete(&format!("{changes}/1"), &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (from, until) in [(0, 90), (100, 110)] {
        let body = json!({"session_limit": 9, "from": app.at(from), "until": app.at(until)});
        let r = app.post(boosts, &app.admin, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = app.delete(&format!("{boosts}/2"), &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for path in [changes, boosts] {
        assert_eq!(app.get(path, &app.admin).await.status, StatusCode::OK);
    }
}
