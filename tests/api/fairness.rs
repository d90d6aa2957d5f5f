//! No tenant slows another: one tenant's expensive reads (usage history and charts,
//! advice, billing export) are limited to `HEADCOUNT_EXPENSIVE_READS_PER_TENANT` at a
//! time, those over it answered at once with a 429 naming the limit, while other
//! tenants' admissions and reads go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use diesel::RunQueryDsl as _;
use futures_util::future::join_all;
use headcount::auth::Caller;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, is_problem, spawn};

fn set(app: &TestApp, s: &str) {
    app.clock
        .set(chrono::DateTime::parse_from_rfc3339(s).unwrap().into());
}

/// A year of sessions on `site`: every 30 days a batch of 500 sessions spread over
/// the days before, each lasting one to four hours, so that an hourly history of
/// 10,000 points has real work in it.
async fn a_year_of_sessions(app: &TestApp, site: &str, token: &str) {
    for round in 0..12 {
        let events: Vec<Value> = (0..500)
            .flat_map(|i| {
                let started = -(i64::from(i) * 5_000 + 3_600 * 5);
                let ended = started + 3_600 * (1 + i64::from(i % 4));
                let session = format!("r{round}-{i}");
                [
                    json!({"type": "session.started", "session": session, "at": app.at(started),
                           "user": format!("u{}", i % 40)}),
                    json!({"type": "session.ended", "session": session, "at": app.at(ended),
                           "reason": "logout"}),
                ]
            })
            .collect();
        let r = app.events(site, token, json!(events)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["accepted"], 1000, "{}", r.text);
        app.advance(30 * 86_400);
    }
}

/// The expensive reads a flood is made of: hourly history as JSON and as a chart,
/// 9,990 points each.
fn heavy_paths(app: &TestApp, site: &str) -> [String; 2] {
    let from = (app.now() - chrono::Duration::hours(9_990)).to_rfc3339();
    let from = url::form_urlencoded::byte_serialize(from.as_bytes()).collect::<String>();
    [
        format!("/v1/sites/{site}/usage/history?step=hour&from={from}"),
        format!("/v1/sites/{site}/usage/chart.svg?step=hour&from={from}"),
    ]
}

fn assert_busy(r: &Reply) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(is_problem(r), "{}", r.text);
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1"),
        "{:?}",
        r.headers
    );
    assert!(
        r.body["type"]
            .as_str()
            .unwrap()
            .ends_with("/too-many-concurrent-reads"),
        "{}",
        r.text
    );
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("HEADCOUNT_EXPENSIVE_READS_PER_TENANT"),
        "{detail}"
    );
}

