//! Releases: the version each process reports, a database of a newer release refused
//! untouched, several processes starting at once on an empty database (also through
//! PgBouncer in transaction mode), and a rolling upgrade from the previous release.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    PgDatabase, free_port, fresh_database, headcount, headcount_at, pg_url, ready, spawn,
};

const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The newest migration in the source tree, as diesel records it: the schema version
/// this build must report.
fn newest_migration() -> String {
    let newest = std::fs::read_dir("migrations/postgres")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .unwrap();
    let stem = newest.split('_').next().unwrap();
    stem.chars().filter(char::is_ascii_digit).collect()
}

/// A `serve` process on `port`, its output piped.
fn serve(bin: &str, database_url: &str, data_dir: &std::path::Path, port: u16) -> Command {
    let mut c = headcount_at(bin);
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database-url")
        .arg(database_url)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Stops a process with SIGTERM and returns its exit success, stdout and stderr.
async fn stop(mut child: Child) -> (bool, String, String) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        (child.wait().unwrap().success(), out, err)
    })
    .await
    .unwrap()
}

#[test]
fn version_names_the_release_and_the_schema() {
    let out = headcount().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!("headcount {RELEASE} (schema {})", newest_migration())
    );
}

#[tokio::test]
async fn healthz_and_build_info_report_the_release_and_the_schema() {
    let app = spawn().await;
    let schema = newest_migration();
    for path in ["/healthz", "/readyz"] {
        let r = app.get(path, "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["version"], RELEASE, "{path}");
        assert_eq!(r.body["schema"], schema.as_str(), "{path}");
    }
    let r = app.get("/metrics", &app.admin).await;
    let line = format!("headcount_build_info{{version=\"{RELEASE}\",schema=\"{schema}\"}} 1");
    assert!(r.text.lines().any(|l| l == line), "{line} in {}", r.text);
}

/// A stand-in for everything a database holds: the SQLite file's bytes, or
/// PostgreSQL's dump of schema and rows.
fn fingerprint(database_url: &str) -> Vec<u8> {
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        return std::fs::read(path).unwrap();
    }
    let out = Command::new("pg_dump")
        .args(["--no-owner", "--dbname", database_url])
        .output()
        .expect("pg_dump");
    assert!(out.status.success(), "{out:?}");
    // pg_dump brackets its output with a random `\restrict` key; the rest is the data.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

fn execute(database_url: &str, sql: &str) {
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        let mut c = diesel::SqliteConnection::establish(path).unwrap();
        c.batch_execute(sql).unwrap();
    } else {
        let mut c = diesel::PgConnection::establish(database_url).unwrap();
        c.batch_execute(sql).unwrap();
    }
}

