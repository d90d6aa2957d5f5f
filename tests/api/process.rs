//! The process itself: first start, bad settings, graceful shutdown, token command.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{free_port, fresh_database, headcount, ready};

/// Runs a start that must fail; returns its stderr.
fn failing_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut c = headcount();
    c.arg("serve").args(args).arg("--data-dir").arg(dir.path());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(!out.status.success(), "it started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_settings_stop_the_start_with_one_clear_line() {
    let e = failing_start(&["--database-url", "mysql://x/y"], &[]);
    assert!(e.contains("DATABASE_URL") && e.lines().count() == 1, "{e}");
    let e = failing_start(&[], &[("HEADCOUNT_JWT_SECRET", "too-short")]);
    assert!(
        e.contains("HEADCOUNT_JWT_SECRET") && e.contains("32"),
        "{e}"
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let e = failing_start(&["--listen", &addr], &[]);
    assert!(e.contains("cannot listen") && e.lines().count() == 1, "{e}");
    let e = failing_start(&["--listen", "nowhere"], &[]);
    assert!(e.contains("HEADCOUNT_LISTEN"), "{e}");
    let e = failing_start(&[], &[("HEADCOUNT_RETRY_SCHEDULE", "0s,5 parsecs")]);
    assert!(e.contains("HEADCOUNT_RETRY_SCHEDULE"), "{e}");
}

#[tokio::test]
async fn first_start_prints_one_admin_token_and_sigterm_exits_cleanly() {
    let (database_url, data_dir, _guard) = fresh_database().await;
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for round in 0..2 {
        let port = free_port();
        let mut child = headcount()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--database-url")
            .arg(&database_url)
            .arg("--data-dir")
            .arg(&data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(ready(&client, port).await, "round {round}: not ready");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut s).unwrap();
            (child.wait().unwrap(), s)
        })
        .await
        .unwrap();
        assert!(out.0.success(), "round {round}: exit {:?}", out.0);
        tokens.push(out.1.lines().filter(|l| l.starts_with("ey")).count());
    }
    assert_eq!(tokens, vec![1, 0], "an admin token on the first start only");
    // `token create` prints only a token, and it works against the same database.
    let out = headcount()
        .args([
            "token",
            "create",
            "--role",
            "admin",
            "--database-url",
            &database_url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim().split('.').count(), 3, "{text}");
    assert_eq!(text.lines().count(), 1);
}

/// A client's protocol fault (an oversized header) is answered and logged below
/// ERROR: an operator's error log holds the server's faults only.
#[tokio::test]
async fn client_protocol_errors_are_not_logged_as_errors() {
    let (database_url, data_dir, _guard) = fresh_database().await;
    let port = free_port();
    let mut child = headcount()
        .env("HEADCOUNT_LOG", "info")
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
    assert!(ready(&client, port).await, "not ready");
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let big = "x".repeat(200_000);
        let _ = write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"
        );
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let log = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut s).unwrap();
        child.wait().unwrap();
        s
    })
    .await
    .unwrap();
    assert!(log.contains("INFO"), "the log is on: {log}");
    assert!(!log.contains("ERROR"), "{log}");
}

/// A proxy in the environment (HTTP_PROXY) is not used for pushes: it would resolve
/// the target's host itself, past the resolver that judges every address.
#[tokio::test]
async fn pushes_ignore_a_proxy_from_the_environment() {
    let (database_url, data_dir, _guard) = fresh_database().await;
    let port = free_port();
    let dead_proxy = format!("http://127.0.0.1:{}", free_port());
    let mut child = headcount()
        .env("HTTP_PROXY", &dead_proxy)
        .env("http_proxy", &dead_proxy)
        .env("ALL_PROXY", &dead_proxy)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database-url")
        .arg(&database_url)
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(ready(&client, port).await, "not ready");
    let out = headcount()
        .args([
            "token",
            "create",
            "--role",
            "admin",
            "--database-url",
            &database_url,
        ])
        .output()
        .unwrap();
    let admin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let rx = crate::receiver::Receiver::start().await;
    let base = format!("http://127.0.0.1:{port}");
    for (path, body) in [
        (
            "/v1/plans",
            serde_json::json!({"code": "p", "name": "p", "session_limit": 3}),
        ),
        ("/v1/tenants", serde_json::json!({"slug": "t", "name": "t"})),
        (
            "/v1/sites",
            serde_json::json!({"slug": "s", "tenant": "t", "name": "s", "plan": "p", "webhook_url": rx.url}),
        ),
    ] {
        let r = client
            .post(format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED, "{path}");
    }
    rx.wait_for("the config push, sent directly", |m| {
        m.iter().any(|x| x.body["type"] == "site.config_changed")
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
}
