//! The test harness: each test spawns headcount in-process on port 0 with a fresh
//! database (a new SQLite file, or a new PostgreSQL database copied from a migrated
//! template when `HEADCOUNT_TEST_DATABASE_URL` is set) and an injected clock.

use std::sync::{Arc, Mutex, OnceLock};

use actix_web::web;
use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use headcount::app::AppState;
use headcount::auth::Role;
use headcount::clock::ManualClock;
use headcount::config::{Config, DbArgs, ServeArgs};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub admin: String,
    pub clock: ManualClock,
    pub state: web::Data<AppState>,
    pub database_url: String,
    server: actix_web::dev::ServerHandle,
    /// Dropping it stops the background jobs, so it lives as long as the app.
    _stop_jobs: tokio::sync::watch::Sender<bool>,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

/// A PostgreSQL database made for one test and dropped after it (on Citus, on every
/// node of the cluster).
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    /// Citus: the workers' admin URLs, where the database also exists.
    workers: Vec<String>,
}

impl PgDatabase {
    /// A new, empty database on the test server (the suite's fresh databases are
    /// copies of a migrated template).
    pub fn empty(admin_url: &str) -> Self {
        let db = Self::named(admin_url);
        let mut c = diesel::PgConnection::establish(admin_url).expect("connect to PostgreSQL");
        c.batch_execute(&format!("CREATE DATABASE \"{}\"", db.name))
            .expect("create a test database");
        db
    }

    /// A new database with the Citus extension on the coordinator and on every worker
    /// (nothing registered, migrated or distributed).
    pub fn on_cluster(admin_url: &str) -> Self {
        let mut db = Self::named(admin_url);
        db.workers = citus_workers(admin_url);
        for url in std::iter::once(admin_url).chain(db.workers.iter().map(String::as_str)) {
            let mut c = diesel::PgConnection::establish(url).expect("connect to a Citus node");
            c.batch_execute(&format!("CREATE DATABASE \"{}\"", db.name))
                .expect("create a test database");
            let mut d = diesel::PgConnection::establish(&with_db(url, &db.name)).unwrap();
            d.batch_execute("CREATE EXTENSION citus").unwrap();
        }
        db
    }

    /// [`PgDatabase::on_cluster`] with the coordinator and the workers registered in
    /// it: what an operator has before the first `headcount migrate --citus`.
    pub fn bare_citus(admin_url: &str) -> Self {
        let db = Self::on_cluster(admin_url);
        let mut c = diesel::PgConnection::establish(&db.url()).unwrap();
        for (i, url) in std::iter::once(admin_url)
            .chain(db.workers.iter().map(String::as_str))
            .enumerate()
        {
            let u = url::Url::parse(url).unwrap();
            let f = if i == 0 {
                "citus_set_coordinator_host"
            } else {
                "citus_add_node"
            };
            c.batch_execute(&format!(
                "SELECT {f}('{}', {})",
                u.host_str().unwrap(),
                u.port().unwrap_or(5432)
            ))
            .unwrap();
        }
        db
    }

