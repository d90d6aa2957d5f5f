//! Upgrades from populated databases: each fixture in `tests/upgrade/fixtures/` is a
//! database that an earlier state of headcount filled through its API over a month,
//! with what that release answered at the end (see `tests/upgrade/README.md`). The
//! current headcount starts on a copy of it, migrates it, and must answer the same:
//! usage, the Sessions tables, pushes and the rest of what was recorded, the past
//! month's billing export byte for byte, the old tokens, a stored idempotent answer,
//! and the pending push, delivered signed once it is due.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use diesel::Connection;
use diesel::connection::SimpleConnection;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PgDatabase, TestApp, pg_url, spawn_on};
use crate::receiver::Receiver;

/// The fixtures, by name; `every_fixture_is_tested` keeps this list complete.
const FIXTURES: &[&str] = &["schema-000006", "release-0.1.0"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_schema_000006() {
    upgrade_from("schema-000006").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_release_0_1_0() {
    upgrade_from("release-0.1.0").await;
}

#[test]
fn every_fixture_is_tested() {
    let mut found: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut tested: Vec<String> = FIXTURES.iter().map(|s| (*s).to_owned()).collect();
    tested.sort();
    assert_eq!(found, tested);
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upgrade/fixtures")
}

/// The procedure of docs/scaling.md, "Moving onto Citus": the dump of a populated
/// single PostgreSQL (the 0.1.0 fixture, a month of a small fleet) restored into a
/// Citus coordinator, migrated and distributed, answers as it did.
#[tokio::test]
async fn a_populated_postgresql_moves_onto_citus() {
    let Some(admin) = pg_url().filter(|_| crate::helpers::citus()) else {
        eprintln!("skipped: needs a Citus coordinator (runs in .ci/run)");
        return;
    };
    let dir = fixtures().join("release-0.1.0").join("postgres");
    let sql = std::fs::read_to_string(dir.join("postgres.sql")).unwrap();
    let db = tokio::task::spawn_blocking(move || {
        let db = PgDatabase::bare_citus(&admin);
        let mut c = diesel::PgConnection::establish(&db.url()).unwrap();
        let t = std::time::Instant::now();
        c.batch_execute(&sql).unwrap();
        let restored = t.elapsed();
        let hc = headcount::db::Db::connect(&db.url(), 2).unwrap();
        let t = std::time::Instant::now();
        hc.migrate().unwrap();
        let migrated = t.elapsed();
        let t = std::time::Instant::now();
        let placed = hc.distribute(crate::helpers::CITUS_TEST_SHARDS).unwrap();
        eprintln!(
            "moved onto Citus: restore {restored:?}, migrate {migrated:?}, distribute \
             {placed} tables {:?}",
            t.elapsed()
        );
        db
    })
    .await
    .unwrap();
    check_all(&dir, db.url()).await;
}

async fn upgrade_from(name: &str) {
    let backend = if pg_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let dir = fixtures().join(name).join(backend);
    // Declared before the app, so that the app stops before its database goes.
    let (database_url, _db) = restore(&dir).await;
    check_all(&dir, database_url).await;
}

/// Starts the new release on the restored fixture and compares every recorded answer.
async fn check_all(dir: &Path, database_url: String) {
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339(expected["now"].as_str().unwrap())
        .unwrap()
        .into();
    let app = spawn_on(database_url, now).await;
    let old = Old::new(&expected);

    // Reads first, while nothing has changed since the old release answered.
    check_answers(&app, &old).await;
    check_billing(&app, &old, dir).await;
    check_tokens(&app, &old).await;
    check_idempotency(&app, &old).await;
    // Last: it moves the clock a month on.
    check_pending_push(&app, &old).await;
}

/// What the fixture recorded, with the old release's tokens.
struct Old<'a> {
    expected: &'a Value,
    admin: String,
    tenant: String,
    site: String,
}

impl<'a> Old<'a> {
    fn new(expected: &'a Value) -> Self {
        let t = &expected["tokens"];
        let s = |v: &Value| v.as_str().unwrap().to_owned();
        Self {
            expected,
            admin: s(&t["admin"]),
            tenant: s(&t["tenant"]["token"]),
            site: s(&t["site"]["token"]),
        }
    }

    fn token(&self, role: &str) -> &str {
        match role {
            "admin" => &self.admin,
            "tenant" => &self.tenant,
            "site" => &self.site,
            other => panic!("no {other} token in the fixture"),
        }
    }

    fn answer(&self, path: &str) -> &Value {
        self.expected["answers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["path"] == path)
            .unwrap_or_else(|| panic!("the fixture recorded no answer to {path}"))
    }
}

// -- the database ---------------------------------------------------------------------

/// A copy of the fixture's database; dropping it removes the copy.
enum Restored {
    Sqlite { _dir: tempfile::TempDir },
    Postgres { _db: PgDatabase },
}

async fn restore(dir: &Path) -> (String, Restored) {
    let Some(admin_url) = pg_url() else {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("headcount.db");
        std::fs::copy(dir.join("headcount.db"), &file).unwrap();
        return (
            format!("sqlite://{}", file.display()),
            Restored::Sqlite { _dir: tmp },
        );
    };
    let sql = std::fs::read_to_string(dir.join("postgres.sql")).unwrap();
    let db = tokio::task::spawn_blocking(move || {
        let db = PgDatabase::empty(&admin_url);
        // The dump sets the connection's search path to nothing: a connection of its own.
        let mut c = diesel::PgConnection::establish(&db.url()).unwrap();
        c.batch_execute(&sql).unwrap();
        db
    })
    .await
    .unwrap();
    (db.url(), Restored::Postgres { _db: db })
}

// -- comparing answers ----------------------------------------------------------------

/// Whether `new` holds everything `old` does: the same scalars, every field of an old
/// object (a newer release may add fields), and arrays of the same length whose items
/// hold the old ones in order. The error names the first place that differs.
fn holds(old: &Value, new: &Value, at: &str) -> Result<(), String> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => o.iter().try_for_each(|(k, v)| match n.get(k) {
            Some(nv) => holds(v, nv, &format!("{at}/{k}")),
            None => Err(format!("{at}/{k}: missing; was {v}")),
        }),
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => o
            .iter()
            .zip(n)
            .enumerate()
            .try_for_each(|(i, (ov, nv))| holds(ov, nv, &format!("{at}/{i}"))),
        (Value::Array(o), Value::Array(n)) => {
            Err(format!("{at}: {} items, were {}: {new}", n.len(), o.len()))
        }
        _ if old == new => Ok(()),
        _ => Err(format!("{at}: {new}, was {old}")),
    }
}

