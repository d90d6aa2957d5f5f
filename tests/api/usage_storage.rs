//! Usage samples stored by change answer exactly what one row per site and sampled
//! minute answered. Random fleet histories (sites created at different minutes,
//! figures that hold for a while and then move, refusals, a changing limit, minutes
//! the sampler missed) are written both ways on this run's backend: the old way, a row
//! per site and covered minute with its day roll-ups computed from those rows, and the
//! new way, through the sampler's own pass. The history at minute, hour and day steps and the billing percentile must agree for every site.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use headcount::db::samples::{self, Sample};
use serde_json::json;

use crate::helpers::{Rng, TestApp, spawn};

const M: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2031-03-01T22:00:00Z: the ten hours span a day boundary.
const START: i64 = 1_930_168_800_000;
const MINUTES: i64 = 600;
const SITES: usize = 4;

/// One random fleet history: per site its samples at the covered minutes from its
/// creation on.
fn history(seed: u64) -> Vec<Vec<Sample>> {
    let mut r = Rng(seed);
    let covered: Vec<i64> = (0..MINUTES)
        .filter(|_| r.below(12) != 0)
        .map(|m| START + m * M)
        .collect();
    (0..SITES)
        .map(|i| {
            let born = START + r.below(120) * M;
            let (mut active, mut dangling, mut limit) = (r.below(5), 0, 5 + r.below(3));
            let mut out = Vec::new();
            for &minute in covered.iter().filter(|&&m| m >= born) {
                if r.below(15) == 0 {
                    active = r.below(8);
                    dangling = r.below(active as u64 + 1);
                }
                if r.below(200) == 0 {
                    limit = 5 + r.below(3);
                }
                let denied = if r.below(25) == 0 { 1 + r.below(3) } else { 0 };
                out.push(Sample {
                    site_id: i as i64,
                    minute,
                    active,
                    live: active - dangling,
                    dangling,
                    denied,
                    session_limit: limit,
                });
            }
            out
        })
        .collect()
}

