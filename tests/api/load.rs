//! A short, bounded run of the load generator against a test server: it creates its
//! own plan, tenant and sites through the API, and every request must succeed. No
//! timing is asserted.

use std::time::Duration;

use headcount::load::{Options, Scenario, run_scenario};

use crate::helpers::spawn;

fn options(url: &str, admin: &str, scenario: Scenario, requests: u64) -> Options {
    Options {
        requests: Some(requests),
        duration: Some(Duration::from_secs(60)),
        concurrency: 4,
        sites: 2,
        sessions: 20,
        batch: 50,
        ..Options::new(url, Some(admin.to_owned()), scenario)
    }
}

#[tokio::test]
async fn the_load_generator_drives_every_request_scenario_without_errors() {
    let app = spawn().await;
    for scenario in [
        Scenario::Healthz,
        Scenario::IngestBatch,
        Scenario::IngestSingle,
        Scenario::Admission,
        Scenario::Usage,
        Scenario::Mixed,
    ] {
        let s = run_scenario(options(&app.url, &app.admin, scenario, 200))
            .await
            .unwrap_or_else(|e| panic!("{scenario:?}: {e}"));
        assert_eq!(s.requests, 200, "{scenario:?}: {}", s.table());
        assert_eq!(s.errors, 0, "{scenario:?}: {}", s.table());
        assert!(s.p50_ms <= s.p99_ms && s.p99_ms <= s.max_ms);
        if matches!(scenario, Scenario::IngestBatch | Scenario::IngestSingle) {
            assert!(s.events >= 200, "{scenario:?}: {}", s.table());
        }
    }
}

#[tokio::test]
async fn the_site_simulator_verifies_every_push_it_receives() {
    let app = spawn().await;
    let s = run_scenario(options(&app.url, &app.admin, Scenario::Simulate, 200))
        .await
        .expect("simulate");
    assert_eq!(s.errors, 0, "{}", s.table());
    let sim = s.simulate.clone().expect("a simulate report");
    assert!(sim.logins > 0 && sim.admitted > 0, "{}", s.table());
    assert_eq!(sim.pushes_bad_signature, 0, "{}", s.table());
    // The limit changes made mid-run reach the receiver, signed.
    assert!(sim.config_changes > 0, "{}", s.table());
    assert!(sim.pushes_verified >= sim.config_changes, "{}", s.table());
}

#[tokio::test]
async fn admissions_run_on_a_site_that_already_holds_other_active_sessions() {
    let app = spawn().await;
    let s = run_scenario(Options {
        sites: 1,
        background_active: 200,
        ..options(&app.url, &app.admin, Scenario::Admission, 100)
    })
    .await
    .expect("admission with other sessions");
    assert_eq!(s.requests, 100, "{}", s.table());
    assert_eq!(s.errors, 0, "{}", s.table());
    // The limit makes room for the other sessions: every admission is admitted.
    assert_eq!(s.refused, 0, "{}", s.table());
    // The site holds the 200 others, still active, beside the admitted part of the pool.
    let usage: serde_json::Value = app
        .client
        .get(format!("{}/v1/sites/{}-s0/usage", app.url, s.prefix))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active = usage["active"].as_i64().unwrap_or_default();
    assert!((201..=220).contains(&active), "{usage}");
    assert_eq!(usage["session_limit"], 220, "{usage}");
}

#[tokio::test]
async fn a_plan_edit_reaches_every_site_of_the_plan_signed() {
    let app = spawn().await;
    let s = run_scenario(Options {
        sites: 20,
        ..options(&app.url, &app.admin, Scenario::PlanEdit, 1)
    })
    .await
    .expect("plan-edit");
    assert_eq!(s.requests, 1, "{}", s.table());
    assert_eq!(s.errors, 0, "{}", s.table());
    let p = s.plan_edit.clone().expect("a plan-edit report");
    assert_eq!(p.pushes_expected, 20, "{}", s.table());
    assert_eq!(p.pushes_delivered, 20, "{}", s.table());
    assert_eq!(p.creation_pushes, 20, "{}", s.table());
    assert_eq!(p.pushes_bad_signature, 0, "{}", s.table());
    assert!(p.patch_ms > 0.0 && p.delivered_ms > 0.0, "{}", s.table());
    assert!(s.table().contains("20 of 20 sites"), "{}", s.table());
}