async fn get_ok(app: &TestApp, path: &str, token: &str) -> Value {
    let r = app.get(path, token).await;
    assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.text);
    r.body
}

/// Every item of a list, page after page.
async fn all_pages(app: &TestApp, path: &str, token: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut p = format!("{path}{sep}limit=500");
        if let Some(c) = &cursor {
            p.push_str(&format!("&cursor={}", urlencoding(c)));
        }
        let page = get_ok(app, &p, token).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Each GET the old release answered at the fixture's now gets the same answer.
async fn check_answers(app: &TestApp, old: &Old<'_>) {
    let answers = old.expected["answers"].as_array().unwrap();
    assert!(!answers.is_empty(), "the fixture recorded no answers");
    let mut failures = Vec::new();
    for a in answers {
        let path = a["path"].as_str().unwrap();
        let token = old.token(a["as"].as_str().unwrap());
        let result = if let Some(body) = a.get("body") {
            holds(body, &get_ok(app, path, token).await, path)
        } else {
            let items = all_pages(app, path, token).await;
            let was = a["items"].as_array().unwrap();
            match a.get("match_by").and_then(Value::as_str) {
                // Lists a newer release may add to: each old item is still there.
                Some(key) => {
                    was.iter()
                        .try_for_each(|o| match items.iter().find(|n| n[key] == o[key]) {
                            Some(n) => holds(o, n, &format!("{path} {key}={}", o[key])),
                            None => Err(format!("{path}: {key}={} is gone", o[key])),
                        })
                }
                None => holds(&Value::Array(was.clone()), &Value::Array(items), path),
            }
        };
        if let Err(e) = result {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "answers differ from the old release's:\n{}",
        failures.join("\n")
    );
}

// -- billing --------------------------------------------------------------------------

/// The export is the old one byte for byte; only when the old release exported fewer
/// columns (the current one appends `peak_at`, so readers of the older columns keep
/// working) may each line go on after the old line, behind a comma.
fn same_export(old: &str, new: &str) -> Result<(), String> {
    if old == new {
        return Ok(());
    }
    let (o, n): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    if o.len() != n.len() || old.ends_with('\n') != new.ends_with('\n') {
        return Err(format!("{} lines, were {}:\n{new}", n.len(), o.len()));
    }
    if !n[0].starts_with(&format!("{},", o[0])) {
        return Err(format!("header {:?}, was {:?}", n[0], o[0]));
    }
    let appended = n[0].matches(',').count() - o[0].matches(',').count();
    for (ol, nl) in o.iter().zip(&n).skip(1) {
        let extra = nl.strip_prefix(&format!("{ol},"));
        if extra.is_none_or(|e| e.matches(',').count() + 1 != appended) {
            return Err(format!("line {nl:?}, was {ol:?}"));
        }
    }
    Ok(())
}

async fn export(app: &TestApp, query: &str, token: &str) -> String {
    let r = app.get(&format!("/v1/billing/export?{query}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.text
}

async fn check_billing(app: &TestApp, old: &Old<'_>, dir: &Path) {
    let b = &old.expected["billing"];
    let period = b["period"].as_str().unwrap();
    assert_eq!(
        b["exported_at"], old.expected["now"],
        "the fixture's export was taken at its now, where the app's clock stands"
    );
    let read = |f: &Value| std::fs::read_to_string(dir.join(f.as_str().unwrap())).unwrap();

    let csv = export(app, &format!("period={period}&format=csv"), &old.admin).await;
    let was = read(&b["csv"]);
    assert!(was.lines().count() > 1, "the fixture's export has no lines");
    if let Err(e) = same_export(&was, &csv) {
        panic!("the {period} CSV export differs from the old release's: {e}");
    }

    let json = export(app, &format!("period={period}&format=json"), &old.admin).await;
    let was: Value = serde_json::from_str(&read(&b["json"])).unwrap();
    let now: Value = serde_json::from_str(&json).unwrap();
    if let Err(e) = holds(&was, &now, "billing") {
        panic!("the {period} JSON export differs from the old release's: {e}");
    }

    let t = &b["tenant_csv"];
    let csv = export(app, &format!("period={period}&format=csv"), &old.tenant).await;
    if let Err(e) = same_export(&read(&t["file"]), &csv) {
        panic!("tenant {}'s {period} export differs: {e}", t["tenant"]);
    }
}

// -- tokens, idempotency keys ---------------------------------------------------------

async fn check_tokens(app: &TestApp, old: &Old<'_>) {
    let t = &old.expected["tokens"];
    // Each old token is accepted, for what it was minted for and no more.
    let r = app
        .post(
            "/v1/tokens",
            &old.admin,
            json!({"role": "admin", "ttl_seconds": 3600}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "old admin token: {}", r.text);
    let tenant = t["tenant"]["tenant"].as_str().unwrap();
    get_ok(app, &format!("/v1/tenants/{tenant}"), &old.tenant).await;
    let other = old.answer("/v1/tenants")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .find(|s| *s != tenant)
        .expect("the fixture has another tenant");
    let r = app.get(&format!("/v1/tenants/{other}"), &old.tenant).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another tenant: {}",
        r.text
    );
    let site = t["site"]["site"].as_str().unwrap();
    let event = json!([{"type": "session.activity", "session": "after-upgrade", "at": app.at(0)}]);
    let r = app.events(site, &old.site, event).await;
    assert_eq!(r.status, StatusCode::OK, "old site token: {}", r.text);
    let other = old.expected["webhook_secrets"]
        .as_object()
        .unwrap()
        .keys()
        .find(|s| *s != site)
        .expect("the fixture has another site");
    let r = app
        .get(&format!("/v1/sites/{other}/config"), &old.site)
        .await;
    assert!(
        r.status.is_client_error() && r.status != StatusCode::UNAUTHORIZED,
        "another site's config with the site token: {} {}",
        r.status,
        r.text
    );
    // A token revoked before the upgrade stays revoked.
    let revoked = &t["revoked"];
    let r = app
        .get(
            &format!("/v1/sites/{}/config", revoked["site"].as_str().unwrap()),
            revoked["token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "revoked token: {}",
        r.text
    );
}

/// A write sent with an Idempotency-Key within a day of the fixture's now is answered
/// from the stored key: the first answer again, and nothing done twice.
async fn check_idempotency(app: &TestApp, old: &Old<'_>) {
    let i = &old.expected["idempotency"];
    if i["supported"] != true {
        // The old release ignored the header: it stored no key to keep.
        return;
    }
    let r = app
        .client
        .post(format!("{}{}", app.url, i["path"].as_str().unwrap()))
        .bearer_auth(&old.admin)
        .header("content-type", "application/json")
        .header("idempotency-key", i["key"].as_str().unwrap())
        .body(i["body"].as_str().unwrap().to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), i["status"].as_u64().unwrap() as u16);
    assert_eq!(
        r.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true"),
        "not answered from the stored key"
    );
    assert_eq!(r.text().await.unwrap(), i["response"].as_str().unwrap());
}

// -- the pending push -----------------------------------------------------------------

async fn check_pending_push(app: &TestApp, old: &Old<'_>) {
    let p = &old.expected["pending_push"];
    let site = p["site"].as_str().unwrap();
    let webhook_id = p["webhook_id"].as_str().unwrap();
    let was = old.answer(&format!("/v1/sites/{site}/deliveries"))["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["webhook_id"] == webhook_id)
        .unwrap()
        .clone();
    assert_eq!(was["status"], "pending");

    // The push goes to the site's current webhook_url (the URL is the site's, not the
    // row's), so pointing the site at this receiver through the API redirects it.
    let receiver = Receiver::start().await;
    receiver.trust(old.expected["webhook_secrets"][site].as_str().unwrap());
    let r = app
        .patch(
            &format!("/v1/sites/{site}"),
            &old.admin,
            json!({"webhook_url": receiver.url}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let pending = all_pages(app, &format!("/v1/sites/{site}/deliveries"), &old.admin).await;
    let row = pending
        .iter()
        .find(|d| d["webhook_id"] == webhook_id)
        .expect("the pending push is still listed");
    assert_eq!(row["status"], "pending", "{row}");
    let due: DateTime<Utc> = DateTime::parse_from_rfc3339(row["next_attempt_at"].as_str().unwrap())
        .unwrap()
        .into();
    assert!(
        due > app.now(),
        "the push was not due before the clock moved: {row}"
    );
    // Setting the URL may push the site's config at once; the old push waits.
    assert!(
        !receiver
            .received()
            .iter()
            .any(|x| x.webhook_id == webhook_id),
        "the push was sent before it was due"
    );

    app.clock.set(due + chrono::Duration::seconds(1));
    let got = receiver
        .wait_for("the pending push", |r| {
            r.iter().any(|x| x.webhook_id == webhook_id)
        })
        .await;
    let push = got.iter().find(|x| x.webhook_id == webhook_id).unwrap();
    assert!(push.signature_ok, "signed with the site's old secret");
    assert_eq!(push.body["type"], was["type"]);
    assert_eq!(push.body["data"], was["payload"]["data"]);

    for _ in 0..200 {
        let rows = all_pages(app, &format!("/v1/sites/{site}/deliveries"), &old.admin).await;
        let row = rows.iter().find(|d| d["webhook_id"] == webhook_id).unwrap();
        if row["status"] == "delivered" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the push arrived but is not recorded as delivered");
}
