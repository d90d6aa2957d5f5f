//! Usage history exact from the session rows: a first snapshot shows the site's past,
//! ends and expiries inside a bucket give the exact maximum, and every step agrees
//! with the minutes and with billing's peak. No sampler runs in these tests.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn};

fn set(app: &TestApp, s: &str) {
    app.clock
        .set(chrono::DateTime::parse_from_rfc3339(s).unwrap().into());
}

/// The points of a history query, as `(at, max_active, max_live, max_dangling,
/// denied)` with `at` shortened to `MM-DDTHH:MM`.
async fn points(app: &TestApp, query: &str) -> Vec<(String, i64, i64, i64, i64)> {
    let r = app
        .get(&format!("/v1/sites/past/usage/history?{query}"), &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |k: &str| p[k].as_i64().unwrap();
            (
                p["at"].as_str().unwrap()[5..16].to_owned(),
                n("max_active"),
                n("max_live"),
                n("max_dangling"),
                n("denied"),
            )
        })
        .collect()
}

/// `(at, active)` of each point.
fn active(p: &[(String, i64, i64, i64, i64)]) -> Vec<(&str, i64)> {
    p.iter().map(|p| (p.0.as_str(), p.1)).collect()
}

/// A site created now whose agent's first snapshot lists sessions that started hours
/// and days ago: their past shows, with no sample ever taken.
#[tokio::test]
async fn a_first_snapshot_shows_the_sites_past() {
    let app = spawn().await;
    set(&app, "2031-06-10T12:00:00Z");
    let token = app
        .site_with(
            "past",
            json!({"session_limit": 10, "idle_timeout_seconds": 3600}),
        )
        .await;
    let snapshot = json!({"sessions": [
        {"session": "a", "started_at": "2031-06-08T09:30:00Z",
         "last_activity_at": "2031-06-10T11:50:00Z"},
        {"session": "c", "started_at": "2031-06-09T22:00:00Z",
         "last_activity_at": "2031-06-10T10:30:00Z"},
        {"session": "b", "started_at": "2031-06-10T08:15:00Z",
         "last_activity_at": "2031-06-10T11:59:00Z"},
    ]});
    let r = app.put("/v1/sites/past/sessions", &token, snapshot).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let days = points(&app, "from=2031-06-01T00:00:00Z&step=day").await;
    assert_eq!(
        days,
        vec![
            ("06-08T00:00".into(), 1, 1, 0, 0),
            ("06-09T00:00".into(), 2, 2, 0, 0),
            // c idles from 11:30 on (an hour after its last activity).
            ("06-10T00:00".into(), 3, 3, 1, 0),
        ]
    );
    let hours = points(&app, "from=2031-06-08T00:00:00Z&step=hour").await;
    assert_eq!(
        hours.len(),
        12 * 4 + 3,
        "09:00 on the 8th to 11:00 on the 10th"
    );
    assert_eq!(hours[0], ("06-08T09:00".into(), 1, 1, 0, 0));
    assert_eq!(hours[12], ("06-08T21:00".into(), 1, 1, 0, 0));
    let at = |s: &str| hours.iter().find(|p| p.0 == s).cloned().unwrap();
    assert_eq!(at("06-09T21:00").1, 1);
    assert_eq!(at("06-09T22:00").1, 2);
    assert_eq!(at("06-10T07:00").1, 2);
    assert_eq!(at("06-10T08:00").1, 3);
    assert_eq!(at("06-10T10:00"), ("06-10T10:00".into(), 3, 3, 0, 0));
    assert_eq!(at("06-10T11:00"), ("06-10T11:00".into(), 3, 3, 1, 0));
    let minutes = points(
        &app,
        "from=2031-06-09T21:58:00Z&to=2031-06-09T22:02:00Z&step=minute",
    )
    .await;
    assert_eq!(
        active(&minutes),
        [
            ("06-09T21:58", 1),
            ("06-09T21:59", 1),
            ("06-09T22:00", 2),
            ("06-09T22:01", 2)
        ]
    );
    // The limit of the site's plan holds for the time before it existed too.
    let r = app
        .get(
            "/v1/sites/past/usage/history?from=2031-06-08T09:00:00Z&to=2031-06-08T10:00:00Z",
            &app.admin,
        )
        .await;
    assert_eq!(r.body["points"][0]["session_limit"], 10);
}

