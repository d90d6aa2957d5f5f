//! A month of a fleet, lived with the injected clock (`bench/fleet` runs it; ignored in
//! the suite). Users of a Lino site sign in in the morning, work with a pause at noon,
//! and leave in the late afternoon, half of them without signing out (their session
//! goes dangling and is picked up the next morning until it expires); a third of the
//! sites are idle all month. Each simulated minute the minute's events go over HTTP, a
//! batch per site, as the agent sends them; then the clock moves on a minute and the
//! sampler takes its pass, as the one pass a minute of the fleet would. Retention runs
//! every simulated hour.
//!
//! Afterwards it measures the usage storage (tables and their indexes) by site class,
//! builds what today's design (a row per site and covered minute, hour and day
//! roll-ups) would hold for the same month from the same figures, and measures that
//! the same way; then it moves the clock past the retention window and times
//! admissions on a busy site while retention removes the month.
//!
//! `BENCH_MONTH_SITES` (default 300) and `BENCH_MONTH_DAYS` (default 30) size it;
//! `BENCH_RETENTION_SESSIONS` (default 1,000,000) sessions of the month are added
//! before retention, the month of a larger fleet.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use diesel::RunQueryDsl;
use futures_util::{StreamExt as _, stream};
use serde_json::{Value, json};

use crate::helpers::{Rng, Scalar, TestApp, is_pg, spawn, sql_exec, sql_scalar};

const M: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// Django's default session age: a session nobody ends lives two weeks.
const TTL_SECONDS: i64 = 14 * 86_400;
const IDLE_SECONDS: i64 = 1800;