    /// A name for a database the test creates itself (`createdb`, say); the guard
    /// drops it.
    pub fn named(admin_url: &str) -> Self {
        Self {
            admin_url: admin_url.to_owned(),
            name: format!("headcount_t_{}", uuid::Uuid::new_v4().simple()),
            workers: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        with_db(&self.admin_url, &self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        for url in std::iter::once(&self.admin_url).chain(&self.workers) {
            if let Ok(mut c) = diesel::PgConnection::establish(url) {
                let _ = c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ));
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The stop command is sent on the call; its completion is not awaited here.
        drop(self.server.stop(false));
        // Stopping is asynchronous; give the pool back before the database is dropped.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The PostgreSQL server of the test run, if any. Without TLS unless the URL asks for
/// it: OpenSSL's exit handlers free its state while the threads of the servers under
/// test may still be connecting (the pool opens connections on its own threads), and
/// that race crashed the test binary after all tests had passed.
pub fn pg_url() -> Option<String> {
    let url = std::env::var("HEADCOUNT_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    let mut u = url::Url::parse(&url).expect("HEADCOUNT_TEST_DATABASE_URL is a URL");
    if !u.query_pairs().any(|(k, _)| k == "sslmode") {
        u.query_pairs_mut().append_pair("sslmode", "disable");
    }
    Some(u.to_string())
}

fn with_db(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("HEADCOUNT_TEST_DATABASE_URL is a URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// The migrated template: made once per migration set, shared by later runs.
fn template(admin_url: &str) -> String {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let mut hash: u64 = 1469598103934665603;
            for dir in ["migrations/postgres"] {
                let mut entries: Vec<_> = std::fs::read_dir(dir)
                    .expect("migrations")
                    .flatten()
                    .map(|e| e.path())
                    .collect();
                entries.sort();
                for e in entries {
                    let text = std::fs::read(e.join("up.sql")).unwrap_or_default();
                    for b in text {
                        hash = (hash ^ u64::from(b)).wrapping_mul(1099511628211);
                    }
                }
            }
            // How a Citus template is distributed is part of what it is.
            for b in std::fs::read("src/db/citus.rs").unwrap_or_default() {
                hash = (hash ^ u64::from(b)).wrapping_mul(1099511628211);
            }
            let workers = citus_workers(admin_url);
            let kind = if workers.is_empty() { "tpl" } else { "ctpl" };
            let name = format!("headcount_{kind}_{hash:016x}");
            let mut c = diesel::PgConnection::establish(admin_url).expect("connect to PostgreSQL");
            c.batch_execute("SELECT pg_advisory_lock(4242)").unwrap();
            let exists: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
                // A Citus template is complete once it takes no connections (the last
                // step of making it); one left half made by a failed run is made again.
                &format!(
                    "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}' {})",
                    if workers.is_empty() {
                        ""
                    } else {
                        "AND NOT datallowconn"
                    }
                ),
            ))
            .get_result(&mut c)
            .unwrap();
            if !exists && !workers.is_empty() {
                citus_template(admin_url, &name, &workers);
            } else if !exists {
                c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
                    .unwrap();
                let db = headcount::db::Db::connect(&with_db(admin_url, &name), 1).unwrap();
                db.migrate().unwrap();
            }
            c.batch_execute("SELECT pg_advisory_unlock(4242)").unwrap();
            name
        })
        .clone()
}

static CREATE_LOCK: Mutex<()> = Mutex::new(());

fn fresh_pg(admin_url: &str) -> PgDatabase {
    let tpl = template(admin_url);
    let name = format!("headcount_t_{}", uuid::Uuid::new_v4().simple());
    let workers = citus_workers(admin_url);
    let _guard = CREATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for url in std::iter::once(admin_url).chain(workers.iter().map(String::as_str)) {
        let mut c = diesel::PgConnection::establish(url).expect("connect to PostgreSQL");
        // Copying a template needs it free of other sessions; retry briefly if busy.
        let mut tries = 0;
        loop {
            match c.batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{tpl}\"")) {
                Ok(()) => break,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("cannot create a test database: {e}"),
            }
        }
    }
    PgDatabase {
        admin_url: admin_url.to_owned(),
        name,
        workers,
    }
}

/// Whether the test server is a Citus coordinator (`HEADCOUNT_TEST_DATABASE_URL`
/// pointing at `../shared/citus/cluster`'s coordinator, as `.ci/run` does).
pub fn citus() -> bool {
    pg_url().is_some_and(|u| !citus_workers(&u).is_empty())
}

/// The admin URLs of the Citus workers the coordinator at `admin_url` knows; empty on
/// plain PostgreSQL.
pub fn citus_workers(admin_url: &str) -> Vec<String> {
    static WORKERS: OnceLock<Vec<String>> = OnceLock::new();
    WORKERS
        .get_or_init(|| {
            use diesel::sql_types::{Integer, Text};
            #[derive(diesel::QueryableByName)]
            struct Node {
                #[diesel(sql_type = Text)]
                host: String,
                #[diesel(sql_type = Integer)]
                port: i32,
            }
            let mut c = diesel::PgConnection::establish(admin_url).expect("connect to PostgreSQL");
            let nodes: Vec<Node> = diesel::sql_query(
                "SELECT nodename::text AS host, nodeport AS port FROM pg_dist_node \
                 WHERE groupid <> 0 ORDER BY nodeid",
            )
            .load(&mut c)
            .unwrap_or_default();
            nodes
                .into_iter()
                .map(|n| {
                    let mut u = url::Url::parse(admin_url).unwrap();
                    u.set_host(Some(&n.host)).unwrap();
                    u.set_port(Some(n.port as u16)).unwrap();
                    u.to_string()
                })
                .collect()
        })
        .clone()
}

/// Shards per distributed table in the test databases: a few on each worker, so that
/// sites land on both, while making a database stays quick.
pub const CITUS_TEST_SHARDS: u32 = 4;

/// A migrated template on Citus: the database with the extension on every node, the
/// workers registered, the schema migrated and distributed. Copying it on every node
/// gives a consistent cluster database (the coordinator's metadata names shards that
/// the workers' copies hold), in a fraction of a second instead of distributing anew.
fn citus_template(admin_url: &str, name: &str, workers: &[String]) {
    let coordinator = url::Url::parse(admin_url).unwrap();
    for url in std::iter::once(admin_url).chain(workers.iter().map(String::as_str)) {
        let mut c = diesel::PgConnection::establish(url).expect("connect to a Citus node");
        c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        let mut d = diesel::PgConnection::establish(&with_db(url, name)).unwrap();
        d.batch_execute("CREATE EXTENSION citus").unwrap();
    }
    let mut d = diesel::PgConnection::establish(&with_db(admin_url, name)).unwrap();
    d.batch_execute(&format!(
        "SELECT citus_set_coordinator_host('{}', {})",
        coordinator.host_str().unwrap(),
        coordinator.port().unwrap_or(5432)
    ))
    .unwrap();
    for w in workers {
        let u = url::Url::parse(w).unwrap();
        d.batch_execute(&format!(
            "SELECT citus_add_node('{}', {})",
            u.host_str().unwrap(),
            u.port().unwrap_or(5432)
        ))
        .unwrap();
    }
    drop(d);
    {
        let db = headcount::db::Db::connect(&with_db(admin_url, name), 1).unwrap();
        db.migrate().unwrap();
        db.distribute(CITUS_TEST_SHARDS).unwrap();
    }
    // Citus keeps a maintenance connection to each of its databases; a template must
    // have none, and no new ones.
    for url in std::iter::once(admin_url).chain(workers.iter().map(String::as_str)) {
        let mut c = diesel::PgConnection::establish(url).unwrap();
        c.batch_execute(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .unwrap();
    }
}

/// Settings a test may change before the app starts.
pub struct Options {
    pub retry_schedule: &'static str,
    pub provider_notify: Option<(String, String)>,
    pub rate_limit: Option<&'static str>,
    pub database_url: Option<String>,
    /// `HEADCOUNT_WEBHOOK_DENY_PRIVATE`.
    pub deny_private: bool,
    /// Sign-in by identity provider (its redirect URI names `listener`'s port).
    pub oidc: Option<headcount::config::Oidc>,
    /// Where to listen, when the test must know the port before the start.
    pub listener: Option<std::net::TcpListener>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retry_schedule: "0s,5s,5m",
            provider_notify: None,
            rate_limit: None,
            database_url: None,
            deny_private: false,
            oidc: None,
            listener: None,
        }
    }
}

