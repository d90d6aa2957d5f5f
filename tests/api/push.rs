use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Options, TestApp, spawn, spawn_with};
use crate::receiver::Receiver;

/// A site whose webhook goes to a fresh receiver that trusts its secret.
async fn site_with_receiver(app: &TestApp, slug: &str, plan: &str) -> (Receiver, String) {
    let rx = Receiver::start().await;
    let r = app
        .create_site(slug, "t", plan, json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    let token = app.token("site", None, Some(slug)).await;
    (rx, token)
}

#[tokio::test]
async fn a_plan_edit_reaches_every_site_on_it_with_the_new_version() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_plan("q", json!({"session_limit": 9})).await;
    app.create_tenant("t").await;
    let (rx1, _) = site_with_receiver(&app, "s1", "p").await;
    let (rx2, _) = site_with_receiver(&app, "s2", "p").await;
    let (rx3, _) = site_with_receiver(&app, "s3", "q").await;
    for rx in [&rx1, &rx2, &rx3] {
        rx.wait_for("the initial config", |r| {
            r.iter().any(|m| m.body["data"]["config_version"] == 1)
        })
        .await;
    }
    app.patch("/v1/plans/p", &app.admin, json!({"session_limit": 6}))
        .await;
    for rx in [&rx1, &rx2] {
        let got = rx
            .wait_for("config version 2", |r| {
                r.iter().any(|m| m.body["data"]["config_version"] == 2)
            })
            .await;
        let m = got
            .iter()
            .find(|m| m.body["data"]["config_version"] == 2)
            .unwrap();
        assert!(m.signature_ok);
        assert_eq!(m.body["type"], "site.config_changed");
        assert_eq!(m.body["data"]["session_limit"], 6);
        assert_eq!(m.body["data"]["count_mode"], "active");
        assert!(m.webhook_id.starts_with("msg_"));
    }
    // The site on the other plan got nothing new.
    assert_eq!(rx3.of_type("site.config_changed").len(), 1);
    assert!(rx1.received().iter().all(|m| m.signature_ok));
}

#[tokio::test]
async fn a_kill_reaches_the_site() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let (rx, token) = site_with_receiver(&app, "s", "p").await;
    app.admit("s", &token, "abc").await;
    assert_eq!(
        app.delete("/v1/sites/s/sessions/abc", &app.admin)
            .await
            .status,
        StatusCode::OK
    );
    let got = rx
        .wait_for("the kill", |r| {
            r.iter().any(|m| m.body["type"] == "session.kill")
        })
        .await;
    let kill = got
        .iter()
        .find(|m| m.body["type"] == "session.kill")
        .unwrap();
    assert_eq!(
        kill.body["data"],
        json!({"site": "s", "sessions": ["abc"], "reason": "killed"})
    );
    let k = wait_status(&app, "s", "session.kill", "delivered").await;
    assert_eq!(k["attempts"][0]["status_code"], 200);
}