async fn fleet(app: &TestApp) -> Vec<i64> {
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let mut ids = Vec::new();
    for i in 0..SITES {
        let slug = format!("s{i}");
        app.create_site(&slug, "t", "p", json!({})).await;
        let id = app
            .state
            .db
            .run(move |c| {
                Ok::<_, headcount::db::Error>(
                    headcount::db::sites::get_for_agent(c, &slug)?.site.id,
                )
            })
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

fn exec(c: &mut headcount::db::DbConn, sql: String) {
    use diesel::RunQueryDsl;
    headcount::per_backend!(c, |c| diesel::sql_query(&sql).execute(c).unwrap());
}

/// The old representation: every row, the day roll-ups of those rows, and the covered
/// minutes as the migration to the new one records them.
async fn write_rows(app: &TestApp, sites: &[Vec<Sample>]) {
    let rows: Vec<Sample> = sites.iter().flatten().cloned().collect();
    app.state
        .db
        .run(move |c| {
            let mut days: BTreeMap<(i64, i64), [i64; 5]> = BTreeMap::new();
            let mut minutes: Vec<i64> = rows.iter().map(|s| s.minute).collect();
            minutes.sort_unstable();
            minutes.dedup();
            for chunk in rows.chunks(200) {
                let values: Vec<String> = chunk
                    .iter()
                    .map(|s| {
                        format!(
                            "({}, {}, {}, {}, {}, {}, {})",
                            s.site_id,
                            s.minute,
                            s.active,
                            s.live,
                            s.dangling,
                            s.denied,
                            s.session_limit
                        )
                    })
                    .collect();
                exec(
                    c,
                    format!(
                        "INSERT INTO usage_samples (site_id, minute, active, live, dangling, \
                         denied, session_limit) VALUES {}",
                        values.join(", ")
                    ),
                );
            }
            for s in &rows {
                let d = days
                    .entry((s.site_id, s.minute - s.minute.rem_euclid(DAY)))
                    .or_default();
                d[0] = d[0].max(s.active);
                d[1] = d[1].max(s.live);
                d[2] = d[2].max(s.dangling);
                d[3] += s.denied;
                d[4] = d[4].max(s.session_limit);
            }
            for ((site, at), d) in days {
                exec(
                    c,
                    format!(
                        "INSERT INTO usage_rollups (site_id, bucket_ms, at, max_active, max_live, \
                         max_dangling, denied, session_limit) VALUES ({site}, {DAY}, {at}, {}, {}, \
                         {}, {}, {})",
                        d[0], d[1], d[2], d[3], d[4]
                    ),
                );
            }
            let mut coverage: Vec<(i64, i64)> = Vec::new();
            for m in minutes {
                match coverage.last_mut() {
                    Some(last) if last.1 == m => last.1 = m + M,
                    _ => coverage.push((m, m + M)),
                }
            }
            for (s, e) in coverage {
                exec(
                    c,
                    format!(
                        "INSERT INTO sampler_coverage (start_minute, end_minute) VALUES ({s}, {e})"
                    ),
                );
            }
            Ok::<_, headcount::db::Error>(())
        })
        .await
        .unwrap();
}

/// The new representation, through the sampler's pass for each covered minute.
async fn write_passes(app: &TestApp, sites: &[Vec<Sample>]) -> usize {
    let mut by_minute: BTreeMap<i64, Vec<Sample>> = BTreeMap::new();
    for s in sites.iter().flatten() {
        by_minute.entry(s.minute).or_default().push(s.clone());
    }
    let mut written = 0;
    for (minute, taken) in by_minute {
        written += app
            .state
            .db
            .run(move |c| {
                assert!(samples::claim_pass(c, minute, "test", minute, 30_000)?);
                Ok::<_, headcount::db::Error>(samples::write_pass(c, minute, &taken)?.rows)
            })
            .await
            .unwrap();
    }
    written
}

fn rfc(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn answers(app: &TestApp, slug: &str, site_id: i64) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let (from, to) = (START - DAY, START + MINUTES * M);
    for (step, f) in [("minute", START), ("hour", START), ("day", from)] {
        let path = format!(
            "/v1/sites/{slug}/usage/history?from={}&to={}&step={step}",
            rfc(f),
            rfc(to)
        );
        let r = app.get(&path, &app.admin).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        out.push(r.body["points"].clone());
    }
    // What the sampler recorded per bucket, before history caps live and dangling
    // at the sessions' count (there are no sessions here).
    for step in [M, 5 * M, HOUR, DAY] {
        let slug = slug.to_owned();
        let sampled = app
            .state
            .db
            .run(move |c| {
                let provider = headcount::domain::scope::Scope::Provider;
                let key = headcount::db::sites::get(c, &provider, &slug)?.key();
                headcount::db::history::history_inputs(c, key, from, to, step, 60_000)
            })
            .await
            .unwrap()
            .sampled;
        let sampled: Vec<[i64; 4]> = sampled
            .iter()
            .map(|b| [b.at, b.max_live, b.max_dangling, b.session_limit])
            .collect();
        out.push(json!(sampled));
    }
    let histogram = app
        .state
        .db
        .run(move |c| headcount::db::billing::active_histogram(c, site_id, from, to))
        .await
        .unwrap();
    out.push(json!(histogram));
    out
}

#[tokio::test]
async fn samples_by_change_answer_as_one_row_per_site_and_minute() {
    for seed in 1..=6 {
        let old = spawn().await;
        let new = spawn().await;
        let (old_ids, new_ids) = (fleet(&old).await, fleet(&new).await);
        let history = history(seed);
        let with_ids = |ids: &[i64]| -> Vec<Vec<Sample>> {
            history
                .iter()
                .zip(ids)
                .map(|(rows, id)| {
                    rows.iter()
                        .map(|s| Sample {
                            site_id: *id,
                            ..s.clone()
                        })
                        .collect()
                })
                .collect()
        };
        write_rows(&old, &with_ids(&old_ids)).await;
        let written = write_passes(&new, &with_ids(&new_ids)).await;
        let per_minute: usize = history.iter().map(Vec::len).sum();
        assert!(
            written * 4 < per_minute,
            "seed {seed}: {written} rows by change for {per_minute} per minute"
        );
        for clock in [&old.clock, &new.clock] {
            clock.set(DateTime::<Utc>::from_timestamp_millis(START + DAY).unwrap());
        }
        for i in 0..SITES {
            let slug = format!("s{i}");
            let a = answers(&old, &slug, old_ids[i]).await;
            let b = answers(&new, &slug, new_ids[i]).await;
            let what = [
                "minute",
                "hour",
                "day",
                "sampled/minute",
                "sampled/5m",
                "sampled/hour",
                "sampled/day",
                "histogram",
            ];
            for (k, step) in what.iter().enumerate() {
                assert_eq!(a[k], b[k], "seed {seed}, site {slug}, {step}");
            }
            assert!(
                a[3].as_array().is_some_and(|p| p.len() > 100),
                "seed {seed}: the minute samples are nearly empty: {}",
                a[3]
            );
        }
    }
}

/// The pass of `minute`: (holder, done), if claimed.
async fn pass(app: &TestApp, minute: i64) -> Option<(String, bool)> {
    app.state
        .db
        .run(move |c| {
            use diesel::prelude::*;
            use headcount::db::schema::sampler_passes::dsl as sp;
            Ok::<_, headcount::db::Error>(
                sp::sampler_passes
                    .filter(sp::minute.eq(minute))
                    .select((sp::holder, sp::done))
                    .first::<(String, bool)>(c)
                    .optional()?,
            )
        })
        .await
        .unwrap()
}

/// One pass a minute for the fleet: a second process at the same minute finds the
/// pass taken and writes nothing, even when figures moved; a claim whose holder died
/// is taken over once it is 30 s old, not before.
#[tokio::test]
async fn one_pass_a_minute_and_a_dead_holders_pass_is_taken_over() {
    let app = spawn().await;
    let token = app.site_with("s", json!({"session_limit": 10})).await;
    let minute_of = |app: &TestApp| {
        let now = app.now().timestamp_millis();
        now - now.rem_euclid(M)
    };
    // Start at the beginning of a minute, so that the moves below stay inside it.
    let now = app.now().timestamp_millis();
    app.clock
        .set(DateTime::<Utc>::from_timestamp_millis(now - now.rem_euclid(M) + M + 1_000).unwrap());
    let sample = || headcount::jobs::sampler::sample(&app.state);

    let m = minute_of(&app);
    assert_eq!(
        sample().await.unwrap(),
        1,
        "the first pass writes the site's row"
    );
    assert!(pass(&app, m).await.is_some_and(|(_, done)| done));
    app.admit("s", &token, "a").await;
    assert_eq!(
        sample().await.unwrap(),
        0,
        "the minute's pass was already taken"
    );
    app.advance(60);
    assert_eq!(
        sample().await.unwrap(),
        1,
        "the next minute's pass sees the change"
    );

    // A process claimed the next minute and died before finishing it.
    app.advance(60);
    let dead = minute_of(&app);
    let claimed_at = app.now().timestamp_millis();
    let taken = app
        .state
        .db
        .run(move |c| headcount::db::samples::claim_pass(c, dead, "dead", claimed_at, 30_000))
        .await
        .unwrap();
    assert!(taken);
    app.admit("s", &token, "b").await;
    app.advance(20);
    assert_eq!(
        sample().await.unwrap(),
        0,
        "a claim 20 s old is left to its holder"
    );
    assert_eq!(pass(&app, dead).await, Some(("dead".to_owned(), false)));
    app.advance(15);
    assert_eq!(sample().await.unwrap(), 1, "a claim 35 s old is taken over");
    let (holder, done) = pass(&app, dead).await.unwrap();
    assert!(holder != "dead" && done, "{holder} {done}");
    assert_eq!(minute_of(&app), dead, "taken over within the same minute");
}