/// A fresh, empty database for a test that runs headcount as a separate process;
/// the guard removes it.
pub struct DbGuard {
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

pub async fn fresh_database() -> (String, std::path::PathBuf, DbGuard) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    match pg_url() {
        Some(admin) => {
            let admin2 = admin.clone();
            let db = tokio::task::spawn_blocking(move || fresh_pg(&admin2))
                .await
                .unwrap();
            (
                with_db(&admin, &db.name),
                data_dir,
                DbGuard {
                    _dir: dir,
                    _pg: Some(db),
                },
            )
        }
        None => (
            format!("sqlite://{}/headcount.db", dir.path().display()),
            data_dir,
            DbGuard {
                _dir: dir,
                _pg: None,
            },
        ),
    }
}

pub async fn spawn() -> TestApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(opts: Options) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, pg) = match (&opts.database_url, pg_url()) {
        (Some(u), _) => (u.clone(), None),
        (None, Some(admin)) => {
            let admin2 = admin.clone();
            let db = tokio::task::spawn_blocking(move || fresh_pg(&admin2))
                .await
                .unwrap();
            (with_db(&admin, &db.name), Some(db))
        }
        (None, None) => (
            format!("sqlite://{}/headcount.db", dir.path().display()),
            None,
        ),
    };
    start_app(opts, database_url, dir, pg, ManualClock::at(Utc::now())).await
}