async fn wait_status(app: &TestApp, site: &str, kind: &str, status: &str) -> serde_json::Value {
    for _ in 0..600 {
        let d = app
            .get(&format!("/v1/sites/{site}/deliveries"), &app.admin)
            .await;
        if let Some(x) = d.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["type"] == kind && x["status"] == status)
        {
            return x.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no {kind} delivery became {status}");
}

async fn attempts(app: &TestApp, site: &str, kind: &str, n: usize) -> serde_json::Value {
    for _ in 0..600 {
        let d = app
            .get(&format!("/v1/sites/{site}/deliveries"), &app.admin)
            .await;
        if let Some(x) = d.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["type"] == kind)
            && x["attempts"].as_array().unwrap().len() >= n
        {
            return x.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{kind} never reached {n} attempts");
}

#[tokio::test]
async fn a_failing_receiver_gets_the_push_on_a_later_attempt() {
    let app = spawn_with(Options {
        retry_schedule: "0s,5s,5m",
        ..Default::default()
    })
    .await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let rx = Receiver::start().await;
    rx.script(&[(500, None), (502, None)]);
    let r = app
        .create_site("s", "t", "p", json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    let d = attempts(&app, "s", "site.config_changed", 1).await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["attempts"][0]["status_code"], 500);
    // The next attempt is due 5 s later (plus jitter) on the injected clock.
    app.advance(6);
    attempts(&app, "s", "site.config_changed", 2).await;
    app.advance(330);
    let d = wait_status(&app, "s", "site.config_changed", "delivered").await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(rx.of_type("site.config_changed").len(), 1);
}

#[tokio::test]
async fn an_exhausted_push_fails_and_can_be_retried_by_hand() {
    let app = spawn_with(Options {
        retry_schedule: "0s",
        ..Default::default()
    })
    .await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let rx = Receiver::start().await;
    rx.script(&[(500, None)]);
    let r = app
        .create_site("s", "t", "p", json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    let d = wait_status(&app, "s", "site.config_changed", "failed").await;
    let id = d["id"].as_i64().unwrap();
    let r = app
        .post(&format!("/v1/deliveries/{id}/retry"), &app.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_status(&app, "s", "site.config_changed", "delivered").await;
    let r = app
        .post(&format!("/v1/deliveries/{id}/retry"), &app.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn gone_disables_the_webhook_until_the_url_is_set_again() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let rx = Receiver::start().await;
    rx.script(&[(410, None)]);
    let r = app
        .create_site("s", "t", "p", json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    wait_status(&app, "s", "site.config_changed", "failed").await;
    let s = app.get("/v1/sites/s", &app.admin).await;
    assert!(s.body["webhook_disabled_at"].is_string(), "{}", s.text);
    let s = app
        .patch("/v1/sites/s", &app.admin, json!({"webhook_url": rx.url}))
        .await;
    assert!(s.body["webhook_disabled_at"].is_null());
    wait_status(&app, "s", "site.config_changed", "delivered").await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = spawn_with(Options {
        retry_schedule: "0s,1s,1s",
        ..Default::default()
    })
    .await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let rx = Receiver::start().await;
    rx.script(&[(429, Some(120))]);
    let r = app
        .create_site("s", "t", "p", json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    let d = attempts(&app, "s", "site.config_changed", 1).await;
    let next =
        chrono::DateTime::parse_from_rfc3339(d["next_attempt_at"].as_str().unwrap()).unwrap();
    let wait = next.timestamp() - app.now().timestamp();
    assert!((119..=121).contains(&wait), "next attempt in {wait} s: {d}");
    // Not sent before the receiver's time, sent after it.
    app.advance(60);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(rx.of_type("site.config_changed").is_empty());
    app.advance(61);
    wait_status(&app, "s", "site.config_changed", "delivered").await;
}

#[tokio::test]
async fn superseded_configs_are_not_sent() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    // No URL yet: config pushes queue up without being sent.
    app.create_site("s", "t", "p", json!({})).await;
    for limit in [1, 2, 3] {
        app.patch("/v1/sites/s", &app.admin, json!({"session_limit": limit}))
            .await;
    }
    let d = app
        .get("/v1/sites/s/deliveries?status=superseded", &app.admin)
        .await;
    assert_eq!(d.body["items"].as_array().unwrap().len(), 2, "{}", d.text);
    let rx = Receiver::start().await;
    let r = app
        .post("/v1/sites/s/webhook-secret", &app.admin, json!({}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    app.patch("/v1/sites/s", &app.admin, json!({"webhook_url": rx.url}))
        .await;
    let got = rx.wait_for("the newest config", |r| !r.is_empty()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let versions: Vec<i64> = rx
        .of_type("site.config_changed")
        .iter()
        .map(|m| m.body["data"]["config_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![4], "{got:?}");
}

#[tokio::test]
async fn pending_pushes_survive_a_restart() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let rx = Receiver::start().await;
    // The receiver is down: the push stays pending.
    rx.script(&[(503, None)]);
    let r = app
        .create_site("s", "t", "p", json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    attempts(&app, "s", "site.config_changed", 1).await;
    // A new process on the same database picks the push up and delivers it.
    let again = app.restart(Options::default()).await;
    again.advance(10);
    rx.wait_for("the push after the restart", |r| {
        r.iter()
            .any(|m| m.signature_ok && m.body["type"] == "site.config_changed")
    })
    .await;
    wait_status(&again, "s", "site.config_changed", "delivered").await;
}

#[tokio::test]
async fn rotation_signs_with_both_secrets() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let rx = Receiver::start().await;
    let r = app
        .create_site("s", "t", "p", json!({"webhook_url": rx.url}))
        .await;
    let old = r.body["webhook_secret"].as_str().unwrap().to_owned();
    rx.wait_for("first push", |r| !r.is_empty()).await;
    app.post("/v1/sites/s/webhook-secret", &app.admin, json!({}))
        .await;
    // A receiver that still only knows the old secret accepts the next push.
    rx.trust(&old);
    app.patch("/v1/sites/s", &app.admin, json!({"session_limit": 2}))
        .await;
    rx.wait_for("a push after rotation, verified with the old secret", |r| {
        r.iter()
            .any(|m| m.signature_ok && m.body["data"]["session_limit"] == 2)
    })
    .await;
}

#[tokio::test]
async fn tenants_get_threshold_alerts() {
    let app = spawn().await;
    let rx = Receiver::start().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    let t = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "t", "name": "T", "notify_url": rx.url}),
        )
        .await;
    rx.trust(t.body["notify_secret"].as_str().unwrap());
    app.create_site("s", "t", "p", json!({})).await;
    let token = app.token("site", None, Some("s")).await;
    for i in 0..6 {
        app.admit("s", &token, &format!("x{i}")).await;
    }
    let got = rx
        .wait_for("both alerts", |r| {
            r.iter().any(|m| m.body["type"] == "site.utilization_high")
                && r.iter().any(|m| m.body["type"] == "site.limit_reached")
        })
        .await;
    let high = got
        .iter()
        .find(|m| m.body["type"] == "site.utilization_high")
        .unwrap();
    assert_eq!(high.body["data"]["counted"], 4);
    assert_eq!(rx.of_type("site.utilization_high").len(), 1);
}

/// After `POST /v1/tenants/{slug}/notify-secret` the tenant's alerts are signed with
/// the new secret (and no longer with the one shown at creation).
#[tokio::test]
async fn a_rotated_notify_secret_signs_the_alerts() {
    let app = spawn().await;
    let rx = Receiver::start().await;
    app.create_plan("p", json!({"session_limit": 1})).await;
    let t = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "t", "name": "T", "notify_url": rx.url}),
        )
        .await;
    let old = t.body["notify_secret"].as_str().unwrap().to_owned();
    let own = app.token("tenant", Some("t"), None).await;
    let r = app
        .post("/v1/tenants/t/notify-secret", &own, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let new = r.body["notify_secret"].as_str().unwrap();
    assert!(new.starts_with("whsec_") && new != old, "{}", r.text);
    rx.trust(new);
    app.create_site("s", "t", "p", json!({})).await;
    let token = app.token("site", None, Some("s")).await;
    app.admit("s", &token, "a").await;
    app.admit("s", &token, "b").await;
    let got = rx
        .wait_for("the limit alert", |r| {
            r.iter().any(|m| m.body["type"] == "site.limit_reached")
        })
        .await;
    assert!(got.iter().all(|m| m.signature_ok), "{got:?}");
    let audit = app.get("/v1/audit", &app.admin).await;
    assert!(audit.text.contains("rotate_secret"), "{}", audit.text);
}

/// Alert rows of `kind` still waiting to be sent, read from the database.
async fn pending_pushes(app: &TestApp, kind: &'static str) -> i64 {
    use diesel::prelude::*;
    use headcount::db::schema::outbox::dsl as o;
    app.state
        .db
        .run(move |c| {
            let n = o::outbox
                .filter(o::kind.eq(kind))
                .filter(o::status.eq("pending"))
                .count()
                .get_result::<i64>(c)?;
            Ok::<_, headcount::db::Error>(n)
        })
        .await
        .unwrap()
}

/// Waits (bounded) until every queued push of `kind` has been sent.
async fn all_sent(app: &TestApp, kind: &'static str) {
    for _ in 0..600 {
        if pending_pushes(app, kind).await == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{kind} pushes still pending");
}

/// A site dates the refusals it reports itself, but the alert they raise is paced by
/// headcount's clock: six refusals dated 61 minutes apart (and one dated ahead), sent
/// at once, raise one `site.limit_reached` for the tenant and one for the provider.
/// An hour later by headcount's clock the next refusal raises the next one.
#[tokio::test]
async fn site_dated_refusals_raise_one_limit_alert_an_hour() {
    let provider = Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
    provider.trust(&secret);
    let app = spawn_with(Options {
        provider_notify: Some((provider.url.clone(), secret)),
        ..Default::default()
    })
    .await;
    let rx = Receiver::start().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    let t = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "t", "name": "T", "notify_url": rx.url}),
        )
        .await;
    rx.trust(t.body["notify_secret"].as_str().unwrap());
    app.create_site("s", "t", "p", json!({})).await;
    let token = app.token("site", None, Some("s")).await;
    let refuse = |id: String, at: String| {
        let (app, token) = (&app, &token);
        async move {
            let e = json!([{"id": id, "type": "session.refused", "at": at, "user": "u"}]);
            let r = app.events("s", token, e).await;
            assert_eq!(r.body["accepted"], 1, "{}", r.text);
        }
    };
    // Oldest first, each 61 minutes after the one before; then one 4 minutes ahead.
    let first = app.at(-6 * 61 * 60);
    for i in (1..=6).rev() {
        refuse(format!("back-{i}"), app.at(-i * 61 * 60)).await;
    }
    refuse("ahead".to_owned(), app.at(4 * 60)).await;
    all_sent(&app, "site.limit_reached").await;
    for (who, r) in [("tenant", &rx), ("provider", &provider)] {
        let got = r.of_type("site.limit_reached");
        assert_eq!(got.len(), 1, "{who}: {got:?}");
        // The alert still describes the refusal that raised it, dated as the site said.
        let data = &got[0].body["data"];
        assert_eq!((&data["site"], &data["tenant"]), (&json!("s"), &json!("t")));
        assert_eq!(data["session_limit"], 5);
        let stamp = |v: &str| chrono::DateTime::parse_from_rfc3339(v).unwrap();
        let at = got[0].body["timestamp"].as_str().unwrap();
        assert_eq!(stamp(at), stamp(&first), "{who}");
    }

    // Within the hour, by headcount's clock, nothing more.
    app.advance(59 * 60);
    refuse("later".to_owned(), app.at(0)).await;
    all_sent(&app, "site.limit_reached").await;
    assert_eq!(rx.of_type("site.limit_reached").len(), 1);
    assert_eq!(provider.of_type("site.limit_reached").len(), 1);
    // An hour after the first alert, the next refusal raises the next one.
    app.advance(60);
    refuse("next".to_owned(), app.at(-30)).await;
    all_sent(&app, "site.limit_reached").await;
    assert_eq!(rx.of_type("site.limit_reached").len(), 2);
    assert_eq!(provider.of_type("site.limit_reached").len(), 2);
}

/// Pushes per second to a local receiver: a plan edit fans out to every site on it.
/// A measurement, not a check of speed: `cargo test --release --test api push_rate -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement; run by hand"]
async fn push_rate() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let rx = Receiver::start().await;
    let n = 500;
    for i in 0..n {
        let r = app
            .create_site(
                &format!("s{i}"),
                "t",
                "p",
                json!({"webhook_url": format!("{}/s{i}", rx.url)}),
            )
            .await;
        rx.trust(r.body["webhook_secret"].as_str().unwrap());
    }
    rx.wait_for("the initial configs", |r| r.len() >= n).await;
    let started = std::time::Instant::now();
    app.patch("/v1/plans/p", &app.admin, json!({"session_limit": 6}))
        .await;
    rx.wait_for("every site's new config", |r| {
        r.iter()
            .filter(|m| m.body["data"]["config_version"] == 2)
            .count()
            >= n
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    assert!(rx.received().iter().all(|m| m.signature_ok));
    eprintln!(
        "pushes: {n} signed config pushes delivered in {secs:.2} s = {:.0} pushes/s",
        n as f64 / secs
    );
}

/// `signature_scheme: v1a`: pushes are signed with ed25519 and verify with the public
/// key alone, checked by an independent implementation; rotation keeps the scheme.
#[tokio::test]
async fn v1a_pushes_verify_with_the_public_key_alone() {
    let app = spawn().await;
    let rx = Receiver::start().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let r = app
        .create_site(
            "s",
            "t",
            "p",
            json!({"webhook_url": rx.url, "signature_scheme": "v1a"}),
        )
        .await;
    assert!(r.body.get("webhook_secret").is_none(), "{}", r.text);
    let pk = r.body["webhook_public_key"].as_str().unwrap().to_owned();
    assert!(pk.starts_with("whpk_"), "{pk}");
    assert_eq!(r.body["signature_scheme"], "v1a");
    // Before the key is trusted nothing verifies; with it, the push does.
    rx.wait_for("the first push", |m| !m.is_empty()).await;
    assert!(!rx.received()[0].signature_ok);
    rx.trust(&pk);
    assert!(rx.received()[0].signature_ok);
    assert_eq!(rx.of_type("site.config_changed").len(), 1);
    // A v1 secret would not verify it either.
    let view = app.get("/v1/sites/s", &app.admin).await;
    assert_eq!(view.body["webhook_public_key"], pk.as_str());

    let r = app
        .post("/v1/sites/s/webhook-secret", &app.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let new_pk = r.body["webhook_public_key"].as_str().unwrap().to_owned();
    assert_ne!(new_pk, pk);
    assert!(r.body.get("webhook_secret").is_none());
    let fresh = Receiver::start().await;
    fresh.trust(&new_pk);
    let r = app
        .patch(
            "/v1/sites/s",
            &app.admin,
            json!({"webhook_url": fresh.url, "limit_message": "full"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = fresh
        .wait_for("a push signed by the new key", |m| {
            m.iter()
                .any(|x| x.signature_ok && x.body["type"] == "site.config_changed")
        })
        .await;
    assert!(got.iter().all(|x| x.signature_ok));
    // A v1 site is unchanged: whsec_ secret, v1 signatures.
    let r = app.create_site("v1site", "t", "p", json!({})).await;
    assert!(
        r.body["webhook_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    assert_eq!(r.body["signature_scheme"], "v1");
    let r = app
        .post(
            "/v1/sites",
            &app.admin,
            json!({"slug": "bad", "tenant": "t", "name": "b", "plan": "p", "signature_scheme": "v2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["field"], "signature_scheme");
}

/// Sites whose webhooks go to their own fresh receivers, each answering its first
/// push with a 500, so that the retries of all of them fall due together when the
/// clock moves on.
async fn sites_failing_once(app: &TestApp, n: usize) -> Vec<Receiver> {
    let mut rxs = Vec::new();
    for i in 0..n {
        let rx = Receiver::start().await;
        rx.script(&[(500, None)]);
        let r = app
            .create_site(&format!("s{i}"), "t", "p", json!({"webhook_url": rx.url}))
            .await;
        rx.trust(r.body["webhook_secret"].as_str().unwrap());
        rxs.push(rx);
    }
    for i in 0..n {
        attempts(app, &format!("s{i}"), "site.config_changed", 1).await;
    }
    rxs
}

/// One site's receiver holds its push (as an agent that answers only at the
/// timeout does) while the retries of twenty other sites fall due in the same
/// instant: those are sent and recorded as delivered while the slow one is still
/// held, so it holds up neither the batch it was claimed with nor later claims.
#[tokio::test]
async fn a_slow_receiver_holds_up_only_its_own_pushes() {
    let app = spawn_with(Options {
        retry_schedule: "0s,5s,5m",
        ..Default::default()
    })
    .await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let rxs = sites_failing_once(&app, 21).await;
    let slow = &rxs[0];
    slow.hold(std::time::Duration::from_secs(60));
    app.advance(6);
    slow.wait_held("the slow site's retry", 1).await;
    for (i, rx) in rxs.iter().enumerate().skip(1) {
        let d = wait_status(&app, &format!("s{i}"), "site.config_changed", "delivered").await;
        assert_eq!(d["attempts"].as_array().unwrap().len(), 2, "{d}");
        assert_eq!(rx.of_type("site.config_changed").len(), 1);
    }
    // All twenty were recorded while the slow push was still in flight.
    assert_eq!(slow.held().0, 1);
    let d = app.get("/v1/sites/s0/deliveries", &app.admin).await;
    let slow_push = &d.body["items"][0];
    assert_eq!(slow_push["status"], "pending", "{slow_push}");
    assert_eq!(slow_push["attempts"].as_array().unwrap().len(), 1);
    slow.open();
    let d = wait_status(&app, "s0", "site.config_changed", "delivered").await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(slow.of_type("site.config_changed").len(), 1);
}

/// Sites that share one server (one host and port, different paths) share its
/// bound: however many of their pushes are due, at most four are in flight to it.
#[tokio::test]
async fn a_receiver_gets_at_most_four_pushes_at_once() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 5})).await;
    app.create_tenant("t").await;
    let rx = Receiver::start().await;
    rx.hold(std::time::Duration::from_secs(60));
    let n = 12;
    for i in 0..n {
        let r = app
            .create_site(
                &format!("s{i}"),
                "t",
                "p",
                json!({"webhook_url": format!("{}/s{i}", rx.url)}),
            )
            .await;
        rx.trust(r.body["webhook_secret"].as_str().unwrap());
    }
    rx.wait_held("four pushes at once", 4).await;
    // As each held push is let through, its place goes to the next one, never more.
    for _ in 0..n {
        rx.let_one_through();
    }
    rx.wait_for("every site's config", |r| r.len() >= n).await;
    for i in 0..n {
        wait_status(&app, &format!("s{i}"), "site.config_changed", "delivered").await;
    }
    assert_eq!(rx.held(), (0, 4));
    assert!(rx.received().iter().all(|m| m.signature_ok));
}
