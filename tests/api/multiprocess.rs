//! Three headcount processes on one PostgreSQL database under mixed load: no
//! over-admission, each push delivered once, usage samples not duplicated.

use std::collections::HashMap;

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{Options, pg_url, spawn, spawn_with};
use crate::receiver::Receiver;

#[tokio::test]
async fn three_processes_share_admissions_pushes_and_samples() {
    if pg_url().is_none() {
        eprintln!(
            "skipped on SQLite: several processes share a PostgreSQL database (runs in .ci/run)"
        );
        return;
    }
    let a = spawn().await;
    let same_db = || Options {
        database_url: Some(a.database_url.clone()),
        ..Default::default()
    };
    let b = spawn_with(same_db()).await;
    let c = spawn_with(same_db()).await;
    // One clock reading for all three, so that they sample the same minute.
    b.clock.set(a.now());
    c.clock.set(a.now());
    let apps = [&a, &b, &c];
    a.create_plan("p", json!({"session_limit": 10})).await;
    a.create_tenant("t").await;
    let mut receivers = Vec::new();
    for i in 0..6 {
        let rx = Receiver::start().await;
        let r = a
            .create_site(&format!("s{i}"), "t", "p", json!({"webhook_url": rx.url}))
            .await;
        rx.trust(r.body["webhook_secret"].as_str().unwrap());
        receivers.push(rx);
    }
    let mut tokens = Vec::new();
    for i in 0..6 {
        tokens.push(a.token("site", None, Some(&format!("s{i}"))).await);
    }
    // Mixed load through all three: admissions on every site, events, reads.
    let calls = (0..180).map(|i| {
        let app = apps[i % 3];
        // Admissions go to s0..s2 (30 each against a limit of 10), events to s3..s5:
        // events report sessions as they are and are no admissions.
        let site = if i % 4 == 2 { 3 + i % 3 } else { i % 3 };
        let token = tokens[site].clone();
        let site_slug = format!("s{site}");
        async move {
            match i % 4 {
                0 | 1 => {
                    let r = app
                        .post(&format!("/v1/sites/s{site}/admissions"), &token, json!({"session": format!("m{i}")}))
                        .await;
                    assert_eq!(r.status, 200, "{}", r.text);
                    (site, r.body["admitted"] == true)
                }
                2 => {
                    let r = app
                        .events(&site_slug, &token, json!([{"type": "session.started", "session": format!("e{i}"), "at": app.at(0)}]))
                        .await;
                    assert_eq!(r.status, 200, "{}", r.text);
                    (site, false)
                }
                _ => {
                    let r = app.get("/v1/usage", &app.admin).await;
                    assert_eq!(r.status, 200);
                    (site, false)
                }
            }
        }
    });
    let mut admitted = [0usize; 6];
    for (site, ok) in join_all(calls).await {
        admitted[site] += usize::from(ok);
    }
    assert_eq!(admitted, [10, 10, 10, 0, 0, 0]);
    for i in 0..3 {
        assert_eq!(a.usage(&format!("s{i}")).await["active"], 10);
    }
    // A plan edit: one config push per site, each delivered once although three
    // senders share the outbox.
    a.patch("/v1/plans/p", &a.admin, json!({"session_limit": 11}))
        .await;
    for rx in &receivers {
        rx.wait_for("config version 2", |r| {
            r.iter().any(|m| m.body["data"]["config_version"] == 2)
        })
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for rx in &receivers {
        let mut per_id: HashMap<String, usize> = HashMap::new();
        for m in rx.received() {
            assert!(m.signature_ok);
            *per_id.entry(m.webhook_id).or_default() += 1;
        }
        assert!(
            per_id.values().all(|n| *n == 1),
            "a push was delivered twice: {per_id:?}"
        );
        assert_eq!(rx.of_type("site.config_changed").len(), 2);
    }
    // All three sample the same minute: one row per site.
    for app in apps {
        headcount::jobs::sampler::sample(&app.state).await.unwrap();
    }
    let rows = a
        .state
        .db
        .run(|c| {
            use diesel::prelude::*;
            use headcount::db::schema::usage_samples::dsl as us;
            Ok::<_, headcount::db::Error>(us::usage_samples.count().get_result::<i64>(c)?)
        })
        .await
        .unwrap();
    assert_eq!(rows, 6);
}