async fn start_app(
    opts: Options, database_url: String, dir: tempfile::TempDir, pg: Option<PgDatabase>,
    clock: ManualClock,
) -> TestApp {
    let mut config = Config::load(&ServeArgs {
        db: DbArgs {
            database_url: Some(database_url.clone()),
            data_dir: Some(dir.path().to_path_buf()),
            config: None,
        },
        listen: Some("127.0.0.1:0".into()),
    })
    .unwrap();
    config.retry_schedule = headcount::config::parse_schedule(opts.retry_schedule).unwrap();
    config.webhook_deny_private = opts.deny_private;
    config.sample_interval = std::time::Duration::from_secs(3600);
    config.workers = 2;
    config.pool_size = 8;
    config.rate_limit = opts
        .rate_limit
        .map(|r| headcount::config::parse_rate_limit(r).unwrap());
    if let Some((url, secret)) = opts.provider_notify {
        config.provider_notify_url = Some(url);
        config.provider_notify_secret = Some(headcount::config::Secret::new(secret));
    }
    config.oidc = opts.oidc;
    let clock2 = clock.clone();
    let (state, _) =
        tokio::task::spawn_blocking(move || headcount::app::prepare(config, Arc::new(clock2)))
            .await
            .unwrap()
            .unwrap();
    let listener = opts
        .listener
        .unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let running = headcount::app::start(state, listener, false).unwrap();
    let server = running.server.handle();
    let state = running.state.clone();
    tokio::spawn(running.server);
    let (admin, _) = state.mint(Role::Admin, None, None, None, 3600).unwrap();
    TestApp {
        url: format!("http://127.0.0.1:{}", running.port),
        client: reqwest::Client::new(),
        admin,
        clock,
        state,
        database_url,
        server,
        _stop_jobs: running.stop_jobs,
        _dir: Some(dir),
        _pg: pg,
    }
}

impl TestApp {
    /// Stops the background jobs (the server keeps answering), as if the process had
    /// stopped: a test may then move the clock before [`TestApp::restart`].
    pub fn stop_jobs(&self) {
        let _ = self._stop_jobs.send(true);
    }

    /// Stops this process (server and jobs) and starts a new one on the same database
    /// and clock, as a restart would.
    pub async fn restart(mut self, opts: Options) -> TestApp {
        self.server.stop(false).await;
        let _ = self._stop_jobs.send(true);
        let dir = self._dir.take().unwrap();
        let pg = self._pg.take();
        let url = self.database_url.clone();
        let clock = self.clock.clone();
        drop(self);
        start_app(opts, url, dir, pg, clock).await
    }
}

