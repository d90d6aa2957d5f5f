//! Operability: request ids, logs that fit their destination, idempotent control
//! writes (also across two processes on one database), and the business metrics.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Options, Reply, TestApp, free_port, fresh_database, is_problem, spawn, spawn_with,
};
use crate::receiver::Receiver;

// ---------------------------------------------------------------- request ids

#[tokio::test]
async fn every_response_carries_a_request_id_and_problems_quote_it() {
    let app = spawn().await;
    let get = |id: Option<&str>, path: &str| {
        let mut r = app.client.get(format!("{}{path}", app.url));
        if let Some(id) = id {
            r = r.header("X-Request-Id", id);
        }
        r.send()
    };
    // The client's own is echoed.
    let r = get(Some("edge-7f3a:1"), "/healthz").await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "edge-7f3a:1");
    // Otherwise a new one, different each time.
    let mut seen = Vec::new();
    for bad in [None, Some("has space"), Some(&*"x".repeat(129)), Some("")] {
        let r = get(bad, "/healthz").await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(!id.is_empty() && id.len() <= 128 && Some(id.as_str()) != bad);
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        get(Some(&"y".repeat(128)), "/healthz")
            .await
            .unwrap()
            .headers()["x-request-id"],
        &*"y".repeat(128)
    );
    // Problem bodies carry it: a 401 from the extractor, a 404 from the default
    // service, a 400 from a handler.
    for (path, status) in [("/v1/plans", 401), ("/nowhere", 404)] {
        let r = get(Some("trace-me"), path).await.unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["x-request-id"], "trace-me");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["request_id"], "trace-me", "{body}");
    }
    let r = app
        .client
        .post(format!("{}/v1/plans", app.url))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body("{\"code\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());
}

/// Runs the binary with its stderr going to a pipe (not a terminal), sends one
/// request with a known id, stops it and returns what it logged.
async fn logs_of_one_request(format: &str, request_id: &str) -> String {
    let (database_url, data_dir, _guard) = fresh_database().await;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_headcount"))
        .env_remove("DATABASE_URL")
        .env_remove("HEADCOUNT_LISTEN")
        .env("HEADCOUNT_JWT_SECRET", "0123456789abcdef".repeat(4))
        .env("HEADCOUNT_LOG", "info,headcount=debug")
        .env("HEADCOUNT_LOG_FORMAT", format)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database-url")
        .arg(&database_url)
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..400 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "not ready");
    let r = client
        .get(format!("http://127.0.0.1:{port}/v1/plans"))
        .header("X-Request-Id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut s).unwrap();
        child.wait().unwrap();
        s
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn text_logs_have_no_colours_off_a_terminal_and_carry_the_request_id() {
    let logs = logs_of_one_request("text", "log-text-42").await;
    assert!(!logs.contains('\u{1b}'), "ANSI escapes in a pipe:\n{logs}");
    let line = logs
        .lines()
        .find(|l| l.contains("request finished") && l.contains("log-text-42"))
        .unwrap_or_else(|| panic!("no request line in\n{logs}"));
    assert!(line.contains("request_id=log-text-42"), "{line}");
    assert!(line.contains("status=401"), "{line}");
}

#[tokio::test]
async fn json_logs_stay_one_object_a_line_with_the_request_id() {
    let logs = logs_of_one_request("json", "log-json-42").await;
    assert!(!logs.contains('\u{1b}'), "{logs}");
    let mut found = false;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"] == "request finished" && v["span"]["path"] == "/v1/plans" {
            assert_eq!(v["span"]["request_id"], "log-json-42", "{line}");
            assert_eq!(v["fields"]["status"], 401, "{line}");
            found = true;
        }
    }
    assert!(found, "no request line in\n{logs}");
}

// ---------------------------------------------------------------- idempotency

async fn post_keyed(app: &TestApp, path: &str, token: &str, key: &str, body: Value) -> Reply {
    let res = app
        .client
        .post(format!("{}{path}", app.url))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// `v` without the top-level `field`.
fn without(v: &Value, field: &str) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove(field);
    v
}