/// Sessions ending, expiring and starting inside an hour: its point is the exact
/// maximum at one instant, a session ending as another starts does not overlap it,
/// and refusals show also where no session was open.
#[tokio::test]
async fn ends_and_expiries_inside_a_bucket_give_the_exact_maximum() {
    let app = spawn().await;
    set(&app, "2031-06-10T12:00:00Z");
    let token = app.site_with("past", json!({"session_limit": 10})).await;
    let d = |hm: &str| format!("2031-06-10T{hm}:00Z");
    let events = json!([
        {"type": "session.started", "session": "s0", "at": d("09:50")},
        {"type": "session.ended", "session": "s0", "at": d("10:05")},
        {"type": "session.started", "session": "s1", "at": d("10:05")},
        {"type": "session.ended", "session": "s1", "at": d("10:20")},
        {"type": "session.started", "session": "s2", "at": d("10:20"), "expires_at": d("10:40")},
        {"type": "session.started", "session": "s3", "at": d("10:30")},
        {"type": "session.ended", "session": "s3", "at": d("10:50")},
        {"type": "session.started", "session": "s4", "at": d("10:45")},
        {"type": "session.ended", "session": "s4", "at": d("10:46")},
        {"type": "session.refused", "at": d("10:33")},
        {"type": "session.refused", "at": d("11:15")},
    ]);
    let r = app.events("past", &token, events).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["rejected"], json!([]), "{}", r.text);

    let hours = points(&app, "from=2031-06-10T09:00:00Z&step=hour").await;
    assert_eq!(
        hours,
        vec![
            ("06-10T09:00".into(), 1, 1, 0, 0),
            ("06-10T10:00".into(), 2, 2, 0, 1),
            ("06-10T11:00".into(), 0, 0, 0, 1),
        ]
    );
    let minutes = points(
        &app,
        "from=2031-06-10T10:00:00Z&to=2031-06-10T11:00:00Z&step=minute",
    )
    .await;
    let want: Vec<(String, i64)> = (0..50)
        .map(|m| {
            let n = match m {
                30..=39 | 45 => 2,
                _ => 1,
            };
            (format!("06-10T10:{m:02}"), n)
        })
        .collect();
    let got: Vec<(String, i64)> = minutes.iter().map(|p| (p.0.clone(), p.1)).collect();
    assert_eq!(got, want);
    assert_eq!(minutes[33].4, 1, "the refusal's minute");
}

/// Pseudo-random sessions over a day: each hour's point is the largest of its
/// minutes', the day's the largest of its hours', and that is billing's peak.
#[tokio::test]
async fn hour_and_day_steps_agree_with_the_minutes() {
    let app = spawn().await;
    set(&app, "2031-06-11T00:00:00Z");
    let token = app
        .site_with(
            "past",
            json!({"session_limit": 50, "idle_timeout_seconds": 1800}),
        )
        .await;
    let day = chrono::DateTime::parse_from_rfc3339("2031-06-10T00:00:00Z").unwrap();
    let mut seed = 0x9e37_79b9_u64;
    let mut next = |n: i64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((seed >> 33) as i64).rem_euclid(n)
    };
    let mut events = Vec::new();
    for i in 0..120 {
        // Starts from 01:00 to 15:00 and ends by 20:00: nothing after now.
        let start = day + chrono::Duration::seconds(next(14 * 3600) + 3600);
        let last = start + chrono::Duration::seconds(next(3 * 3600));
        let end = last + chrono::Duration::seconds(next(2 * 3600));
        events.push(
            json!({"type": "session.started", "session": format!("s{i}"),
                           "at": start.to_rfc3339()}),
        );
        events.push(
            json!({"type": "session.activity", "session": format!("s{i}"),
                           "at": last.to_rfc3339()}),
        );
        if i % 5 != 0 {
            events.push(json!({"type": "session.ended", "session": format!("s{i}"),
                               "at": end.to_rfc3339()}));
        }
    }
    let r = app.events("past", &token, Value::Array(events)).await;
    assert_eq!(r.body["rejected"], json!([]), "{}", r.text);

    let minutes = points(&app, "from=2031-06-10T00:00:00Z&step=minute").await;
    let hours = points(&app, "from=2031-06-10T00:00:00Z&step=hour").await;
    let days = points(&app, "from=2031-06-10T00:00:00Z&step=day").await;
    let max_of = |p: &[(String, i64, i64, i64, i64)], prefix: &str| {
        let inside: Vec<_> = p.iter().filter(|p| p.0.starts_with(prefix)).collect();
        (
            inside.iter().map(|p| p.1).max().unwrap_or(0),
            inside.iter().map(|p| p.2).max().unwrap_or(0),
            inside.iter().map(|p| p.3).max().unwrap_or(0),
        )
    };
    assert!(hours.len() > 12, "{hours:?}");
    for h in &hours {
        assert_eq!((h.1, h.2, h.3), max_of(&minutes, &h.0[..9]), "hour {}", h.0);
    }
    assert_eq!(days.len(), 1);
    let d = &days[0];
    assert_eq!((d.1, d.2, d.3), max_of(&hours, "06-10"));
    assert!(d.3 > 0, "some sessions idled past the timeout");
    let r = app
        .get("/v1/billing/export?period=2031-06&format=json", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["rows"][0]["peak_active"], d.1);
}