/// A reply: status, headers and the JSON body (or `Value::Null`).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestApp {
    pub async fn call(
        &self, method: &str, path: &str, token: Option<&str>, body: Option<Value>,
    ) -> Reply {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(m, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("POST", path, Some(token), Some(body)).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("PATCH", path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call("DELETE", path, Some(token), None).await
    }

    pub fn now(&self) -> DateTime<Utc> {
        headcount::clock::to_datetime(headcount::clock::Clock::now_ms(&self.clock))
    }

    /// RFC 3339 of now plus `seconds`.
    pub fn at(&self, seconds: i64) -> String {
        (self.now() + chrono::Duration::seconds(seconds)).to_rfc3339()
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(chrono::Duration::seconds(seconds));
    }

    pub async fn create_plan(&self, code: &str, body: Value) -> Reply {
        let mut b = json!({"code": code, "name": format!("Plan {code}")});
        merge(&mut b, body);
        let r = self.post("/v1/plans", &self.admin, b).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r
    }

    pub async fn create_tenant(&self, slug: &str) -> Reply {
        let r = self
            .post(
                "/v1/tenants",
                &self.admin,
                json!({"slug": slug, "name": slug}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r
    }

    pub async fn create_site(&self, slug: &str, tenant: &str, plan: &str, extra: Value) -> Reply {
        let mut b = json!({"slug": slug, "tenant": tenant, "name": slug, "plan": plan});
        merge(&mut b, extra);
        let r = self.post("/v1/sites", &self.admin, b).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r
    }

    pub async fn token(&self, role: &str, tenant: Option<&str>, site: Option<&str>) -> String {
        let mut b = json!({"role": role});
        if let Some(t) = tenant {
            b["tenant"] = json!(t);
        }
        if let Some(s) = site {
            b["site"] = json!(s);
        }
        let r = self.post("/v1/tokens", &self.admin, b).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// A plan, tenant and site with the given plan values; returns the site token.
    pub async fn site_with(&self, site: &str, plan_body: Value) -> String {
        let plan = format!("{site}-plan");
        let tenant = format!("{site}-tenant");
        self.create_plan(&plan, plan_body).await;
        self.create_tenant(&tenant).await;
        self.create_site(site, &tenant, &plan, json!({})).await;
        self.token("site", None, Some(site)).await
    }

    pub async fn events(&self, site: &str, token: &str, events: Value) -> Reply {
        self.post(
            &format!("/v1/sites/{site}/events"),
            token,
            json!({"events": events}),
        )
        .await
    }

    pub async fn admit(&self, site: &str, token: &str, session: &str) -> Reply {
        let r = self
            .post(
                &format!("/v1/sites/{site}/admissions"),
                token,
                json!({"session": session}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r
    }

    pub async fn usage(&self, site: &str) -> Value {
        let r = self
            .get(&format!("/v1/sites/{site}/usage"), &self.admin)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }
}

pub fn merge(a: &mut Value, b: Value) {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

pub fn is_problem(r: &Reply) -> bool {
    r.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"))
        && r.body["status"].as_u64() == Some(u64::from(r.status.as_u16()))
}

/// Starts headcount on a database that already exists, with the clock at `now`; it
/// migrates the database at start, as an upgraded release does.
pub async fn spawn_on(database_url: String, now: DateTime<Utc>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    start_app(
        Options::default(),
        database_url,
        dir,
        None,
        ManualClock::at(now),
    )
    .await
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 20 s for `/readyz` on `port` to answer 200.
pub async fn ready(client: &reqwest::Client, port: u16) -> bool {
    for _ in 0..800 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

/// A headcount binary (this build's, or another release's) with none of the
/// environment that could point it at another database or change its settings.
pub fn headcount_at(bin: &str) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    for var in [
        "DATABASE_URL",
        "HEADCOUNT_DATA_DIR",
        "HEADCOUNT_CONFIG",
        "HEADCOUNT_JWT_SECRET",
        "HEADCOUNT_LISTEN",
        "HEADCOUNT_PREPARED_STATEMENTS",
    ] {
        c.env_remove(var);
    }
    c.env("HEADCOUNT_LOG", "warn");
    c
}

/// This build's binary; see [`headcount_at`].
pub fn headcount() -> std::process::Command {
    headcount_at(env!("CARGO_BIN_EXE_headcount"))
}

/// A small seeded generator (a linear congruential one): random histories that come
/// out the same on every run, without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n) as i64
    }
}

/// Whether the app runs on PostgreSQL (or Citus) rather than SQLite.
pub fn is_pg(app: &TestApp) -> bool {
    app.database_url.starts_with("postgres")
}

/// A row of one BIGINT column named `n`.
#[derive(diesel::QueryableByName)]
pub struct Scalar {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub n: i64,
}

/// The one BIGINT `n` of a raw query, on either backend: how benches measure storage.
pub async fn sql_scalar(app: &TestApp, sql: String) -> i64 {
    app.state
        .db
        .run(move |c| {
            headcount::per_backend!(c, |c| Ok::<_, headcount::db::Error>(
                diesel::sql_query(&sql).get_result::<Scalar>(c).unwrap().n
            ))
        })
        .await
        .unwrap()
}

/// Runs a raw statement on either backend: how benches fill storage fast.
pub async fn sql_exec(app: &TestApp, sql: String) {
    app.state
        .db
        .run(move |c| {
            headcount::per_backend!(c, |c| diesel::sql_query(&sql).execute(c).unwrap());
            Ok::<_, headcount::db::Error>(())
        })
        .await
        .unwrap();
}
