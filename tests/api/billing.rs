//! Billing export and usage history, from known scenarios built with past-dated
//! events and a clock moved by hand. Every column is asserted, in JSON and in CSV.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, is_problem, spawn};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn set(app: &TestApp, s: &str) {
    app.clock.set(t(s));
}

async fn sample(app: &TestApp) {
    headcount::jobs::sampler::sample(&app.state).await.unwrap();
}

/// A minimal RFC 4180 reader: quoted fields with doubled quotes, commas and line
/// breaks inside quotes, CRLF or LF record ends.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                other => field.push(other),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            other => field.push(other),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

#[test]
fn the_csv_reader_reads_quotes() {
    assert_eq!(
        parse_csv("a,\"b,c\",\"say \"\"hi\"\"\"\r\n\"x\ny\",,z\r\n"),
        vec![
            vec!["a".to_owned(), "b,c".into(), "say \"hi\"".into()],
            vec!["x\ny".to_owned(), String::new(), "z".into()],
        ]
    );
}

const COLUMNS: [&str; 18] = [
    "tenant",
    "site",
    "plan",
    "session_limit",
    "from",
    "to",
    "peak_active",
    "p95_active",
    "sessions_started",
    "distinct_users",
    "session_hours",
    "denied_admissions",
    "overage_sessions",
    "base_cents",
    "overage_cents",
    "total_cents",
    "currency",
    "peak_at",
];

/// How a JSON value of a row is written in the CSV.
fn as_csv(column: &str, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if column == "session_hours" => format!("{:.2}", n.as_f64().unwrap()),
        other => other.to_string(),
    }
}

async fn export(app: &TestApp, token: &str, query: &str) -> Reply {
    app.get(&format!("/v1/billing/export?{query}"), token).await
}