#[tokio::test]
async fn a_database_of_a_newer_release_is_refused_and_left_unchanged() {
    let (database_url, data_dir, _guard) = fresh_database().await;
    let out = headcount()
        .args(["migrate", "--database-url", &database_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    execute(
        &database_url,
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('20991231000001'); \
         INSERT INTO settings (key, value) VALUES ('migrated_by_release', '9.0.0') \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value;",
    );
    let before = fingerprint(&database_url);
    let schema = newest_migration();
    let port = free_port();
    for args in [
        vec!["migrate", "--database-url", &database_url],
        vec![
            "serve",
            "--database-url",
            &database_url,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
    ] {
        let out = headcount()
            .args(&args)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} started: {err}", args[0]);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        for part in [
            "20991231000001",
            "9.0.0",
            RELEASE,
            &schema,
            "nothing was changed",
        ] {
            assert!(err.contains(part), "{} names {part}: {err}", args[0]);
        }
    }
    assert!(
        before == fingerprint(&database_url),
        "the refused database was changed"
    );
}

/// `count` processes of `bin` started at once on `database_url`: all come up, the
/// migrations are applied once (by one of them), one prints the first admin token.
/// Returns the ports of the running processes and the processes.
async fn start_together(
    count: usize, database_url: &str, env: &[(&str, &str)],
) -> (Vec<u16>, Vec<Child>) {
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let children: Vec<Child> = ports
        .iter()
        .map(|port| {
            serve(
                env!("CARGO_BIN_EXE_headcount"),
                database_url,
                data_dir.path(),
                *port,
            )
            .env("HEADCOUNT_LOG", "info")
            .envs(env.iter().copied())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut ports = ports;
    let mut children = children;
    for i in 0..count {
        if ready(&client, ports[i]).await {
            continue;
        }
        // The port chosen free may have been taken meanwhile by another test's
        // server: that process exits at once, saying so; it is started again on
        // another port. Anything else fails with what the process said.
        let err = exited_with(&mut children[i]);
        assert!(
            err.contains("in use"),
            "the process on {} came up: {err}",
            ports[i]
        );
        ports[i] = free_port();
        children[i] = serve(
            env!("CARGO_BIN_EXE_headcount"),
            database_url,
            data_dir.path(),
            ports[i],
        )
        .env("HEADCOUNT_LOG", "info")
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
        assert!(
            ready(&client, ports[i]).await,
            "the process on {} came up",
            ports[i]
        );
    }
    (ports, children)
}

/// What a process that did not come up wrote to stderr (it is stopped first if it
/// still runs).
fn exited_with(child: &mut Child) -> String {
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let mut err = String::new();
    if let Some(e) = child.stderr.as_mut() {
        let _ = std::io::Read::read_to_string(e, &mut err);
    }
    err
}

/// Checks what the processes printed: the migrations applied once in all, one first
/// admin token. Returns that token.
async fn applied_once(children: Vec<Child>) -> String {
    let mut applied = 0;
    let mut tokens = Vec::new();
    for child in children {
        let (ok, out, err) = stop(child).await;
        assert!(ok, "a clean exit: {err}");
        for line in err.lines() {
            if let Some(rest) = line.split("applied ").nth(1)
                && let Some(n) = rest.split(' ').next().and_then(|n| n.parse::<usize>().ok())
            {
                applied += n;
            }
        }
        tokens.extend(
            out.lines()
                .filter(|l| l.starts_with("ey"))
                .map(str::to_owned),
        );
    }
    let known = std::fs::read_dir("migrations/postgres").unwrap().count();
    assert_eq!(applied, known, "every migration applied once in all");
    assert_eq!(tokens.len(), 1, "one first-start admin token: {tokens:?}");
    tokens.pop().unwrap()
}

/// A plan, a tenant and a site through the API of `port`, and admissions up to the
/// limit: a process that came up also works.
async fn works(port: u16, admin: &str, tag: &str) {
    let client = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{port}");
    let post = |path: String, token: String, body: Value| {
        let client = client.clone();
        let api = api.clone();
        async move {
            let r = client
                .post(format!("{api}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let a = admin.to_owned();
    let plan = json!({"code": format!("p{tag}"), "name": "p", "session_limit": 2});
    assert_eq!(post("/v1/plans".into(), a.clone(), plan).await.0, 201);
    let tenant = json!({"slug": format!("t{tag}"), "name": "t"});
    assert_eq!(post("/v1/tenants".into(), a.clone(), tenant).await.0, 201);
    let site = json!({"slug": format!("s{tag}"), "tenant": format!("t{tag}"), "name": "s",
        "plan": format!("p{tag}")});
    assert_eq!(post("/v1/sites".into(), a.clone(), site).await.0, 201);
    let (status, token) = post(
        "/v1/tokens".into(),
        a,
        json!({"role": "site", "site": format!("s{tag}")}),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let site_token = token["token"].as_str().unwrap().to_owned();
    for (i, admitted) in [true, true, false].into_iter().enumerate() {
        let (status, body) = post(
            format!("/v1/sites/s{tag}/admissions"),
            site_token.clone(),
            json!({"session": format!("session-{tag}-{i}")}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["admitted"], admitted, "{body}");
    }
}

/// An admin token minted by `headcount token create` on `database_url`.
fn admin_token(database_url: &str, env: &[(&str, &str)]) -> String {
    let out = headcount()
        .args([
            "token",
            "create",
            "--role",
            "admin",
            "--database-url",
            database_url,
        ])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Four processes on one empty database: all come up, each serves, the schema is
/// migrated once.
async fn four_at_once(database_url: &str, env: &[(&str, &str)]) {
    let (ports, children) = start_together(4, database_url, env).await;
    let admin = admin_token(database_url, env);
    for (i, port) in ports.iter().enumerate() {
        works(*port, &admin, &i.to_string()).await;
    }
    applied_once(children).await;
}

#[tokio::test]
async fn four_processes_started_together_on_an_empty_database_all_come_up() {
    match pg_url() {
        Some(admin) => {
            let pg = tokio::task::spawn_blocking(move || PgDatabase::empty(&admin))
                .await
                .unwrap();
            four_at_once(&pg.url(), &[]).await;
        }
        None => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/headcount.db", dir.path().display());
            four_at_once(&url, &[]).await;
        }
    }
}

/// PgBouncer in transaction mode in front of the test server, as `pgbouncer -u
/// postgres` (it refuses to run as root). Stopped with the guard.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    fn start(binary: &str, server: &url::Url) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        // Two server connections for all the clients: transactions of different
        // processes really do share server connections.
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nauth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = 2\nmax_client_conn = 500\nunix_socket_dir =\n\
                 logfile = {}\nignore_startup_parameters = extra_float_digits,options\n",
                server.host_str().unwrap(),
                server.port().unwrap_or(5432),
                users.display(),
                dir.path().join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        for p in [dir.path(), &users, &ini] {
            let mode = if p.is_dir() { 0o777 } else { 0o644 };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let mut cmd = Command::new(binary);
        cmd.arg(&ini);
        // PgBouncer will not run as root; told a user, it switches to it.
        if Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
        {
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL test that needs a tool this machine lacks: skipped, except where
/// `HEADCOUNT_TEST_REQUIRE_ALL` is set (`.ci/run` sets it), where that is a failure.
fn missing(what: &str) {
    let required = std::env::var_os("HEADCOUNT_TEST_REQUIRE_ALL").is_some();
    assert!(!required, "this test needs {what}");
    eprintln!("skipped: needs {what}");
}

/// The pgbouncer binary, where Debian installs it or on the PATH.
fn pgbouncer() -> Option<String> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

#[tokio::test]
async fn four_processes_started_together_through_pgbouncer_all_come_up() {
    let Some(admin) = pg_url() else { return };
    let Some(binary) = pgbouncer() else {
        return missing("Debian's pgbouncer");
    };
    let pg = tokio::task::spawn_blocking(move || PgDatabase::empty(&admin))
        .await
        .unwrap();
    let server = url::Url::parse(&pg.url()).unwrap();
    let bouncer = Bouncer::start(&binary, &server);
    let mut through = server.clone();
    through.set_port(Some(bouncer.port)).unwrap();
    four_at_once(
        through.as_str(),
        &[("HEADCOUNT_PREPARED_STATEMENTS", "false")],
    )
    .await;
}

/// The previous release's binary, built from its commit (`.ci/run` builds it).
fn previous_release() -> Option<String> {
    std::env::var("HEADCOUNT_PREVIOUS_BIN")
        .ok()
        .filter(|p| !p.is_empty())
}

async fn call(
    client: &reqwest::Client, method: reqwest::Method, port: u16, path: &str, token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = client
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// While a process of the previous release serves on PostgreSQL, a process of this
/// release starts and migrates; the old one keeps answering correctly beside it, on
/// the same rows, until it is stopped.
#[tokio::test]
async fn rolling_upgrade_from_the_previous_release() {
    let Some(admin_url) = pg_url() else { return };
    let Some(previous) = previous_release() else {
        return missing("HEADCOUNT_PREVIOUS_BIN (.ci/previous-release builds it)");
    };
    let pg = tokio::task::spawn_blocking(move || PgDatabase::empty(&admin_url))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (old_port, new_port) = (free_port(), free_port());
    let old = serve(&previous, &pg.url(), dir.path(), old_port)
        .spawn()
        .unwrap();
    assert!(
        ready(&client, old_port).await,
        "the previous release came up"
    );
    let (_, health) = call(
        &client,
        reqwest::Method::GET,
        old_port,
        "/healthz",
        "",
        None,
    )
    .await;
    assert_ne!(
        health["version"], RELEASE,
        "really another release: {health}"
    );
    // Data written by the previous release, with a token it made.
    let admin = admin_token(&pg.url(), &[]);
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    for (path, body) in [
        (
            "/v1/plans",
            json!({"code": "team", "name": "Team", "session_limit": 3}),
        ),
        ("/v1/tenants", json!({"slug": "acme", "name": "Acme"})),
        (
            "/v1/sites",
            json!({"slug": "erp", "tenant": "acme", "name": "ERP", "plan": "team"}),
        ),
    ] {
        let (status, b) = call(&client, post.clone(), old_port, path, &admin, Some(body)).await;
        assert_eq!(status, 201, "{path}: {b}");
    }
    let (_, t) = call(
        &client,
        post.clone(),
        old_port,
        "/v1/tokens",
        &admin,
        Some(json!({"role": "site", "site": "erp"})),
    )
    .await;
    let site = t["token"].as_str().unwrap().to_owned();
    let admit = |port: u16, session: &'static str| {
        let (client, site, post) = (client.clone(), site.clone(), post.clone());
        async move {
            let (status, b) = call(
                &client,
                post,
                port,
                "/v1/sites/erp/admissions",
                &site,
                Some(json!({"session": session, "user": session})),
            )
            .await;
            assert_eq!(status, 200, "{b}");
            b["admitted"].as_bool().unwrap()
        }
    };
    assert!(admit(old_port, "s-old-1").await);

    // This release starts on the same database and migrates it.
    let new = serve(
        env!("CARGO_BIN_EXE_headcount"),
        &pg.url(),
        dir.path(),
        new_port,
    )
    .env("HEADCOUNT_LOG", "info")
    .spawn()
    .unwrap();
    assert!(ready(&client, new_port).await, "this release came up");
    let (_, health) = call(&client, get.clone(), new_port, "/healthz", "", None).await;
    assert_eq!(health["version"], RELEASE);

    // Both answer, on the same rows: the limit holds across the two releases.
    assert!(admit(old_port, "s-old-2").await);
    assert!(admit(new_port, "s-new-1").await);
    assert!(
        !admit(old_port, "s-old-3").await,
        "the limit of 3 holds on the old one"
    );
    assert!(!admit(new_port, "s-new-2").await, "and on the new one");
    for port in [old_port, new_port] {
        let (status, usage) = call(
            &client,
            get.clone(),
            port,
            "/v1/sites/erp/usage",
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "{usage}");
        assert_eq!(usage["active"], 3, "{port}: {usage}");
        let (status, list) = call(
            &client,
            get.clone(),
            port,
            "/v1/sites/erp/sessions",
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "{list}");
        let mut ids: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        assert_eq!(ids, ["s-new-1", "s-old-1", "s-old-2"], "{port}");
    }
    // The old release still writes: an event and a plan change it makes are seen by
    // the new one.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, b) = call(
        &client,
        post.clone(),
        old_port,
        "/v1/sites/erp/events",
        &site,
        Some(json!({"events": [{"type": "session.ended", "session": "s-old-1", "at": now}]})),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let (status, b) = call(
        &client,
        reqwest::Method::PATCH,
        old_port,
        "/v1/plans/team",
        &admin,
        Some(json!({"session_limit": 4})),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let (_, usage) = call(
        &client,
        get.clone(),
        new_port,
        "/v1/sites/erp/usage",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (usage["active"].as_i64(), usage["session_limit"].as_i64()),
        (Some(2), Some(4)),
        "{usage}"
    );

    let (ok, _, err) = stop(old).await;
    assert!(ok, "the previous release stops cleanly: {err}");
    assert!(
        admit(new_port, "s-new-3").await,
        "this release goes on alone"
    );
    let (ok, _, err) = stop(new).await;
    assert!(ok, "{err}");
}
