//! Insight: who was on at an instant, where billing's peak was, plan advice from the
//! recorded refusals, and the forecast alert.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn};

fn sessions_of(body: &Value) -> Vec<(String, String)> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|r| {
            (
                r["session"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn sessions_at_an_instant_with_their_state_then() {
    let app = spawn().await;
    let t = app
        .site_with(
            "www",
            json!({"session_limit": 10, "idle_timeout_seconds": 3600}),
        )
        .await;
    let h = 3600;
    let r = app
        .events(
            "www",
            &t,
            json!([
                // Idle since 4 h ago, killed now: dangling 2 h ago.
                {"type": "session.started", "session": "a", "at": app.at(-5 * h)},
                {"type": "session.activity", "session": "a", "at": app.at(-4 * h)},
                // Started half an hour before the instant: live then.
                {"type": "session.started", "session": "b", "at": app.at(-5 * h / 2)},
                // Started after the instant.
                {"type": "session.started", "session": "c", "at": app.at(-3 * h / 2)},
                // Ended before it.
                {"type": "session.started", "session": "d", "at": app.at(-6 * h)},
                {"type": "session.ended", "session": "d", "at": app.at(-3 * h)},
                // Expired before it.
                {"type": "session.started", "session": "e", "at": app.at(-3 * h), "expires_at": app.at(-5 * h / 2)},
                // Started at the very instant.
                {"type": "session.started", "session": "f", "at": app.at(-2 * h)},
                // Ended (logged out) after it; its last activity is the logout.
                {"type": "session.started", "session": "g", "at": app.at(-5 * h)},
                {"type": "session.ended", "session": "g", "at": app.at(-h)},
            ]),
        )
        .await;
    assert_eq!(r.body["accepted"], 10, "{}", r.text);
    let r = app.delete("/v1/sites/www/sessions/a", &app.admin).await;
    assert!(r.status.is_success(), "{}", r.text);
    let at = app.at(-2 * h);
    let q = |extra: &str| format!("/v1/sites/www/sessions?at={}{extra}", urlencode(&at));
    let r = app.get(&q(""), &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        sessions_of(&r.body),
        pairs(&[
            ("g", "live"),
            ("f", "live"),
            ("b", "live"),
            ("a", "dangling")
        ])
    );
    let a = &r.body["items"][3];
    assert_eq!(a["idle_seconds"], 2 * h);
    assert_eq!(a["end_reason"], "killed", "the row's stored end is shown");
    let r = app.get(&q("&state=dangling"), &app.admin).await;
    assert_eq!(sessions_of(&r.body), pairs(&[("a", "dangling")]));
    let r = app.get(&q("&state=live&limit=2"), &app.admin).await;
    assert_eq!(sessions_of(&r.body), pairs(&[("g", "live"), ("f", "live")]));
    let cursor = r.body["next_cursor"].as_str().unwrap().to_owned();
    let r = app
        .get(
            &q(&format!("&state=live&limit=2&cursor={cursor}")),
            &app.admin,
        )
        .await;
    assert_eq!(sessions_of(&r.body), pairs(&[("b", "live")]));
    assert!(r.body["next_cursor"].is_null());
    let r = app.get(&q("&state=ended,expired"), &app.admin).await;
    assert_eq!(
        sessions_of(&r.body),
        pairs(&[]),
        "nothing active is ended then"
    );
    // Now, without `at`: only b, c and f are still active.
    let r = app.get("/v1/sites/www/sessions", &app.admin).await;
    assert_eq!(sessions_of(&r.body).len(), 3, "{}", r.text);

    let r = app
        .get("/v1/sites/www/sessions?at=yesterday", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["field"], "at");
    app.create_tenant("other").await;
    let other = app.token("tenant", Some("other"), None).await;
    let r = app.get(&q(""), &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let own = app.token("tenant", Some("www-tenant"), None).await;
    let r = app.get(&q(""), &own).await;
    assert_eq!(sessions_of(&r.body).len(), 4);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

fn set(app: &TestApp, s: &str) {
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc),
    );
}

/// Two sessions left open on the first night hold both places of a limit of 2;
/// three sign-ins on the next days are refused while nobody works; three short
/// sessions later in the month make the median length an hour. The numbers are the
/// ones worked out by hand in `domain::advice`'s first test.
#[tokio::test]
async fn advice_sees_that_dangling_sessions_caused_the_refusals() {
    let app = spawn().await;
    set(&app, "2031-02-25T00:00:00Z");
    app.create_plan(
        "small",
        json!({"session_limit": 2, "idle_timeout_seconds": 3600,
               "monthly_price_cents": 1000, "overage_unit_price_cents": 300}),
    )
    .await;
    app.create_plan(
        "big",
        json!({"session_limit": 5, "idle_timeout_seconds": 3600, "monthly_price_cents": 2500}),
    )
    .await;
    app.create_tenant("acme").await;
    app.create_site("www", "acme", "small", json!({})).await;
    let t = app.token("site", None, Some("www")).await;
    set(&app, "2031-03-01T00:30:00Z");
    let until = "2031-03-15T00:00:00Z";
    let r = app
        .events(
            "www",
            &t,
            json!([
                {"type": "session.started", "session": "d1", "at": "2031-03-01T00:00:00Z", "expires_at": until},
                {"type": "session.activity", "session": "d1", "at": "2031-03-01T00:10:00Z", "expires_at": until},
                {"type": "session.started", "session": "d2", "at": "2031-03-01T00:05:00Z", "expires_at": until},
                {"type": "session.activity", "session": "d2", "at": "2031-03-01T00:20:00Z", "expires_at": until},
            ]),
        )
        .await;
    assert_eq!(r.body["accepted"], 4, "{}", r.text);
    for (i, at) in [
        "2031-03-02T09:00:00Z",
        "2031-03-03T10:00:00Z",
        "2031-03-04T11:00:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        set(&app, at);
        let r = app.admit("www", &t, &format!("x{i}")).await;
        assert_eq!(r.body["outcome"], "limit_reached", "{}", r.text);
    }
    set(&app, "2031-03-21T12:00:00Z");
    let mut short = Vec::new();
    for (i, h) in [0, 2, 4].into_iter().enumerate() {
        let s = format!("s{i}");
        short.push(json!({"type": "session.started", "session": s, "at": format!("2031-03-21T{h:02}:00:00Z")}));
        short.push(json!({"type": "session.ended", "session": s, "at": format!("2031-03-21T{:02}:00:00Z", h + 1)}));
    }
    let r = app.events("www", &t, json!(short)).await;
    assert_eq!(r.body["accepted"], 6, "{}", r.text);
    set(&app, "2031-04-02T00:00:00Z");

    let r = app
        .get("/v1/sites/www/advice?period=2031-03", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let a = &r.body;
    assert_eq!(a["period"], "2031-03");
    assert_eq!(
        a["current"],
        json!({"plan": "small", "session_limit": 2, "count_mode": "active", "refusals": 3,
               "peak_active": 2, "total_cents": 1000})
    );
    assert_eq!(
        a["dangling"],
        json!({"refusals_while_dangling": 3, "avoided_by_live": 3,
               "avoided_by_idle_timeout": {"3600": 3, "14400": 3, "86400": 3, "259200": 1}})
    );
    assert_eq!(
        a["options"],
        json!([
            {"plan": "small", "session_limit": 2, "count_mode": "active", "refusals": 3,
             "peak_active": 2, "overage_sessions": 0, "total_cents": 1000},
            {"plan": "small", "session_limit": 3, "count_mode": "active", "refusals": 0,
             "peak_active": 3, "overage_sessions": 0, "total_cents": 1300},
            {"plan": "small", "session_limit": 2, "count_mode": "live", "refusals": 0,
             "peak_active": 3, "overage_sessions": 0, "total_cents": 1000},
            {"plan": "big", "session_limit": 5, "count_mode": "active", "refusals": 0,
             "peak_active": 3, "overage_sessions": 0, "total_cents": 2500},
        ])
    );
    assert_eq!(
        a["recommendation"],
        json!({"plan": "small", "session_limit": 2, "count_mode": "live",
               "text": "3 of 3 refusals were caused by dangling sessions; counting live sessions only would have avoided them at no extra cost."})
    );

    // The owning tenant may ask; another tenant cannot see the site; bad periods.
    let own = app.token("tenant", Some("acme"), None).await;
    let r = app.get("/v1/sites/www/advice?period=2031-03", &own).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    app.create_tenant("other").await;
    let other = app.token("tenant", Some("other"), None).await;
    let r = app.get("/v1/sites/www/advice?period=2031-03", &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    for q in ["", "?period=2031-3", "?period=2031-03&x=1"] {
        let r = app
            .get(&format!("/v1/sites/www/advice{q}"), &app.admin)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
    }
    // A quiet month: nothing refused, the plan fits.
    let r = app
        .get("/v1/sites/www/advice?period=2031-02", &app.admin)
        .await;
    assert_eq!(r.body["current"]["refusals"], 0, "{}", r.text);
    assert_eq!(r.body["recommendation"]["plan"], "small");
}

/// A month of 1,000 sessions and 100 refusals the site made itself: the answer's
/// time is printed (run with `--nocapture`), not asserted.
#[tokio::test]
async fn advice_for_a_busy_month() {
    let app = spawn().await;
    set(&app, "2031-02-25T00:00:00Z");
    app.create_plan(
        "team",
        json!({"session_limit": 5, "idle_timeout_seconds": 3600, "monthly_price_cents": 5000,
               "overage_unit_price_cents": 400}),
    )
    .await;
    app.create_plan(
        "office",
        json!({"session_limit": 25, "monthly_price_cents": 9000}),
    )
    .await;
    app.create_tenant("busy").await;
    app.create_site("busy", "busy", "team", json!({})).await;
    let t = app.token("site", None, Some("busy")).await;
    set(&app, "2031-03-30T12:00:00Z");
    let start = chrono::DateTime::parse_from_rfc3339("2031-03-01T00:00:00Z").unwrap();
    let at = |minutes: i64| (start + chrono::Duration::minutes(minutes)).to_rfc3339();
    let mut events = Vec::new();
    for i in 0..1000i64 {
        // One every 40 minutes, lasting 1 to 8 hours, a third idle after 30 minutes.
        let s = i * 40;
        let len = 60 + (i * 37) % 420;
        let id = format!("s{i}");
        let user = format!("u{}", i % 50);
        if i % 3 == 0 {
            // Left open: it expires, and its last activity stays where it was.
            let exp = at(s + len);
            events.push(json!({"type": "session.started", "session": id, "at": at(s), "user": user, "expires_at": exp}));
            events.push(json!({"type": "session.activity", "session": id, "at": at(s + 30), "expires_at": exp}));
        } else {
            events
                .push(json!({"type": "session.started", "session": id, "at": at(s), "user": user}));
            events.push(json!({"type": "session.ended", "session": id, "at": at(s + len)}));
        }
    }
    for i in 0..100i64 {
        events.push(
            json!({"type": "session.refused", "at": at(i * 397 + 11), "user": format!("u{i}")}),
        );
    }
    for chunk in events.chunks(1000) {
        let r = app.events("busy", &t, json!(chunk)).await;
        assert_eq!(r.body["rejected"], json!([]), "{}", r.text);
    }
    let timer = std::time::Instant::now();
    let r = app
        .get("/v1/sites/busy/advice?period=2031-03", &app.admin)
        .await;
    let took = timer.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    println!(
        "advice for 1000 sessions and 100 refusals: {} ms ({} options; {})",
        took.as_millis(),
        r.body["options"].as_array().unwrap().len(),
        r.body["recommendation"]["text"]
    );
    assert_eq!(r.body["current"]["refusals"], 100);
    let options = r.body["options"].as_array().unwrap();
    assert!(
        options.iter().any(|o| o["refusals"] == 0),
        "a limit that refuses nothing is listed: {options:?}"
    );
}

/// Fourteen days of samples: one site's daily peak grows by one a day towards its
/// limit of 20, the other's stays at 10. The rising one is forecast once, to its
/// tenant and to the provider, signed; the flat one never.
#[tokio::test]
async fn a_rising_trend_of_daily_peaks_is_forecast_once() {
    let provider = crate::receiver::Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
    provider.trust(&secret);
    let app = crate::helpers::spawn_with(crate::helpers::Options {
        provider_notify: Some((provider.url.clone(), secret)),
        ..Default::default()
    })
    .await;
    let rx = crate::receiver::Receiver::start().await;
    app.create_plan("p", json!({"session_limit": 20})).await;
    let r = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "t", "name": "T", "notify_url": rx.url}),
        )
        .await;
    rx.trust(r.body["notify_secret"].as_str().unwrap());
    set(&app, "2031-05-01T12:00:00Z");
    let mut tokens = Vec::new();
    for site in ["rise", "flat"] {
        app.create_site(site, "t", "p", json!({})).await;
        tokens.push(app.token("site", None, Some(site)).await);
    }
    let sample = || headcount::jobs::sampler::sample(&app.state);
    for day in 0..16i64 {
        for (site, token, n) in [("rise", &tokens[0], day + 1), ("flat", &tokens[1], 10)] {
            let events: Vec<Value> = (0..n.min(14))
                .map(|k| {
                    json!({"type": "session.started", "session": format!("d{day}-{k}"),
                       "at": app.at(0), "expires_at": app.at(3600)})
                })
                .collect();
            let r = app.events(site, token, json!(events)).await;
            assert_eq!(r.body["rejected"], json!([]), "{}", r.text);
        }
        sample().await.unwrap();
        app.advance(86_400);
    }
    let got = rx
        .wait_for("the forecast", |r| {
            r.iter().any(|m| m.body["type"] == "site.limit_forecast")
        })
        .await;
    let m = got
        .iter()
        .find(|m| m.body["type"] == "site.limit_forecast")
        .unwrap();
    assert!(m.signature_ok);
    let data = &m.body["data"];
    assert_eq!(data["site"], "rise");
    assert_eq!(data["session_limit"], 20);
    let peaks = data["peaks"].as_array().unwrap();
    assert_eq!(peaks[0], json!({"day": "2031-05-01", "peak_active": 1}));
    // Peaks 1, 2, 3, … dated at noon reach 20 at noon of day 19 (May 20th).
    assert_eq!(data["expected_at"], "2031-05-20T12:00:00.000Z", "{data}");
    provider
        .wait_for("the provider's copy", |r| {
            r.iter().any(|m| m.body["type"] == "site.limit_forecast")
        })
        .await;
    // A few more samples within the week send nothing again.
    sample().await.unwrap();
    app.advance(3600);
    sample().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.of_type("site.limit_forecast").len(), 1);
    assert_eq!(provider.of_type("site.limit_forecast").len(), 1);
}
