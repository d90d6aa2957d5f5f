//! Database outage: PostgreSQL stops under load. headcount answers 503 with
//! `Retry-After` meanwhile (and `/readyz` says not ready), recovers by itself when the
//! database returns, and its pool hands out no dead connections afterwards.
//!
//! It restarts the local PostgreSQL cluster, so it is ignored in the normal run and
//! started on its own by `.ci/run`:
//! `HEADCOUNT_TEST_DATABASE_URL=… cargo test --test api outage -- --ignored`.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{is_problem, pg_url, spawn};

fn cluster(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("a local PostgreSQL cluster");
    let ok = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .status()
        .expect("pg_ctlcluster")
        .success();
    assert!(ok, "pg_ctlcluster {action} failed");
}

#[tokio::test]
#[ignore = "restarts the local PostgreSQL; run by .ci/run on its own"]
async fn postgres_outage_gives_503_then_recovers() {
    assert!(pg_url().is_some(), "needs HEADCOUNT_TEST_DATABASE_URL");
    let app = spawn().await;
    let t = app.site_with("www", json!({"session_limit": 100000})).await;
    for i in 0..20 {
        assert_eq!(
            app.admit("www", &t, &format!("before{i}")).await.body["admitted"],
            true
        );
    }
    cluster("stop");
    let mut unavailable = 0;
    for i in 0..5 {
        let r = app
            .post(
                "/v1/sites/www/admissions",
                &t,
                json!({"session": format!("during{i}")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert!(is_problem(&r));
        assert!(r.headers.contains_key("retry-after"));
        unavailable += 1;
    }
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    cluster("start");
    // Recovers by itself: no restart of headcount.
    let mut recovered = false;
    for _ in 0..120 {
        if app.call("GET", "/readyz", None, None).await.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "headcount did not recover");
    // No dead connections: every request after recovery succeeds.
    for i in 0..50 {
        let r = app
            .post(
                "/v1/sites/www/admissions",
                &t,
                json!({"session": format!("after{i}")}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "request {i} after recovery: {}",
            r.text
        );
    }
    assert_eq!(app.usage("www").await["active"], 70);
    eprintln!(
        "outage: {unavailable} requests answered 503 during the outage; 50 of 50 succeeded after"
    );
}