/// The site's current webhook secret, as headcount keeps it.
async fn stored_webhook_secret(app: &TestApp, slug: &'static str) -> String {
    use diesel::prelude::*;
    use headcount::db::schema::sites::dsl as s;
    app.state
        .db
        .run(move |c| {
            let secret = s::sites
                .filter(s::slug.eq(slug))
                .select(s::webhook_secret)
                .first::<String>(c)?;
            Ok::<_, headcount::db::Error>(secret)
        })
        .await
        .unwrap()
}

/// Every stored answer to an `Idempotency-Key`, each row's columns as text.
async fn stored_answers(app: &TestApp) -> Vec<String> {
    use diesel::prelude::*;
    use headcount::db::schema::idempotency_keys::dsl as k;
    type Row = (
        String,
        String,
        String,
        Option<i64>,
        Option<String>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = app
        .state
        .db
        .run(|c| {
            let rows = k::idempotency_keys
                .select((
                    k::scope,
                    k::idem_key,
                    k::fingerprint,
                    k::status_code,
                    k::content_type,
                    k::body,
                ))
                .load::<Row>(c)?;
            Ok::<_, headcount::db::Error>(rows)
        })
        .await
        .unwrap();
    rows.into_iter()
        .map(|(scope, key, print, status, ct, body)| {
            let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
            format!("{scope} {key} {print} {status:?} {ct:?} {body}")
        })
        .collect()
}

/// Every write whose answer shows a secret or token once, sent with an
/// `Idempotency-Key`: the answer kept in the database holds neither, and the replay
/// shows none and names the request that gets a new one.
#[tokio::test]
async fn stored_answers_hold_no_secret_or_token() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 3})).await;
    let admin = app.admin.clone();
    let tenant_renew = "POST /v1/tenants/t/notify-secret";
    let site_renew = "POST /v1/sites/s/webhook-secret";
    let (tenant, site) = (
        json!({"slug": "t", "name": "T"}),
        json!({"slug": "s", "tenant": "t", "name": "S", "plan": "p"}),
    );
    let mut writes = vec![
        (
            "/v1/tenants",
            admin.clone(),
            tenant,
            "notify_secret",
            tenant_renew,
        ),
        (
            "/v1/sites",
            admin.clone(),
            site,
            "webhook_secret",
            site_renew,
        ),
    ];
    let mut seen = Vec::new();
    for round in 0..2 {
        if round == 1 {
            // The writes a tenant's token may make as well, once the tenant exists.
            let own = app.token("tenant", Some("t"), None).await;
            let rotate = "/v1/sites/s/webhook-secret";
            let notify = "/v1/tenants/t/notify-secret";
            let mint = "/v1/tokens";
            let site_token = json!({"role": "site", "site": "s"});
            writes = vec![
                (
                    rotate,
                    admin.clone(),
                    json!({}),
                    "webhook_secret",
                    site_renew,
                ),
                (rotate, own.clone(), json!({}), "webhook_secret", site_renew),
                (
                    notify,
                    admin.clone(),
                    json!({}),
                    "notify_secret",
                    tenant_renew,
                ),
                (
                    notify,
                    own.clone(),
                    json!({}),
                    "notify_secret",
                    tenant_renew,
                ),
                (
                    mint,
                    admin.clone(),
                    json!({"role": "admin"}),
                    "token",
                    "POST /v1/tokens",
                ),
                (
                    mint,
                    admin.clone(),
                    json!({"role": "tenant", "tenant": "t"}),
                    "token",
                    "POST /v1/tokens",
                ),
                (mint, own.clone(), site_token, "token", "POST /v1/tokens"),
            ];
        }
        for (i, (path, token, body, field, renew)) in writes.iter().enumerate() {
            let key = format!("write-{round}-{i}");
            let first = post_keyed(&app, path, token, &key, body.clone()).await;
            assert!(first.status.is_success(), "{path}: {}", first.text);
            let secret = first.body[field].as_str().unwrap().to_owned();
            assert!(secret.len() > 20, "{path}: {}", first.text);
            seen.push(secret.clone());
            let replay = post_keyed(&app, path, token, &key, body.clone()).await;
            assert_eq!(replay.headers["idempotent-replayed"], "true", "{path}");
            assert_eq!(replay.status, first.status, "{path}");
            assert!(!replay.text.contains(&secret), "{path}: {}", replay.text);
            assert!(!replay.text.contains("whsec_"), "{path}: {}", replay.text);
            assert_eq!(replay.body["withheld"]["field"], *field, "{path}");
            assert_eq!(replay.body["withheld"]["renew"], *renew, "{path}");
            assert!(
                replay.body["withheld"]["detail"]
                    .as_str()
                    .unwrap()
                    .contains("first answer")
            );
            // Everything else is the first answer's.
            assert_eq!(
                without(&replay.body, "withheld"),
                without(&first.body, field)
            );
        }
    }
    // A `v1a` site's answer has a public key, no secret: its replay is the first answer.
    let v1a = json!({"slug": "s2", "tenant": "t", "name": "S2", "plan": "p",
        "signature_scheme": "v1a"});
    let first = post_keyed(&app, "/v1/sites", &admin, "v1a", v1a.clone()).await;
    let replay = post_keyed(&app, "/v1/sites", &admin, "v1a", v1a).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(
        first.body["webhook_public_key"]
            .as_str()
            .unwrap()
            .starts_with("whpk_")
    );
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.text, first.text);

    // Read from the database: no answer kept holds any of them.
    let rows = stored_answers(&app).await;
    assert_eq!(rows.len(), 10);
    for row in &rows {
        assert!(!row.contains("whsec_"), "{row}");
        for secret in &seen {
            assert!(!row.contains(secret.as_str()), "{row}");
        }
    }
    // The renewals the replays name work, for the tenant's own token as well.
    let own = app.token("tenant", Some("t"), None).await;
    for (path, field) in [
        ("/v1/tenants/t/notify-secret", "notify_secret"),
        ("/v1/sites/s/webhook-secret", "webhook_secret"),
    ] {
        let r = app.post(path, &own, json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.body[field].as_str().unwrap().starts_with("whsec_"));
    }
    // Another tenant's token is told the tenant does not exist.
    app.create_tenant("u").await;
    let other = app.token("tenant", Some("u"), None).await;
    let r = app
        .post("/v1/tenants/t/notify-secret", &other, json!({}))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
}