fn setting(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A user's browser: the session it holds and when that session expires.
#[derive(Default)]
struct Browser {
    session: Option<(String, i64)>,
}

/// One event due at a minute: (site index, event body).
type Due = BTreeMap<i64, Vec<(usize, Value)>>;

fn event(kind: &str, session: &str, at: i64) -> Value {
    json!({
        "type": kind,
        "session": session,
        "at": rfc(at),
        "user": session.rsplit_once('-').map_or(session, |p| p.0),
    })
}

fn rfc(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The events of one day of one busy site's users, by minute.
fn plan_day(
    r: &mut Rng, site: usize, day_start: i64, day: i64, users: &mut [Browser], due: &mut Due,
) {
    for (u, browser) in users.iter_mut().enumerate() {
        if r.below(10) == 0 {
            continue; // away today
        }
        let comes = day_start + (450 + r.below(150)) * M;
        let leaves = day_start + (960 + r.below(150)) * M;
        let lunch = (r.below(2) == 0).then(|| day_start + (720 + r.below(30)) * M);
        let mut at = comes + r.below(60) * 1000;
        let session = match &browser.session {
            Some((s, expires)) if *expires > at => {
                due.entry(at / M * M)
                    .or_default()
                    .push((site, event("session.activity", s, at)));
                s.clone()
            }
            _ => {
                let s = format!("s{site}u{u}-{day}");
                due.entry(at / M * M)
                    .or_default()
                    .push((site, event("session.started", &s, at)));
                browser.session = Some((s.clone(), at + TTL_SECONDS * 1000));
                s
            }
        };
        loop {
            at += (10 + r.below(15)) * M;
            if let Some(l) = lunch
                && at >= l
                && at < l + HOUR
            {
                at = l + HOUR + r.below(600) * 1000;
            }
            if at >= leaves {
                break;
            }
            due.entry(at / M * M)
                .or_default()
                .push((site, event("session.activity", &session, at)));
        }
        if r.below(2) == 0 {
            due.entry(leaves / M * M)
                .or_default()
                .push((site, event("session.ended", &session, leaves)));
            browser.session = None;
        }
    }
}

/// Bytes of a table and its indexes.
async fn bytes(app: &TestApp, table: &str) -> i64 {
    let sql = if is_pg(app) {
        format!("SELECT pg_total_relation_size('{table}') AS n")
    } else {
        format!(
            "SELECT CAST(coalesce(sum(pgsize), 0) AS BIGINT) AS n FROM dbstat WHERE name IN \
             (SELECT name FROM sqlite_schema WHERE tbl_name = '{table}')"
        )
    };
    sql_scalar(app, sql).await
}

async fn database_bytes(app: &TestApp) -> i64 {
    let sql = if is_pg(app) {
        "SELECT pg_database_size(current_database()) AS n"
    } else {
        "SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()"
    };
    sql_scalar(app, sql.to_owned()).await
}

/// Rows of `table` whose site is idle (`id % 3 = 0` of the fleet's ids as created).
async fn rows(app: &TestApp, table: &str, idle: bool, idle_ids: &str) -> i64 {
    let op = if idle { "IN" } else { "NOT IN" };
    sql_scalar(
        app,
        format!("SELECT count(*) AS n FROM {table} WHERE site_id {op} ({idle_ids})"),
    )
    .await
}

/// Bytes per site and day of one class: each per-site table's bytes shared by rows,
/// the fleet-wide tables (coverage, pass claims) shared evenly by every site.
struct Storage {
    idle: f64,
    busy: f64,
    fleet: i64,
}

async fn storage(
    app: &TestApp, per_site: &[&str], fleet_wide: &[&str], idle_ids: &str, sites: i64,
    idle_sites: i64, days: i64,
) -> Storage {
    let (mut idle, mut busy, mut fleet) = (0.0, 0.0, 0);
    for t in per_site {
        let b = bytes(app, t).await;
        let (i, k) = (
            rows(app, t, true, idle_ids).await,
            rows(app, t, false, idle_ids).await,
        );
        fleet += b;
        if i + k > 0 {
            idle += b as f64 * i as f64 / (i + k) as f64;
            busy += b as f64 * k as f64 / (i + k) as f64;
        }
    }
    for t in fleet_wide {
        let b = bytes(app, t).await;
        fleet += b;
        idle += b as f64 * idle_sites as f64 / sites as f64;
        busy += b as f64 * (sites - idle_sites) as f64 / sites as f64;
    }
    Storage {
        idle: idle / (idle_sites * days) as f64,
        busy: busy / ((sites - idle_sites) * days) as f64,
        fleet,
    }
}

/// Today's design for the same month: every sampled row repeated for each covered
/// minute until the site's next row, the hour roll-ups and the day roll-ups of those
/// rows, in tables shaped as the 0.1.0 schema shaped them.
async fn build_todays_design(app: &TestApp, end: i64) {
    let pg = is_pg(app);
    let extra_index = if pg {
        "CREATE INDEX bench_old_samples_active ON bench_old_samples (site_id, minute) \
         INCLUDE (active)"
    } else {
        "CREATE INDEX bench_old_samples_active ON bench_old_samples (site_id, minute, active)"
    };
    for sql in [
        "CREATE TABLE bench_old_samples (site_id BIGINT NOT NULL, minute BIGINT NOT NULL, \
         active BIGINT NOT NULL, live BIGINT NOT NULL, dangling BIGINT NOT NULL, \
         denied BIGINT NOT NULL, session_limit BIGINT NOT NULL, \
         PRIMARY KEY (site_id, minute))",
        "CREATE INDEX bench_old_samples_minute ON bench_old_samples (minute)",
        extra_index,
        "CREATE TABLE bench_old_rollups (site_id BIGINT NOT NULL, bucket_ms BIGINT NOT NULL, \
         at BIGINT NOT NULL, max_active BIGINT NOT NULL, max_live BIGINT NOT NULL, \
         max_dangling BIGINT NOT NULL, denied BIGINT NOT NULL, session_limit BIGINT NOT NULL, \
         PRIMARY KEY (site_id, bucket_ms, at))",
        "CREATE INDEX bench_old_rollups_at ON bench_old_rollups (at)",
    ] {
        sql_exec(app, sql.to_owned()).await;
    }
    sql_exec(
        app,
        format!(
            "INSERT INTO bench_old_samples WITH RECURSIVE runs AS ( \
               SELECT site_id, minute, active, live, dangling, denied, session_limit, \
                 COALESCE(LEAD(minute) OVER (PARTITION BY site_id ORDER BY minute), {end}) \
                   AS until \
               FROM usage_samples), \
             g AS (SELECT * FROM runs UNION ALL \
               SELECT site_id, minute + {M}, active, live, dangling, 0, session_limit, until \
               FROM g WHERE minute + {M} < until) \
             SELECT site_id, minute, active, live, dangling, denied, session_limit FROM g"
        ),
    )
    .await;
    for (bucket, from) in [(HOUR, "bench_old_samples"), (DAY, "bench_old_samples")] {
        sql_exec(
            app,
            format!(
                "INSERT INTO bench_old_rollups SELECT site_id, {bucket}, \
                 (minute / {bucket}) * {bucket}, MAX(active), MAX(live), MAX(dangling), \
                 CAST(SUM(denied) AS BIGINT), MAX(session_limit) FROM {from} \
                 GROUP BY site_id, (minute / {bucket}) * {bucket}"
            ),
        )
        .await;
    }
    if pg {
        sql_exec(app, "ANALYZE".to_owned()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark of a month of a fleet: bench/fleet runs it"]
async fn a_month_of_a_fleet() {
    let sites = setting("BENCH_MONTH_SITES", 300) as usize;
    let days = setting("BENCH_MONTH_DAYS", 30);
    let app = spawn().await;
    // The passes are this test's, one per simulated minute; SQLite's checkpoints go on
    // in real time, as in a running process.
    app.stop_jobs();
    let (_checkpoints, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(headcount::jobs::checkpoint::run(app.state.db.clone(), rx));
    let now = app.now().timestamp_millis();
    let start = now - now.rem_euclid(DAY) - days * DAY;
    app.clock
        .set(DateTime::<Utc>::from_timestamp_millis(start).unwrap());
    app.create_plan(
        "lino",
        json!({"session_limit": 20, "idle_timeout_seconds": IDLE_SECONDS,
               "session_ttl_seconds": TTL_SECONDS}),
    )
    .await;
    app.create_tenant("t").await;
    let mut tokens = Vec::with_capacity(sites);
    for i in 0..sites {
        let slug = format!("site-{i}");
        app.create_site(&slug, "t", "lino", json!({})).await;
        tokens.push(app.token("site", None, Some(&slug)).await);
    }
    let idle = |i: usize| i.is_multiple_of(3);
    let idle_ids: Vec<String> = {
        let slugs: Vec<String> = (0..sites)
            .filter(|&i| idle(i))
            .map(|i| format!("'site-{i}'"))
            .collect();
        let sql = format!(
            "SELECT id AS n FROM sites WHERE slug IN ({})",
            slugs.join(", ")
        );
        app.state
            .db
            .run(move |c| {
                headcount::per_backend!(c, |c| Ok::<_, headcount::db::Error>(
                    diesel::sql_query(&sql).load::<Scalar>(c).unwrap()
                ))
            })
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.n.to_string())
            .collect()
    };
    let idle_ids = idle_ids.join(", ");
    let idle_sites = (0..sites).filter(|&i| idle(i)).count() as i64;

    let mut r = Rng(42);
    let mut browsers: Vec<Vec<Browser>> = (0..sites)
        .map(|_| (0..2 + r.below(11)).map(|_| Browser::default()).collect())
        .collect();
    let client = &app.client;
    let (mut events, mut posts, mut pass_ms) = (0usize, 0usize, Vec::new());
    let began = Instant::now();
    for day in 0..days {
        let day_start = start + day * DAY;
        let mut due = Due::new();
        for (i, users) in browsers.iter_mut().enumerate() {
            if !idle(i) {
                plan_day(&mut r, i, day_start, day, users, &mut due);
            }
        }
        for minute in (day_start..day_start + DAY).step_by(M as usize) {
            app.clock
                .set(DateTime::<Utc>::from_timestamp_millis(minute + 59_000).unwrap());
            if let Some(list) = due.remove(&minute) {
                let mut by_site: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
                for (site, e) in list {
                    by_site.entry(site).or_default().push(e);
                }
                events += by_site.values().map(Vec::len).sum::<usize>();
                posts += by_site.len();
                let url = &app.url;
                let tokens = &tokens;
                stream::iter(by_site)
                    .map(|(site, batch)| async move {
                        let r = client
                            .post(format!("{url}/v1/sites/site-{site}/events"))
                            .bearer_auth(&tokens[site])
                            .json(&json!({"events": batch}))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        let body: Value = r.json().await.unwrap();
                        assert_eq!(body["rejected"], json!([]), "{body}");
                    })
                    .buffer_unordered(8)
                    .collect::<Vec<()>>()
                    .await;
            }
            app.clock
                .set(DateTime::<Utc>::from_timestamp_millis(minute + M + 1_000).unwrap());
            let t = Instant::now();
            headcount::jobs::sampler::sample(&app.state).await.unwrap();
            pass_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if (minute - start) % HOUR == 0 {
                headcount::jobs::retention::sweep(&app.state).await.unwrap();
            }
        }
        eprintln!(
            "day {}/{days}: {events} events in {posts} requests so far, {:.0} s",
            day + 1,
            began.elapsed().as_secs_f64()
        );
    }
    let end = start + days * DAY + M;
    let lived = began.elapsed().as_secs_f64();
    let database = database_bytes(&app).await;
    let sample_rows = sql_scalar(&app, "SELECT count(*) AS n FROM usage_samples".into()).await;
    let busy_rows = rows(&app, "usage_samples", false, &idle_ids).await;
    let idle_rows = rows(&app, "usage_samples", true, &idle_ids).await;
    let new = storage(
        &app,
        &["usage_samples", "usage_rollups", "usage_current"],
        &["sampler_coverage", "sampler_passes"],
        &idle_ids,
        sites as i64,
        idle_sites,
        days,
    )
    .await;
    let t = Instant::now();
    build_todays_design(&app, end).await;
    let built = t.elapsed().as_secs_f64();
    let old_rows = sql_scalar(&app, "SELECT count(*) AS n FROM bench_old_samples".into()).await;
    let old = storage(
        &app,
        &["bench_old_samples", "bench_old_rollups"],
        &[],
        &idle_ids,
        sites as i64,
        idle_sites,
        days,
    )
    .await;
    sql_exec(&app, "DROP TABLE bench_old_samples".into()).await;
    sql_exec(&app, "DROP TABLE bench_old_rollups".into()).await;

    pass_ms.sort_by(f64::total_cmp);
    let backend = if is_pg(&app) { "postgres" } else { "sqlite" };
    let busy_sites = sites as i64 - idle_sites;
    println!(
        "month  {backend:<8} {sites} sites ({idle_sites} idle), {days} days: {events} events \
         in {posts} requests, {} passes (median {:.1} ms, max {:.1} ms), lived in {lived:.0} s",
        pass_ms.len(),
        pass_ms[pass_ms.len() / 2],
        pass_ms[pass_ms.len() - 1],
    );
    println!(
        "month  {backend:<8} usage rows by change: {sample_rows} ({:.1} a busy site a day, {:.2} \
         an idle site a day); today's design: {old_rows} (built in {built:.0} s)",
        busy_rows as f64 / (busy_sites * days) as f64,
        idle_rows as f64 / (idle_sites * days) as f64,
    );
    println!(
        "month  {backend:<8} {:<34} {:>14} {:>16} {:>8}",
        "usage storage (tables + indexes)", "by change", "today's design", "ratio"
    );
    for (what, a, b) in [
        ("idle site, bytes a day", new.idle, old.idle),
        ("busy site, bytes a day", new.busy, old.busy),
        (
            "fleet after the month, bytes",
            new.fleet as f64,
            old.fleet as f64,
        ),
    ] {
        println!(
            "month  {backend:<8} {what:<34} {a:>14.0} {b:>16.0} {:>8.4}",
            a / b
        );
    }
    println!(
        "month  {backend:<8} database after the month: {:.1} MiB",
        database as f64 / 1048576.0
    );

    // Retention: the clock past the window, a month of rows removed while a busy site
    // admits sessions one after another; the longest admission is what a site waits.
    let retention_days = app.state.config.session_retention_days;
    app.clock
        .set(DateTime::<Utc>::from_timestamp_millis(end + (retention_days + 1) * DAY).unwrap());
    // A month of a larger fleet's sessions besides the month lived: ended ones, and a
    // tenth never ended (retention ends them at expiry, then removes them).
    let extra = setting("BENCH_RETENTION_SESSIONS", 1_000_000);
    let per_site = extra / busy_sites;
    let t = Instant::now();
    sql_exec(
        &app,
        format!(
            "INSERT INTO sessions (site_id, session, user_ref, started_at, last_activity_at, \
               expires_at, ended_at, end_reason, overage, exempt) \
             WITH RECURSIVE g(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM g WHERE v < {per_site} - 1) \
             SELECT s.id, 'old-' || g.v, 'u' || (g.v % 10), {start} + (g.v * 7919) % {span}, \
               {start} + (g.v * 7919) % {span} + 600000, {start} + (g.v * 7919) % {span} + 7200000, \
               CASE WHEN g.v % 10 = 0 THEN NULL ELSE {start} + (g.v * 7919) % {span} + 1800000 END, \
               CASE WHEN g.v % 10 = 0 THEN NULL ELSE 'logout' END, false, false \
             FROM sites s CROSS JOIN g WHERE s.id NOT IN ({idle_ids})",
            span = days * DAY - 3 * HOUR,
        ),
    )
    .await;
    if is_pg(&app) {
        sql_exec(&app, "ANALYZE sessions".into()).await;
    }
    let seeded = t.elapsed().as_secs_f64();
    let sessions_before = sql_scalar(&app, "SELECT count(*) AS n FROM sessions".into()).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admitting = {
        let (client, url, token, stop, clock) = (
            app.client.clone(),
            app.url.clone(),
            tokens[1].clone(),
            stop.clone(),
            app.clock.clone(),
        );
        tokio::spawn(async move {
            let mut waits = Vec::new();
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || waits.len() < 20 {
                let t = Instant::now();
                let r = client
                    .post(format!("{url}/v1/sites/site-1/admissions"))
                    .bearer_auth(&token)
                    .json(&json!({"session": format!("retention-{k}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                waits.push(t.elapsed().as_secs_f64() * 1000.0);
                // Ended at once so that the limit never refuses.
                let r = client
                    .post(format!("{url}/v1/sites/site-1/events"))
                    .bearer_auth(&token)
                    .json(&json!({"events": [{"type": "session.ended",
                        "session": format!("retention-{k}"),
                        "at": rfc(headcount::clock::Clock::now_ms(&clock))}]}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                k += 1;
            }
            waits
        })
    };
    let t = Instant::now();
    let mut removed = 0;
    loop {
        let n = headcount::jobs::retention::sweep(&app.state).await.unwrap();
        removed += n;
        if n == 0 {
            break;
        }
    }
    let swept = t.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut waits = admitting.await.unwrap();
    waits.sort_by(f64::total_cmp);
    let sessions_after = sql_scalar(&app, "SELECT count(*) AS n FROM sessions".into()).await;
    println!(
        "month  {backend:<8} retention: {removed} rows changed or removed in {swept:.1} s \
         (sessions {sessions_before} -> {sessions_after}, {} seeded in {seeded:.0} s); {} \
         admissions on a busy site meanwhile: p50 {:.1} ms, longest {:.1} ms",
        per_site * busy_sites,
        waits.len(),
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );

    // Sanity, not goals: idle sites write a day row and nothing else a day; busy sites
    // far less than a row a minute; the month's sessions are gone.
    assert!(
        idle_rows <= idle_sites * (days + 1),
        "{idle_rows} rows for idle sites"
    );
    assert!(
        busy_rows < busy_sites * days * 1440 / 4,
        "{busy_rows} rows for busy sites"
    );
    assert!(
        old_rows >= sites as i64 * days * 1440,
        "{old_rows} rows in today's design"
    );
    assert!(
        sessions_after < sessions_before,
        "retention removed no session"
    );
}
