//! Crash durability: headcount is killed with SIGKILL at random moments while it
//! ingests events, admits sessions and records kills; after each restart every
//! acknowledged event, admission and push must be there.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::helpers::fresh_database;

const JWT_SECRET: &str = "crash-test-signing-key-0123456789abcdef";

struct Server {
    child: Child,
    url: String,
}

fn start(database_url: &str, data_dir: &std::path::Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_headcount"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database-url")
        .arg(database_url)
        .arg("--data-dir")
        .arg(data_dir)
        .env("HEADCOUNT_JWT_SECRET", JWT_SECRET)
        .env("HEADCOUNT_LOG", "warn")
        .env_remove("HEADCOUNT_RATE_LIMIT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start headcount");
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn ready(client: &reqwest::Client, url: &str) {
    for _ in 0..400 {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("headcount did not become ready");
}

fn admin_token() -> String {
    let keys = headcount::auth::Keys::from_secret(&headcount::config::Secret::new(JWT_SECRET));
    let c = headcount::auth::claims(
        headcount::auth::Role::Admin,
        None,
        None,
        None,
        chrono::Utc::now().timestamp_millis(),
        3600,
    );
    keys.mint(&c).unwrap()
}

async fn post(client: &reqwest::Client, url: &str, token: &str, body: Value) -> Option<Value> {
    let r = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

#[derive(Default)]
struct Acked {
    events: HashSet<String>,
    admitted: HashSet<String>,
    killed: HashSet<String>,
}

/// Every item of a paginated list.
async fn all_items(client: &reqwest::Client, token: &str, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut page_url = format!("{url}{sep}limit=500");
        if let Some(c) = &cursor {
            page_url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(&page_url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Kill rounds: 10 in the test suite; `HEADCOUNT_CRASH_ROUNDS` runs a longer version.
#[tokio::test]
async fn acknowledged_work_survives_sigkill() {
    let rounds: usize = std::env::var("HEADCOUNT_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let (database_url, data_dir, _guard) = fresh_database().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let admin = admin_token();
    let mut server = start(&database_url, &data_dir);
    ready(&client, &server.url).await;
    let u = &server.url;
    for (path, body) in [
        (
            "/v1/plans",
            json!({"code": "p", "name": "P", "session_limit": 1000000}),
        ),
        ("/v1/tenants", json!({"slug": "t", "name": "T"})),
        (
            "/v1/sites",
            json!({"slug": "s", "tenant": "t", "name": "S", "plan": "p", "webhook_url": "http://127.0.0.1:9/unreachable"}),
        ),
    ] {
        post(&client, &format!("{u}{path}"), &admin, body)
            .await
            .expect(path);
    }
    let site = post(
        &client,
        &format!("{u}/v1/tokens"),
        &admin,
        json!({"role": "site", "site": "s"}),
    )
    .await
    .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..rounds {
        let url = server.url.clone();
        let mut workers = Vec::new();
        for w in 0..4 {
            let (client, url, site, admin, acked) = (
                client.clone(),
                url.clone(),
                site.clone(),
                admin.clone(),
                acked.clone(),
            );
            workers.push(tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("r{round}w{w}i{i}");
                    let at = chrono::Utc::now().to_rfc3339();
                    match i % 3 {
                        0 => {
                            let events: Vec<Value> = (0..20)
                                .map(|k| json!({"type": "session.started", "session": format!("{id}e{k}"), "at": at}))
                                .collect();
                            let r = post(&client, &format!("{url}/v1/sites/s/events"), &site, json!({"events": events})).await;
                            let Some(r) = r else { return };
                            assert_eq!(r["accepted"], 20);
                            let mut g = acked.lock().unwrap();
                            g.events.extend((0..20).map(|k| format!("{id}e{k}")));
                        }
                        1 => {
                            let r = post(&client, &format!("{url}/v1/sites/s/admissions"), &site, json!({"session": format!("{id}a")})).await;
                            let Some(r) = r else { return };
                            if r["admitted"] == true {
                                acked.lock().unwrap().admitted.insert(format!("{id}a"));
                            }
                        }
                        _ => {
                            let victim = format!("r{round}w{w}i{}a", i - 1);
                            let r = client
                                .delete(format!("{url}/v1/sites/s/sessions/{victim}"))
                                .bearer_auth(&admin)
                                .send()
                                .await;
                            let Ok(r) = r else { return };
                            if r.status().is_success() {
                                acked.lock().unwrap().killed.insert(victim);
                            }
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        server.child.kill().expect("SIGKILL");
        server.child.wait().unwrap();
        for w in workers {
            let _ = w.await;
        }
        server = start(&database_url, &data_dir);
        ready(&client, &server.url).await;
    }
    // Everything acknowledged is there.
    let u = &server.url;
    let mut seen: HashSet<String> = HashSet::new();
    let mut ended: HashSet<String> = HashSet::new();
    for row in all_items(
        &client,
        &admin,
        &format!("{u}/v1/sites/s/sessions?state=all"),
    )
    .await
    {
        let s = row["session"].as_str().unwrap().to_owned();
        if row["end_reason"] == "killed" {
            ended.insert(s.clone());
        }
        seen.insert(s);
    }
    let mut pushed: HashSet<String> = HashSet::new();
    for d in all_items(&client, &admin, &format!("{u}/v1/sites/s/deliveries")).await {
        if d["type"] == "session.kill" {
            for s in d["payload"]["data"]["sessions"].as_array().unwrap() {
                pushed.insert(s.as_str().unwrap().to_owned());
            }
        }
    }
    let g = acked.lock().unwrap();
    assert!(
        !g.events.is_empty() && !g.admitted.is_empty(),
        "the load made no progress"
    );
    let lost_events: Vec<_> = g.events.difference(&seen).collect();
    let lost_admissions: Vec<_> = g.admitted.difference(&seen).collect();
    let lost_kills: Vec<_> = g.killed.difference(&ended).collect();
    let lost_pushes: Vec<_> = g.killed.difference(&pushed).collect();
    assert!(lost_events.is_empty(), "lost events: {lost_events:?}");
    assert!(
        lost_admissions.is_empty(),
        "lost admissions: {lost_admissions:?}"
    );
    assert!(lost_kills.is_empty(), "lost kills: {lost_kills:?}");
    assert!(lost_pushes.is_empty(), "lost pushes: {lost_pushes:?}");
    eprintln!(
        "crash durability: {rounds} kills survived; verified {} events, {} admissions, {} kills with their pushes",
        g.events.len(),
        g.admitted.len(),
        g.killed.len()
    );
    let _ = server.child.kill();
    let _ = server.child.wait();
}