/// Exports a period in JSON and in CSV with the same token, checks that both carry
/// the same rows with exactly the expected columns, and returns the JSON rows.
async fn export_both(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let j = export(app, token, &format!("{query}&format=json")).await;
    assert_eq!(j.status, StatusCode::OK, "{}", j.text);
    assert!(
        j.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let rows = j.body["rows"].as_array().unwrap().clone();
    for r in &rows {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = COLUMNS.to_vec();
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
    }
    let c = export(app, token, &format!("{query}&format=csv")).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert!(
        c.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(c.text.ends_with("\r\n"), "records end with CRLF");
    let records = parse_csv(&c.text);
    assert_eq!(records[0], COLUMNS.to_vec(), "header row");
    assert_eq!(records.len(), rows.len() + 1, "{}", c.text);
    for (rec, row) in records[1..].iter().zip(&rows) {
        let want: Vec<String> = COLUMNS.iter().map(|k| as_csv(k, &row[*k])).collect();
        assert_eq!(rec, &want);
    }
    rows
}

/// Sessions overlapping the period start, back to back at one instant, of zero
/// length, and wholly before the period; a site created after the period started;
/// who may export what.
#[tokio::test]
async fn export_counts_sessions_across_the_period_start_exactly() {
    let app = spawn().await;
    set(&app, "2031-03-03T00:00:00Z");
    let token = app
        .site_with(
            "alpha",
            json!({"session_limit": 2, "monthly_price_cents": 3100}),
        )
        .await;
    let r = app
        .events(
            "alpha",
            &token,
            json!([
                {"type": "session.started", "session": "s0", "at": "2031-02-20T00:00:00Z", "user": "u9"},
                {"type": "session.ended", "session": "s0", "at": "2031-02-27T00:00:00Z"},
                {"type": "session.started", "session": "s1", "at": "2031-02-28T22:00:00Z", "user": "u1"},
                {"type": "session.ended", "session": "s1", "at": "2031-03-01T02:00:00Z"},
                {"type": "session.started", "session": "s2", "at": "2031-02-28T23:00:00Z", "user": "u1"},
                {"type": "session.ended", "session": "s2", "at": "2031-03-02T00:00:00Z"},
                // Starts the instant s1 ends: never three at once.
                {"type": "session.started", "session": "s3", "at": "2031-03-01T02:00:00Z", "user": "u2"},
                {"type": "session.ended", "session": "s3", "at": "2031-03-01T03:00:00Z"},
                // Ends the instant it starts.
                {"type": "session.started", "session": "s4", "at": "2031-03-01T05:00:00Z"},
                {"type": "session.ended", "session": "s4", "at": "2031-03-01T05:00:00Z"},
            ]),
        )
        .await;
    assert_eq!(r.body["accepted"], 10, "{}", r.text);
    // Another tenant's site, to check scoping.
    app.create_tenant("other").await;
    app.create_site("gamma", "other", "alpha-plan", json!({}))
        .await;
    set(&app, "2031-04-02T00:00:00Z");

    let alpha_march = json!({
        "tenant": "alpha-tenant", "site": "alpha", "plan": "alpha-plan", "session_limit": 2,
        "from": "2031-03-01T00:00:00.000Z", "to": "2031-04-01T00:00:00.000Z",
        "peak_active": 2, "p95_active": 0, "sessions_started": 2, "distinct_users": 2,
        "session_hours": 27.0, "denied_admissions": 0, "overage_sessions": 0,
        // Created on the 3rd: 29 of 31 days.
        "base_cents": 2900, "overage_cents": 0, "total_cents": 2900, "currency": "EUR",
        // s1 and s2 are both on as the period starts.
        "peak_at": "2031-03-01T00:00:00.000Z",
    });
    let gamma_march = json!({
        "tenant": "other", "site": "gamma", "plan": "alpha-plan", "session_limit": 2,
        "from": "2031-03-01T00:00:00.000Z", "to": "2031-04-01T00:00:00.000Z",
        "peak_active": 0, "p95_active": 0, "sessions_started": 0, "distinct_users": 0,
        "session_hours": 0.0, "denied_admissions": 0, "overage_sessions": 0,
        "base_cents": 2900, "overage_cents": 0, "total_cents": 2900, "currency": "EUR",
        // No sessions: the segment's start.
        "peak_at": "2031-03-01T00:00:00.000Z",
    });
    let rows = export_both(&app, &app.admin, "period=2031-03").await;
    assert_eq!(rows, vec![alpha_march.clone(), gamma_march.clone()]);
    let j = export(&app, &app.admin, "period=2031-03&format=json").await;
    assert_eq!(j.body["period"], "2031-03");

    // The site did not exist in February; April is billed in full.
    assert!(
        export_both(&app, &app.admin, "period=2031-02")
            .await
            .is_empty()
    );
    let april = export_both(&app, &app.admin, "period=2031-04&tenant=alpha-tenant").await;
    assert_eq!(april.len(), 1);
    assert_eq!(
        (
            &april[0]["from"],
            &april[0]["base_cents"],
            &april[0]["peak_active"]
        ),
        (&json!("2031-04-01T00:00:00.000Z"), &json!(3100), &json!(0))
    );

    // A tenant sees its own rows, with or without naming itself, and nobody else's.
    let tenant = app.token("tenant", Some("alpha-tenant"), None).await;
    assert_eq!(
        export_both(&app, &tenant, "period=2031-03").await,
        vec![alpha_march.clone()]
    );
    assert_eq!(
        export_both(&app, &tenant, "period=2031-03&tenant=alpha-tenant").await,
        vec![alpha_march.clone()]
    );
    let r = export(&app, &tenant, "period=2031-03&tenant=other").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(is_problem(&r));
    assert_eq!(
        export_both(&app, &app.admin, "period=2031-03&tenant=other").await,
        vec![gamma_march]
    );
    let r = export(&app, &app.admin, "period=2031-03&tenant=nobody").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = export(&app, &token, "period=2031-03").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Bad parameters name the field.
    for (q, field) in [
        ("period=2031-3", "period"),
        ("period=2031-13&format=csv", "period"),
        ("format=csv", "period"),
        ("period=2031-03&format=xml", "format"),
    ] {
        let r = export(&app, &app.admin, q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert!(is_problem(&r));
        assert_eq!(r.body["errors"][0]["field"], field, "{q}");
    }
    // CSV is the default format.
    let r = export(&app, &app.admin, "period=2031-03").await;
    assert!(r.text.starts_with("tenant,site,plan,"));
}

/// A plan change on the 10th splits the month; the new plan allows overage, which
/// admissions use and one refusal marks; samples give the percentile.
#[tokio::test]
async fn a_plan_change_splits_the_line_and_overage_is_billed() {
    let app = spawn().await;
    set(&app, "2031-02-25T12:00:00Z");
    app.create_plan(
        "small",
        json!({"session_limit": 1, "monthly_price_cents": 1000}),
    )
    .await;
    app.create_plan(
        "over",
        json!({"session_limit": 2, "over_limit": "allow_overage", "overage_percent": 100,
               "monthly_price_cents": 6200, "overage_unit_price_cents": 150,
               "session_ttl_seconds": 3600}),
    )
    .await;
    app.create_tenant("beta-co").await;
    app.create_site("beta", "beta-co", "small", json!({})).await;
    let token = app.token("site", None, Some("beta")).await;

    set(&app, "2031-03-01T00:45:00Z");
    let r = app
        .events(
            "beta",
            &token,
            json!([
                {"type": "session.started", "session": "x1", "at": "2031-02-28T20:00:00Z", "user": "u1"},
                {"type": "session.started", "session": "x2", "at": "2031-03-01T00:30:00Z", "user": "u2"},
            ]),
        )
        .await;
    assert_eq!(r.body["accepted"], 2, "{}", r.text);
    sample(&app).await; // 2 active

    set(&app, "2031-03-09T23:30:00Z");
    app.events(
        "beta",
        &token,
        json!([
            {"type": "session.ended", "session": "x1", "at": "2031-03-01T01:00:00Z"},
            {"type": "session.ended", "session": "x2", "at": "2031-03-01T01:00:00Z"},
            {"type": "session.started", "session": "y", "at": "2031-03-09T23:00:00Z", "user": "u1"},
        ]),
    )
    .await;
    sample(&app).await; // 1 active

    set(&app, "2031-03-10T00:00:00Z");
    let r = app
        .patch("/v1/sites/beta", &app.admin, json!({"plan": "over"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (minute, session, user, outcome) in [
        ("01", "a", Some("u1"), "within_limit"),
        ("02", "b", Some("u3"), "overage"),
        ("03", "c", None, "overage"),
        ("04", "d", None, "limit_reached"),
    ] {
        set(&app, &format!("2031-03-10T00:{minute}:00Z"));
        // An explicit expiry: the agent endpoints may see the site's config up to a
        // second old, and this test is about billing, not about that cache.
        let mut body = json!({"session": session,
            "expires_at": format!("2031-03-10T01:{minute}:00Z")});
        if let Some(u) = user {
            body["user"] = json!(u);
        }
        let r = app.post("/v1/sites/beta/admissions", &token, body).await;
        assert_eq!(r.body["outcome"], outcome, "{}", r.text);
    }
    sample(&app).await; // 4 active, 1 denied

    set(&app, "2031-03-10T01:30:00Z");
    app.events(
        "beta",
        &token,
        json!([{"type": "session.ended", "session": "y", "at": "2031-03-10T01:00:00Z"}]),
    )
    .await;
    sample(&app).await; // a, b, c expired after their hour: 0 active

    set(&app, "2031-04-01T00:10:00Z");
    let rows = export_both(&app, &app.admin, "period=2031-03").await;
    assert_eq!(
        rows,
        vec![
            json!({
                "tenant": "beta-co", "site": "beta", "plan": "small", "session_limit": 1,
                "from": "2031-03-01T00:00:00.000Z", "to": "2031-03-10T00:00:00.000Z",
                // Two at once, above the limit of 1, but a reject plan bills no overage.
                "peak_active": 2, "p95_active": 2, "sessions_started": 2, "distinct_users": 2,
                "session_hours": 2.5, "denied_admissions": 0, "overage_sessions": 0,
                // 1000 × 9/31 = 290.32
                "base_cents": 290, "overage_cents": 0, "total_cents": 290, "currency": "EUR",
                // x2 joins x1.
                "peak_at": "2031-03-01T00:30:00.000Z",
            }),
            json!({
                "tenant": "beta-co", "site": "beta", "plan": "over", "session_limit": 2,
                "from": "2031-03-10T00:00:00.000Z", "to": "2031-04-01T00:00:00.000Z",
                "peak_active": 4, "p95_active": 4, "sessions_started": 3, "distinct_users": 2,
                "session_hours": 4.0, "denied_admissions": 1, "overage_sessions": 2,
                "base_cents": 4400, "overage_cents": 300, "total_cents": 4700, "currency": "EUR",
                // y, a and b are on when c is admitted.
                "peak_at": "2031-03-10T00:03:00.000Z",
            }),
        ]
    );

    // The command line computes the same export from the same database.
    let csv = export(&app, &app.admin, "period=2031-03&format=csv")
        .await
        .text;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("march.csv");
    let (url, out2) = (app.database_url.clone(), out.clone());
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_headcount"))
            .args([
                "billing", "export", "--period", "2031-03", "--format", "csv",
            ])
            .arg("--database-url")
            .arg(&url)
            .arg("--output")
            .arg(&out2)
            .env_remove("DATABASE_URL")
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), csv);
}

/// Samples at chosen instants roll up into minute, hour and day points; the minutes
/// between them count the sessions exactly from their rows.
#[tokio::test]
async fn usage_history_rolls_samples_up() {
    let app = spawn().await;
    set(&app, "2031-05-01T10:00:00Z");
    let token = app.site_with("hist", json!({"session_limit": 3})).await;
    app.admit("hist", &token, "s1").await;
    sample(&app).await;
    set(&app, "2031-05-01T10:01:00Z");
    app.admit("hist", &token, "s2").await;
    sample(&app).await;
    set(&app, "2031-05-01T11:00:00Z");
    app.admit("hist", &token, "s3").await;
    let r = app.admit("hist", &token, "s4").await;
    assert_eq!(r.body["admitted"], false);
    sample(&app).await;
    set(&app, "2031-05-01T11:30:00Z");

    let point = |at: &str, active: i64, denied: i64| {
        json!({"at": at, "max_active": active, "max_live": active, "max_dangling": 0,
               "denied": denied, "session_limit": 3})
    };
    let r = app
        .get(
            "/v1/sites/hist/usage/history?from=2031-05-01T10:00:00Z&to=2031-05-01T11:05:00Z&step=minute",
            &app.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["site"], "hist");
    assert_eq!(r.body["step"], "minute");
    // Sampled or not, every minute in which a session was active is there: two from
    // 10:01, three from 11:00 to the range's end.
    let minute = |h: i64, m: i64| format!("2031-05-01T{h}:{m:02}:00.000Z");
    let want: Vec<Value> = std::iter::once(point(&minute(10, 0), 1, 0))
        .chain((1..60).map(|m| point(&minute(10, m), 2, 0)))
        .chain(std::iter::once(point(&minute(11, 0), 3, 1)))
        .chain((1..5).map(|m| point(&minute(11, m), 3, 0)))
        .collect();
    assert_eq!(r.body["points"], Value::Array(want));
    let r = app
        .get(
            "/v1/sites/hist/usage/history?from=2031-05-01T00:00:00Z&to=2031-05-02T00:00:00Z&step=hour",
            &app.admin,
        )
        .await;
    assert_eq!(
        r.body["points"],
        json!([
            point("2031-05-01T10:00:00.000Z", 2, 0),
            point("2031-05-01T11:00:00.000Z", 3, 1),
        ])
    );
    // Defaults: hourly over the last 7 days up to now.
    let tenant = app.token("tenant", Some("hist-tenant"), None).await;
    let r = app
        .get("/v1/sites/hist/usage/history?step=day", &tenant)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["points"],
        json!([point("2031-05-01T00:00:00.000Z", 3, 1)])
    );
    assert_eq!(r.body["to"], "2031-05-01T11:30:00.000Z");
    // The `to` bound is exclusive.
    let r = app
        .get(
            "/v1/sites/hist/usage/history?from=2031-05-01T10:00:00Z&to=2031-05-01T10:01:00Z&step=minute",
            &tenant,
        )
        .await;
    assert_eq!(r.body["points"].as_array().unwrap().len(), 1);

    // The chart draws the same series.
    let r = app
        .get("/v1/sites/hist/usage/chart.svg?from=2031-05-01T09:00:00Z&to=2031-05-01T12:00:00Z&step=minute", &tenant)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("image/svg+xml")
    );
    assert!(
        r.text
            .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"")
    );
    assert!(r.text.contains("<title>session limit</title>"));
    assert!(r.text.trim_end().ends_with("</svg>"));

    // Too many points, a bad step or range, another tenant's site.
    for (q, field) in [
        (
            "from=2031-04-01T00:00:00Z&to=2031-05-01T00:00:00Z&step=minute",
            "step",
        ),
        ("step=week", "step"),
        ("from=2031-05-02T00:00:00Z&to=2031-05-01T00:00:00Z", "from"),
        ("from=yesterday", "from"),
    ] {
        let r = app
            .get(&format!("/v1/sites/hist/usage/history?{q}"), &app.admin)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert_eq!(r.body["errors"][0]["field"], field, "{q}");
    }
    app.create_tenant("other").await;
    let other = app.token("tenant", Some("other"), None).await;
    let r = app.get("/v1/sites/hist/usage/history", &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get("/v1/sites/hist/usage/chart.svg", &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get("/v1/sites/hist/usage/history", &token).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// Hour and day points outlive the minute samples they were rolled up from, and the
/// billing percentile of a month whose minutes are gone comes from the hours; the
/// roll-ups themselves go when ended sessions do.
#[tokio::test]
async fn rollups_outlive_the_minutes() {
    let app = spawn().await;
    set(&app, "2031-03-01T10:00:00Z");
    let token = app.site_with("old", json!({"session_limit": 5})).await;
    app.admit("old", &token, "s1").await;
    sample(&app).await;
    set(&app, "2031-03-01T10:01:00Z");
    app.admit("old", &token, "s2").await;
    sample(&app).await;
    set(&app, "2031-03-01T10:02:00Z");
    app.admit("old", &token, "s3").await;
    sample(&app).await;

    let get = |q: &'static str| {
        let app = &app;
        async move {
            let r = app
                .get(&format!("/v1/sites/old/usage/history?{q}"), &app.admin)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.body["points"].clone()
        }
    };
    const MINUTES: &str = "from=2031-03-01T10:00:00Z&to=2031-03-01T11:00:00Z&step=minute";
    const HOURS: &str = "from=2031-03-01T10:30:00Z&to=2031-03-01T11:00:00Z&step=hour";
    const DAYS: &str = "from=2031-03-01T00:00:00Z&to=2031-03-02T00:00:00Z&step=day";
    // Up to now: the three sampled minutes.
    let minutes = get(MINUTES).await;
    assert_eq!(minutes.as_array().unwrap().len(), 3);
    let hours = get(HOURS).await;
    let days = get(DAYS).await;
    // `from` inside an hour still gives that whole hour.
    assert_eq!(
        hours,
        json!([{"at": "2031-03-01T10:00:00.000Z", "max_active": 3, "max_live": 3,
                "max_dangling": 0, "denied": 0, "session_limit": 5}])
    );
    assert_eq!(days[0]["at"], "2031-03-01T00:00:00.000Z");
    assert_eq!(days[0]["max_active"], 3);
    assert_eq!(days.as_array().unwrap().len(), 1);
    let p95 = |rows: &[Value]| rows[0]["p95_active"].clone();
    let before = export_both(&app, &app.admin, "period=2031-03").await;
    assert_eq!(p95(&before), 3);

    // 40 days on, past the 35 days minutes are kept: the minute samples are gone,
    // the hours, the days and the percentile stay, and the minutes are counted from
    // the session rows (kept as long as the roll-ups): the first three as sampled,
    // the rest of the hour at three.
    set(&app, "2031-04-10T10:00:00Z");
    headcount::jobs::retention::sweep(&app.state).await.unwrap();
    let later = get(MINUTES).await;
    let later = later.as_array().unwrap();
    assert_eq!(later.len(), 60);
    assert_eq!(later[..3], minutes.as_array().unwrap()[..]);
    assert_eq!(later[59]["max_active"], 3);
    assert_eq!(get(HOURS).await, hours);
    assert_eq!(get(DAYS).await, days);
    let after = export_both(&app, &app.admin, "period=2031-03").await;
    assert_eq!(p95(&after), 3);
    assert_eq!(after[0]["peak_active"], before[0]["peak_active"]);

    // Past the 400 days ended sessions are kept (these expired on March 15th), the
    // roll-ups go with them.
    set(&app, "2032-04-20T10:00:00Z");
    headcount::jobs::retention::sweep(&app.state).await.unwrap();
    assert_eq!(get(MINUTES).await, json!([]));
    assert_eq!(get(HOURS).await, json!([]));
    assert_eq!(get(DAYS).await, json!([]));
}

/// A plan's price change applies from its time on: the month's base price adds up
/// each price for the time it was in force, and a later change leaves the month's
/// lines as they were.
#[tokio::test]
async fn price_changes_apply_from_their_time() {
    let app = spawn().await;
    set(&app, "2031-03-01T00:00:00Z");
    let token = app
        .site_with(
            "priced",
            json!({"session_limit": 5, "monthly_price_cents": 3100, "currency": "EUR",
                   "session_ttl_seconds": 86400}),
        )
        .await;
    set(&app, "2031-03-05T10:00:00Z");
    app.admit("priced", &token, "s1").await;
    set(&app, "2031-03-11T00:00:00Z");
    let r = app
        .patch(
            "/v1/plans/priced-plan",
            &app.admin,
            json!({"monthly_price_cents": 6200}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A change that leaves the prices as they are changes nothing in the bill.
    let r = app
        .patch(
            "/v1/plans/priced-plan",
            &app.admin,
            json!({"name": "Priced"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    set(&app, "2031-03-20T10:00:00Z");
    app.admit("priced", &token, "s2").await;
    app.admit("priced", &token, "s3").await;

    let lines = |rows: &[Value]| -> Vec<(String, String, i64, i64, i64)> {
        rows.iter()
            .map(|r| {
                (
                    r["from"].as_str().unwrap().to_owned(),
                    r["to"].as_str().unwrap().to_owned(),
                    r["base_cents"].as_i64().unwrap(),
                    r["total_cents"].as_i64().unwrap(),
                    r["peak_active"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    // One line for the month: 10 of 31 days at 31.00 and 21 of 31 days at 62.00.
    let want = vec![(
        "2031-03-01T00:00:00.000Z".to_owned(),
        "2031-04-01T00:00:00.000Z".to_owned(),
        1000 + 4200,
        1000 + 4200,
        2,
    )];
    let rows = export_both(&app, &app.admin, "period=2031-03").await;
    assert_eq!(lines(&rows), want);
    assert!(rows.iter().all(|r| r["plan"] == "priced-plan"));

    // Raising the price in April does not touch March.
    set(&app, "2031-04-05T00:00:00Z");
    let r = app
        .patch(
            "/v1/plans/priced-plan",
            &app.admin,
            json!({"monthly_price_cents": 9300}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = export_both(&app, &app.admin, "period=2031-03").await;
    assert_eq!(lines(&rows), want);
}
