use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn;

async fn admitted(
    app: &crate::helpers::TestApp, site: &str, token: &str, prefix: &str, n: usize,
) -> usize {
    let calls = (0..n).map(|i| {
        let session = format!("{prefix}{i}");
        async move {
            let r = app
                .post(
                    &format!("/v1/sites/{site}/admissions"),
                    token,
                    json!({"session": session}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.body["admitted"].as_bool().unwrap()
        }
    });
    join_all(calls).await.into_iter().filter(|a| *a).count()
}

#[tokio::test]
async fn a_limit_of_n_admits_exactly_n_of_5n_concurrent() {
    let app = spawn().await;
    let t = app.site_with("www", json!({"session_limit": 8})).await;
    assert_eq!(admitted(&app, "www", &t, "s", 40).await, 8);
    let u = app.usage("www").await;
    assert_eq!(u["active"], 8);
    assert_eq!(u["denied_last_24h"], 32);
}

#[tokio::test]
async fn refusals_carry_the_message_and_zero_refuses_everything() {
    let app = spawn().await;
    let t = app
        .site_with(
            "www",
            json!({"session_limit": 1, "limit_message": "Only {limit} at a time."}),
        )
        .await;
    let r = app.admit("www", &t, "a").await;
    assert_eq!(r.body["outcome"], "within_limit");
    let r = app.admit("www", &t, "b").await;
    assert_eq!(r.body["admitted"], false);
    assert_eq!(r.body["outcome"], "limit_reached");
    assert_eq!(r.body["message"], "Only 1 at a time.");
    assert_eq!(r.body["session_limit"], 1);
    let z = app
        .site_with(
            "zero",
            json!({"session_limit": 0, "over_limit": "allow_overage", "overage_percent": 50}),
        )
        .await;
    let r = app.admit("zero", &z, "a").await;
    assert_eq!(r.body["admitted"], false);
}

#[tokio::test]
async fn admitting_the_same_session_twice_counts_it_once() {
    let app = spawn().await;
    let t = app.site_with("www", json!({"session_limit": 2})).await;
    for _ in 0..3 {
        let r = app.admit("www", &t, "same").await;
        assert_eq!(r.body["admitted"], true);
        assert_eq!(r.body["counted"], 1);
    }
    assert_eq!(app.usage("www").await["active"], 1);
    // An ended session is not admitted again.
    app.events(
        "www",
        &t,
        json!([{"type": "session.ended", "session": "same", "at": app.at(0)}]),
    )
    .await;
    let r = app.admit("www", &t, "same").await;
    assert_eq!(r.body["admitted"], false);
    assert_eq!(r.body["outcome"], "session_ended");
}

#[tokio::test]
async fn live_mode_admits_past_dangling_sessions() {
    let app = spawn().await;
    let t = app
        .site_with(
            "www",
            json!({"session_limit": 2, "count_mode": "live", "idle_timeout_seconds": 600}),
        )
        .await;
    app.admit("www", &t, "a").await;
    app.admit("www", &t, "b").await;
    assert_eq!(app.admit("www", &t, "c").await.body["admitted"], false);
    app.advance(601);
    let r = app.admit("www", &t, "c").await;
    assert_eq!(r.body["admitted"], true, "{}", r.text);
    assert_eq!(app.admit("www", &t, "d").await.body["admitted"], true);
    assert_eq!(app.admit("www", &t, "e").await.body["admitted"], false);
    assert_eq!(app.usage("www").await["active"], 4);
}

#[tokio::test]
async fn evict_dangling_ends_exactly_the_most_idle_one_and_records_its_kill() {
    let app = spawn().await;
    let t = app
        .site_with("www", json!({"session_limit": 3, "over_limit": "evict_dangling", "idle_timeout_seconds": 600}))
        .await;
    app.admit("www", &t, "oldest").await;
    app.advance(100);
    app.admit("www", &t, "older").await;
    app.advance(100);
    app.admit("www", &t, "fresh").await;
    app.advance(500);
    // Now "oldest" (700 s) and "older" (600 s) are dangling; "fresh" (500 s) is live.
    let r = app.admit("www", &t, "new").await;
    assert_eq!(r.body["outcome"], "evicted_dangling", "{}", r.text);
    assert_eq!(r.body["evicted"], json!(["oldest"]));
    let r = app
        .get("/v1/sites/www/sessions?state=ended", &app.admin)
        .await;
    assert_eq!(r.body["items"][0]["session"], "oldest");
    assert_eq!(r.body["items"][0]["end_reason"], "evicted");
    let d = app.get("/v1/sites/www/deliveries", &app.admin).await;
    let kill = d.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "session.kill")
        .expect("a kill push");
    assert_eq!(kill["payload"]["data"]["sessions"], json!(["oldest"]));
    assert_eq!(kill["payload"]["data"]["reason"], "evicted");
    // Next: "older" goes; then nothing is dangling and the site refuses.
    assert_eq!(
        app.admit("www", &t, "new2").await.body["evicted"],
        json!(["older"])
    );
    let r = app.admit("www", &t, "new3").await;
    assert_eq!(r.body["outcome"], "limit_reached");
}

/// Admissions that arrive together are decided together: evictions, repeated
/// sessions and refusals in one burst still add up as if decided one by one.
#[tokio::test]
async fn a_burst_of_evictions_and_repeats_adds_up() {
    let app = spawn().await;
    let t = app
        .site_with(
            "www",
            json!({"session_limit": 5, "over_limit": "evict_dangling", "idle_timeout_seconds": 60}),
        )
        .await;
    for i in 0..5 {
        app.admit("www", &t, &format!("idle{i}")).await;
    }
    app.advance(61);
    // Ten new sessions, each asked for twice, all at once.
    let calls = (0..20).map(|i| {
        let (app, t) = (&app, &t);
        async move {
            let session = format!("new{}", i % 10);
            let r = app.admit("www", t, &session).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            (session, r.body)
        }
    });
    let replies = join_all(calls).await;
    let mut admitted = std::collections::BTreeMap::new();
    let mut evicted = Vec::new();
    for (session, body) in &replies {
        let yes = body["admitted"].as_bool().unwrap();
        // Both requests of a session get the same answer.
        assert_eq!(
            *admitted.entry(session.clone()).or_insert(yes),
            yes,
            "{session}: {body}"
        );
        assert!(body["counted"].as_i64().unwrap() <= 5, "{body}");
        for v in body["evicted"].as_array().unwrap() {
            evicted.push(v.as_str().unwrap().to_owned());
        }
    }
    assert_eq!(admitted.values().filter(|a| **a).count(), 5, "{replies:?}");
    evicted.sort();
    assert_eq!(evicted, ["idle0", "idle1", "idle2", "idle3", "idle4"]);
    let u = app.usage("www").await;
    assert_eq!(u["active"], 5, "{u}");
    assert_eq!(u["dangling"], 0, "{u}");
}

#[tokio::test]
async fn allow_overage_stops_at_the_ceiling_and_marks_overage() {
    let app = spawn().await;
    let t = app
        .site_with(
            "www",
            json!({"session_limit": 4, "over_limit": "allow_overage", "overage_percent": 25}),
        )
        .await;
    let outcomes: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..7 {
            v.push(
                app.admit("www", &t, &format!("s{i}")).await.body["outcome"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        v
    };
    assert_eq!(
        outcomes,
        vec![
            "within_limit",
            "within_limit",
            "within_limit",
            "within_limit",
            "overage",
            "limit_reached",
            "limit_reached"
        ]
    );
}

#[tokio::test]
async fn concurrent_overage_never_passes_the_ceiling() {
    let app = spawn().await;
    let t = app
        .site_with(
            "www",
            json!({"session_limit": 10, "over_limit": "allow_overage", "overage_percent": 20}),
        )
        .await;
    assert_eq!(admitted(&app, "www", &t, "c", 50).await, 12);
}

/// Three headcount processes on one PostgreSQL database, admissions fired at one site
/// through all three: exactly N admitted.
#[tokio::test]
async fn three_processes_on_one_postgres_admit_exactly_n() {
    let Some(_) = crate::helpers::pg_url() else {
        eprintln!("skipped on SQLite: needs HEADCOUNT_TEST_DATABASE_URL (runs in .ci/run)");
        return;
    };
    let a = spawn().await;
    let t = a.site_with("www", json!({"session_limit": 15})).await;
    let b = crate::helpers::spawn_with(crate::helpers::Options {
        database_url: Some(a.database_url.clone()),
        ..Default::default()
    })
    .await;
    let c = crate::helpers::spawn_with(crate::helpers::Options {
        database_url: Some(a.database_url.clone()),
        ..Default::default()
    })
    .await;
    let apps = [&a, &b, &c];
    let calls = (0..75).map(|i| {
        let app = apps[i % 3];
        let t = t.clone();
        async move {
            let r = app
                .post(
                    "/v1/sites/www/admissions",
                    &t,
                    json!({"session": format!("m{i}")}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.body["admitted"].as_bool().unwrap()
        }
    });
    let n = join_all(calls).await.into_iter().filter(|x| *x).count();
    assert_eq!(n, 15);
    assert_eq!(a.usage("www").await["active"], 15);
}