/// A tenant floods hourly history and charts of its busy site; the flood gets some
/// 429s, the rest is answered, and another tenant's admissions, made meanwhile, are
/// all admitted.
#[tokio::test]
async fn a_tenants_flood_of_expensive_reads_is_limited_and_others_go_on() {
    let app = spawn().await;
    set(&app, "2031-01-01T00:00:00Z");
    let heavy_site = app
        .site_with("heavy", json!({"session_limit": 1_000_000}))
        .await;
    let calm_site = app
        .site_with("calm", json!({"session_limit": 1_000_000}))
        .await;
    a_year_of_sessions(&app, "heavy", &heavy_site).await;
    let heavy = app.token("tenant", Some("heavy-tenant"), None).await;
    let calm = app.token("tenant", Some("calm-tenant"), None).await;
    let paths = heavy_paths(&app, "heavy");

    let flooded = Arc::new(AtomicBool::new(false));
    let flood = {
        let flooded = flooded.clone();
        let calls = (0..24).map(|i| app.get(&paths[i % 2], &heavy));
        async move {
            let replies = join_all(calls).await;
            flooded.store(true, Ordering::Relaxed);
            replies
        }
    };
    // The other tenant admits sessions, one after another, until the flood is over,
    // and reads its own site's history once meanwhile.
    let others = async {
        let mut waits = Vec::new();
        let mut own_history = None;
        while !flooded.load(Ordering::Relaxed) || waits.len() < 10 {
            let t = Instant::now();
            let r = app
                .admit("calm", &calm_site, &format!("c{}", waits.len()))
                .await;
            waits.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(r.body["admitted"], true, "{}", r.text);
            if own_history.is_none() {
                own_history = Some(app.get("/v1/sites/calm/usage/history", &calm).await);
            }
        }
        (waits, own_history.unwrap())
    };
    let (replies, (mut waits, own_history)) = tokio::join!(flood, others);

    let busy: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    for r in &replies {
        if r.status != StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        // The answered histories have a year of busy hours in them.
        if let Some(points) = r.body["points"].as_array() {
            assert!(points.len() > 5_000, "{} points", points.len());
        }
    }
    busy.iter().for_each(|r| assert_busy(r));
    assert!(
        !busy.is_empty(),
        "24 concurrent expensive reads of one tenant, none refused"
    );
    assert!(busy.len() < replies.len(), "every expensive read refused");
    assert_eq!(own_history.status, StatusCode::OK, "{}", own_history.text);
    waits.sort_by(f64::total_cmp);
    eprintln!(
        "flood: {} of {} refused; the other tenant's {} admissions: median {:.1} ms, max {:.1} ms",
        busy.len(),
        replies.len(),
        waits.len(),
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
    // Every place is given back, and no idle tenant stays in the limiter.
    assert_eq!(app.state.expensive_reads_busy(), 0);
}

/// With a tenant's every place taken, its next expensive read of each kind is a 429
/// at once; another tenant's and the provider's are not held up; a place given back
/// is usable again.
#[tokio::test]
async fn the_limit_counts_per_tenant_and_the_provider_apart() {
    let app = spawn().await;
    set(&app, "2031-01-01T00:00:00Z");
    app.site_with("one", json!({"session_limit": 5})).await;
    app.site_with("two", json!({"session_limit": 5})).await;
    let one = app.token("tenant", Some("one-tenant"), None).await;
    let two = app.token("tenant", Some("two-tenant"), None).await;
    let reads = [
        "/v1/sites/{site}/usage/history?step=minute",
        "/v1/sites/{site}/usage/chart.svg",
        "/v1/sites/{site}/advice?period=2030-12",
        "/v1/billing/export?period=2030-12",
        "/v1/sites/{site}/sessions?at=2026-01-01T00:00:00Z",
    ];
    let limit = app.state.config.expensive_reads_per_tenant;
    let caller = Caller::Tenant {
        tenant: "one-tenant".to_owned(),
        jti: "held".to_owned(),
        person: None,
    };
    let held: Vec<_> = (0..limit)
        .map(|_| app.state.expensive_read(&caller).unwrap())
        .collect();
    for read in reads {
        assert_busy(&app.get(&read.replace("{site}", "one"), &one).await);
        let r = app.get(&read.replace("{site}", "two"), &two).await;
        assert_eq!(r.status, StatusCode::OK, "{read}: {}", r.text);
        let r = app.get(&read.replace("{site}", "one"), &app.admin).await;
        assert_eq!(r.status, StatusCode::OK, "{read}: {}", r.text);
    }
    drop(held);
    for read in reads {
        let r = app.get(&read.replace("{site}", "one"), &one).await;
        assert_eq!(r.status, StatusCode::OK, "{read}: {}", r.text);
    }
    assert_eq!(app.state.expensive_reads_busy(), 0);
}

/// An expensive read on PostgreSQL runs under a statement timeout
/// (`HEADCOUNT_READ_TIMEOUT_SECONDS`, 30 s by default), and a statement it cancels is
/// a 503 (Retry-After), not a 500: the read gives its connection back instead of
/// holding it for minutes.
#[tokio::test]
async fn an_expensive_read_past_its_statement_timeout_is_a_503() {
    if crate::helpers::pg_url().is_none() {
        return;
    }
    let app = spawn().await;
    let (timeout, cancelled) = app
        .state
        .db
        .run(|c| {
            let shown = headcount::db::read_snapshot(c, |c| {
                headcount::per_backend!(c, |c| diesel::sql_query("SHOW statement_timeout")
                    .get_result::<Shown>(c))
            })?;
            // The same read made slower than a timeout of its own.
            let slow = headcount::db::read_snapshot(c, |c| {
                headcount::per_backend!(c, |c| {
                    diesel::sql_query("SET LOCAL statement_timeout = 50").execute(c)?;
                    diesel::sql_query("SELECT pg_sleep(2)").execute(c)
                })
                .map_err(headcount::db::Error::from)
            });
            Ok::<_, headcount::db::Error>((shown.statement_timeout, slow))
        })
        .await
        .unwrap();
    assert_eq!(timeout, "30s");
    let e = headcount::error::Error::from(cancelled.unwrap_err());
    let r = actix_web::ResponseError::error_response(&e);
    assert_eq!(r.status(), actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        e.to_string().contains("HEADCOUNT_READ_TIMEOUT_SECONDS"),
        "{e}"
    );
}

#[derive(diesel::QueryableByName)]
struct Shown {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement_timeout: String,
}