async fn plan_count(app: &TestApp) -> usize {
    let r = app.get("/v1/plans?limit=500", &app.admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_repeated_key_returns_the_first_answer_and_does_nothing_again() {
    let app = spawn().await;
    let plan = json!({"code": "gold", "name": "Gold", "session_limit": 5});
    let first = post_keyed(&app, "/v1/plans", &app.admin, "k-1", plan.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = post_keyed(&app, "/v1/plans", &app.admin, "k-1", plan.clone()).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.text, first.text);
    assert_eq!(again.headers["content-type"], first.headers["content-type"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(plan_count(&app).await, 1);
    // Without the key the same body is a new request: the plan exists.
    assert_eq!(
        app.post("/v1/plans", &app.admin, plan.clone()).await.status,
        409
    );

    // The same key with another body (or path) is refused, naming the header.
    let other = post_keyed(
        &app,
        "/v1/plans",
        &app.admin,
        "k-1",
        json!({"code": "silver", "name": "Silver", "session_limit": 2}),
    )
    .await;
    assert_eq!(other.status, 422, "{}", other.text);
    assert!(is_problem(&other));
    assert_eq!(other.body["errors"][0]["field"], "Idempotency-Key");
    let other = post_keyed(&app, "/v1/tenants", &app.admin, "k-1", plan.clone()).await;
    assert_eq!(other.status, 422, "{}", other.text);
    assert_eq!(plan_count(&app).await, 1);

    // A minted token is minted once: the replay names the same one.
    let t1 = post_keyed(
        &app,
        "/v1/tokens",
        &app.admin,
        "tok",
        json!({"role": "admin"}),
    )
    .await;
    let t2 = post_keyed(
        &app,
        "/v1/tokens",
        &app.admin,
        "tok",
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(t1.status, 201);
    assert_eq!(t1.body["jti"], t2.body["jti"]);

    // A final 4xx is kept as well; a malformed key is a 400 naming the header.
    let bad = json!({"code": "Bad Code", "name": "x", "session_limit": 1});
    let b1 = post_keyed(&app, "/v1/plans", &app.admin, "k-bad", bad.clone()).await;
    let b2 = post_keyed(&app, "/v1/plans", &app.admin, "k-bad", bad.clone()).await;
    assert!(b1.status.is_client_error(), "{}", b1.text);
    assert_eq!((b2.status, &b2.text), (b1.status, &b1.text));
    assert_eq!(b2.headers["idempotent-replayed"], "true");
    let long = "k".repeat(256);
    let r = post_keyed(&app, "/v1/plans", &app.admin, &long, bad).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["field"], "Idempotency-Key");

    // After 24 h the key is forgotten: the request runs again.
    app.advance(24 * 3600 + 1);
    let late = post_keyed(&app, "/v1/plans", &app.admin, "k-1", plan).await;
    assert_eq!(late.status, 409, "{}", late.text);
}

#[tokio::test]
async fn keys_belong_to_the_caller() {
    let app = spawn().await;
    app.create_plan("p", json!({"session_limit": 3})).await;
    app.create_tenant("t1").await;
    app.create_tenant("t2").await;
    app.create_site("s1", "t1", "p", json!({})).await;
    app.create_site("s2", "t2", "p", json!({})).await;
    let t1 = app.token("tenant", Some("t1"), None).await;
    let t2 = app.token("tenant", Some("t2"), None).await;
    // Each tenant rotates its own site's secret with the same key: two rotations, two
    // secrets, although key and body are the same.
    let r1 = post_keyed(
        &app,
        "/v1/sites/s1/webhook-secret",
        &t1,
        "rotate",
        json!({}),
    )
    .await;
    let r2 = post_keyed(
        &app,
        "/v1/sites/s2/webhook-secret",
        &t2,
        "rotate",
        json!({}),
    )
    .await;
    assert!(r1.status.is_success(), "{}", r1.text);
    assert!(r2.status.is_success(), "{}", r2.text);
    assert_ne!(r1.text, r2.text);
    // The other tenant's key does not reveal the first answer: t2 gets its own 404.
    let r = post_keyed(
        &app,
        "/v1/sites/s1/webhook-secret",
        &t2,
        "rotate-x",
        json!({}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // A repeat by t1 returns its first answer, without the secret, and rotates no
    // more: the secret it got first still verifies the site's pushes alone.
    let again = post_keyed(
        &app,
        "/v1/sites/s1/webhook-secret",
        &t1,
        "rotate",
        json!({}),
    )
    .await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        without(&again.body, "withheld"),
        without(&r1.body, "webhook_secret")
    );
    assert_eq!(
        stored_webhook_secret(&app, "s1").await,
        r1.body["webhook_secret"].as_str().unwrap(),
        "rotated once"
    );
    // The agent's endpoints ignore the header: each admission is its own decision.
    let site = app.token("site", None, Some("s1")).await;
    for _ in 0..2 {
        let r = post_keyed(
            &app,
            "/v1/sites/s1/admissions",
            &site,
            "adm",
            json!({"session": "a1"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.headers.get("idempotent-replayed").is_none());
    }
}

/// Two processes on one database (and several requests on each) receive the same
/// key at once: one of them does the work, every answer is that one's.
#[tokio::test]
async fn the_same_key_at_once_on_two_processes_runs_once() {
    let a = spawn().await;
    let b = spawn_with(Options {
        database_url: Some(a.database_url.clone()),
        ..Default::default()
    })
    .await;
    b.clock.set(a.now());
    a.create_plan("p", json!({"session_limit": 3})).await;
    let tenant = json!({"slug": "acme", "name": "Acme"});
    let (a_ref, b_ref, admin) = (&a, &b, a.admin.as_str());
    let calls = (0..8).map(|i| {
        let app = if i % 2 == 0 { a_ref } else { b_ref };
        let body = tenant.clone();
        async move { post_keyed(app, "/v1/tenants", admin, "create-acme", body).await }
    });
    let replies = join_all(calls).await;
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    let in_progress = replies.iter().filter(|r| r.status == 409).count();
    assert!(
        created.len() + in_progress == replies.len(),
        "{:?}",
        replies
            .iter()
            .map(|r| (r.status, &r.text))
            .collect::<Vec<_>>()
    );
    // Every 201 is the one answer: the notify secret handed out once, by the request
    // that ran; the others replay it without the secret.
    assert!(!created.is_empty());
    let (first, replays): (Vec<&Reply>, Vec<&Reply>) = created
        .iter()
        .partition(|r| r.headers.get("idempotent-replayed").is_none());
    assert_eq!(first.len(), 1);
    let replay = without(&first[0].body, "notify_secret");
    assert!(
        replays
            .iter()
            .all(|r| without(&r.body, "withheld") == replay)
    );
    for r in replies.iter().filter(|r| r.status == 409) {
        assert!(r.body["detail"].as_str().unwrap().contains("in progress"));
    }
    let r = a.get("/v1/tenants", &a.admin).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    // Afterwards both processes replay it.
    for app in [&a, &b] {
        let r = post_keyed(app, "/v1/tenants", &a.admin, "create-acme", tenant.clone()).await;
        assert_eq!(without(&r.body, "withheld"), replay);
    }
}

// ---------------------------------------------------------------- metrics

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let r = app.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    r.text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    let a = *after
        .get(series)
        .unwrap_or_else(|| panic!("{series} missing from the scrape"));
    a - before.get(series).copied().unwrap_or(0.0)
}

async fn wait_until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn business_metrics_move_with_the_work() {
    let app = spawn().await;
    let m0 = scrape(&app).await;
    let build_info = format!(
        "headcount_build_info{{version=\"{}\",schema=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        headcount::db::migrations::schema_version()
    );
    for series in [
        "headcount_sessions{state=\"active\"}",
        "headcount_outbox_pending{type=\"session.kill\"}",
        "headcount_deliveries_total{type=\"site.config_changed\",result=\"gone\"}",
        "headcount_admissions_total{outcome=\"pool_limit_reached\"}",
        &build_info,
    ] {
        assert!(m0.contains_key(series), "{series} missing before any work");
    }
    assert!(m0.contains_key("headcount_sampler_last_run_timestamp_seconds"));

    // A site whose first push fails once (retried, then delivered) and one whose
    // receiver is gone (410; the next push is then given up: failed).
    let rx = Receiver::start().await;
    rx.script(&[(500, None)]);
    let gone = Receiver::start().await;
    gone.script(&[(410, None)]);
    app.create_plan("p", json!({"session_limit": 1})).await;
    app.create_plan("q", json!({"session_limit": 4})).await;
    app.create_tenant("t").await;
    let r = app
        .create_site("s", "t", "p", json!({"webhook_url": rx.url}))
        .await;
    rx.trust(r.body["webhook_secret"].as_str().unwrap());
    app.create_site("g", "t", "q", json!({"webhook_url": gone.url}))
        .await;
    let config = "type=\"site.config_changed\"";
    wait_until("a retried and a gone push", async || {
        let m = scrape(&app).await;
        moved(
            &m0,
            &m,
            &format!("headcount_deliveries_total{{{config},result=\"retried\"}}"),
        ) >= 1.0
            && moved(
                &m0,
                &m,
                &format!("headcount_deliveries_total{{{config},result=\"gone\"}}"),
            ) >= 1.0
    })
    .await;
    // The retried push waits for its next attempt: pending, and getting older.
    app.advance(3);
    let m = scrape(&app).await;
    assert!(m[&format!("headcount_outbox_pending{{{config}}}")] >= 1.0);
    assert!(m["headcount_outbox_oldest_pending_seconds"] >= 3.0);
    app.advance(10);
    app.state.outbox_wakeup.notify_one();
    rx.wait_for("the retried push", |r| !r.is_empty()).await;
    app.patch("/v1/plans/q", &app.admin, json!({"session_limit": 5}))
        .await;
    wait_until("a delivered and a failed push", async || {
        let m = scrape(&app).await;
        moved(
            &m0,
            &m,
            &format!("headcount_deliveries_total{{{config},result=\"delivered\"}}"),
        ) >= 1.0
            && moved(
                &m0,
                &m,
                &format!("headcount_deliveries_total{{{config},result=\"failed\"}}"),
            ) >= 1.0
    })
    .await;
    let m = scrape(&app).await;
    assert_eq!(m[&format!("headcount_outbox_pending{{{config}}}")], 0.0);
    assert_eq!(m["headcount_outbox_oldest_pending_seconds"], 0.0);

    // The agent's work: a snapshot, admissions at the limit, events good and bad.
    let site = app.token("site", None, Some("s")).await;
    let m1 = scrape(&app).await;
    let r = app
        .put("/v1/sites/s/sessions", &site, json!({"sessions": []}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.admit("s", &site, "a1").await.body["admitted"], true);
    assert_eq!(app.admit("s", &site, "a2").await.body["admitted"], false);
    let r = app
        .events(
            "s",
            &site,
            json!([
                {"type": "session.started", "session": "e1", "at": app.at(0)},
                {"type": "session.started", "session": "e2", "at": app.at(0)},
                {"type": "session.nonsense", "session": "e3", "at": app.at(0)},
            ]),
        )
        .await;
    assert_eq!(r.body["accepted"], 2, "{}", r.text);
    headcount::jobs::sampler::sample(&app.state).await.unwrap();
    let m2 = scrape(&app).await;
    assert_eq!(moved(&m1, &m2, "headcount_snapshots_total"), 1.0);
    assert_eq!(
        moved(
            &m1,
            &m2,
            "headcount_admissions_total{outcome=\"within_limit\"}"
        ),
        1.0
    );
    assert_eq!(
        moved(
            &m1,
            &m2,
            "headcount_admissions_total{outcome=\"limit_reached\"}"
        ),
        1.0
    );
    assert_eq!(
        moved(&m1, &m2, "headcount_events_total{result=\"accepted\"}"),
        2.0
    );
    assert_eq!(
        moved(&m1, &m2, "headcount_events_total{result=\"rejected\"}"),
        1.0
    );
    assert_eq!(m2["headcount_sessions{state=\"active\"}"], 3.0);
    assert_eq!(m2["headcount_sessions{state=\"live\"}"], 3.0);
    assert_eq!(m2["headcount_sessions{state=\"dangling\"}"], 0.0);
    assert_eq!(m2["headcount_sites_at_limit"], 1.0);
    let sampled = m2["headcount_sampler_last_run_timestamp_seconds"];
    assert!(
        (sampled - app.now().timestamp() as f64).abs() < 2.0,
        "{sampled}"
    );
    assert!(moved(&m1, &m2, "headcount_db_pool_wait_seconds_count") >= 1.0);
    assert!(
        moved(
            &m1,
            &m2,
            "headcount_db_pool_wait_seconds_bucket{le=\"+Inf\"}"
        ) >= 1.0
    );
    // A day later the sessions are dangling (the plan's idle timeout is a day).
    app.advance(86_400 + 60);
    headcount::jobs::sampler::sample(&app.state).await.unwrap();
    let m3 = scrape(&app).await;
    assert_eq!(m3["headcount_sessions{state=\"dangling\"}"], 3.0);
    assert_eq!(m3["headcount_sessions{state=\"live\"}"], 0.0);
}
