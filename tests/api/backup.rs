//! Backup and restore: an SQLite backup taken while events are acknowledged restores
//! every one of them; a PostgreSQL dump restored with `pg_restore` answers the same;
//! what is not a backup, or a backup of a newer release, is refused and nothing
//! changes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Options, PgDatabase, TestApp, headcount, pg_url, spawn, spawn_with};

/// A run that must fail: returns its one line of error output.
fn refused(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(!out.status.success(), "it succeeded: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

fn succeeded(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn hash(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The schema version of this binary: its newest migration, as diesel records it.
fn binary_schema_version() -> String {
    let mut names: Vec<String> = std::fs::read_dir("migrations/sqlite")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let newest = names.pop().unwrap();
    newest.split('_').next().unwrap().replace('-', "")
}

/// A migrated SQLite database in `dir/live` and a backup of it at `dir/backup.db`.
fn real_backup(dir: &Path) -> PathBuf {
    let live = dir.join("live");
    succeeded(
        headcount()
            .arg("migrate")
            .arg("--data-dir")
            .arg(&live)
            .output()
            .unwrap(),
    );
    let backup = dir.join("backup.db");
    succeeded(
        headcount()
            .arg("backup")
            .arg("--data-dir")
            .arg(&live)
            .arg("--output")
            .arg(&backup)
            .output()
            .unwrap(),
    );
    backup
}

/// Every session of a site, all states, page after page.
async fn session_ids(app: &TestApp, site: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .get(
                &format!("/v1/sites/{site}/sessions?state=all&limit=500{cursor}"),
                &app.admin,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        out.extend(
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["session"].as_str().unwrap().to_owned()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

#[tokio::test]
async fn a_backup_taken_while_events_flow_restores_every_acknowledged_event() {
    if pg_url().is_some() {
        eprintln!("skipped on PostgreSQL: backup and restore copy SQLite databases");
        return;
    }
    let live = tempfile::tempdir().unwrap();
    let app = spawn_with(Options {
        database_url: Some(format!("sqlite://{}/headcount.db", live.path().display())),
        ..Default::default()
    })
    .await;
    let site = app
        .site_with("s", json!({"session_limit": 1_000_000}))
        .await;

    // Events and admissions, one after another, recording each acknowledged session.
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, url, site, at) =
            (app.client.clone(), app.url.clone(), site.clone(), app.at(0));
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let (path, body, ids): (_, _, Vec<String>) = if i % 4 == 3 {
                    let id = format!("a{i}");
                    let body = json!({"session": id, "user": "ann"});
                    ("admissions", body, vec![id])
                } else {
                    let ids: Vec<String> = (0..10).map(|k| format!("e{i}-{k}")).collect();
                    let events: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"type": "session.started", "session": id, "at": at, "user": "bob"}))
                        .collect();
                    ("events", json!({"events": events}), ids)
                };
                let r = client
                    .post(format!("{url}/v1/sites/s/{path}"))
                    .bearer_auth(&site)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{path}");
                let answer: Value = r.json().await.unwrap();
                assert!(
                    answer["admitted"] == true || answer["accepted"] == 10,
                    "{answer}"
                );
                acked.lock().unwrap().extend(ids);
            }
        })
    };
    while acked.lock().unwrap().len() < 2_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let backup = live.path().join("backup.db");
    let before_backup = acked.lock().unwrap().clone();
    let out = tokio::process::Command::from(headcount())
        .arg("backup")
        .arg("--database-url")
        .arg(&app.database_url)
        .arg("--output")
        .arg(&backup)
        .output()
        .await
        .unwrap();
    let written = succeeded(out);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        written.starts_with(&format!("backup written to {}", backup.display()))
            && written.contains(&format!("schema version {}", binary_schema_version()))
            && written.lines().count() == 1,
        "{written}"
    );
    // Only the backup is left beside the live database: no partial copy, no journal.
    let beside: Vec<_> = entries(live.path())
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("backup"))
        .collect();
    assert_eq!(beside, vec![backup.clone()]);

    let restored_dir = tempfile::tempdir().unwrap();
    let data = restored_dir.path().join("data");
    let out = headcount()
        .arg("restore")
        .arg("--data-dir")
        .arg(&data)
        .arg("--input")
        .arg(&backup)
        .output()
        .unwrap();
    let said = succeeded(out);
    assert!(
        said.starts_with(&format!("restored {}", backup.display())) && said.lines().count() == 1,
        "{said}"
    );
    assert_eq!(entries(&data), vec![data.join("headcount.db")]);

    let restored = spawn_with(Options {
        database_url: Some(format!("sqlite://{}/headcount.db", data.display())),
        ..Default::default()
    })
    .await;
    let present: HashSet<String> = session_ids(&restored, "s").await.into_iter().collect();
    let lost: Vec<_> = before_backup.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged sessions lost, e.g. {:?}",
        lost.len(),
        before_backup.len(),
        &lost[..lost.len().min(5)]
    );
    // Nothing the original never acknowledged or was still writing appears.
    let acked = acked.lock().unwrap().clone();
    assert!(present.is_subset(&acked), "sessions no one sent");
    // The signing key came along: the site's token still works.
    let r = restored.admit("s", &site, "after-restore").await;
    assert_eq!(r.body["admitted"], true, "{}", r.text);
}

/// Reads that should answer alike on the original and on its restored copy.
const COMPARED: [&str; 9] = [
    "/v1/plans",
    "/v1/tenants",
    "/v1/sites",
    "/v1/sites/s/sessions?state=all",
    "/v1/sites/s/users",
    "/v1/sites/s/usage",
    "/v1/sites/s/denials",
    "/v1/tenants/s-tenant/usage",
    "/v1/usage",
];

#[tokio::test]
async fn a_pg_dump_restored_with_pg_restore_answers_the_same() {
    let Some(admin_url) = pg_url() else {
        eprintln!("skipped on SQLite: needs HEADCOUNT_TEST_DATABASE_URL");
        return;
    };
    if crate::helpers::citus() {
        // A Citus cluster is backed up node by node (docs/backup.md); one pg_dump of
        // the coordinator holds the metadata but not the workers' shards.
        eprintln!("skipped on Citus: pg_dump of one node is not a cluster's backup");
        return;
    }
    let app = spawn().await;
    let site = app
        .site_with("s", json!({"session_limit": 3, "over_limit": "reject"}))
        .await;
    let events: Vec<Value> = (0..2)
        .map(|k| json!({"type": "session.started", "session": format!("e{k}"), "at": app.at(-60), "user": format!("u{k}")}))
        .chain([json!({"type": "session.ended", "session": "e0", "at": app.at(0)})])
        .collect();
    let r = app.events("s", &site, json!(events)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for k in 0..4 {
        app.admit("s", &site, &format!("a{k}")).await;
    }
    app.create_tenant("other").await;

    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("headcount.dump");
    let restored_db = PgDatabase::named(&admin_url);
    let name = restored_db.name.clone();
    let restored_url = restored_db.url();
    for (program, args) in [
        (
            "pg_dump",
            vec!["-Fc", "-f", dump.to_str().unwrap(), &app.database_url],
        ),
        (
            "createdb",
            vec![&format!("--maintenance-db={admin_url}"), &name],
        ),
        (
            "pg_restore",
            vec!["--no-owner", "-d", &restored_url, dump.to_str().unwrap()],
        ),
    ] {
        let out = tokio::process::Command::new(program)
            .args(&args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program}: {out:?}");
    }

    let restored = spawn_with(Options {
        database_url: Some(restored_url),
        ..Default::default()
    })
    .await;
    restored.clock.set(app.now());
    for path in COMPARED {
        let (a, b) = (
            app.get(path, &app.admin).await,
            restored.get(path, &restored.admin).await,
        );
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        assert_eq!(a.body, b.body, "{path}");
    }
    // The signing key came along: the site's token still works.
    let r = restored.admit("s", &site, "after-restore").await;
    assert_eq!(
        r.body["admitted"], false,
        "the limit still holds: {}",
        r.text
    );
}

#[test]
fn restore_refuses_what_is_not_a_headcount_backup_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.db");
    let mut bytes = vec![0u8; 64 * 1024];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    std::fs::write(&random, &bytes).unwrap();
    let plain = dir.path().join("plain.db");
    diesel::SqliteConnection::establish(plain.to_str().unwrap())
        .unwrap()
        .batch_execute("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');")
        .unwrap();
    let newer = real_backup(dir.path());
    diesel::SqliteConnection::establish(newer.to_str().unwrap())
        .unwrap()
        .batch_execute("INSERT INTO __diesel_schema_migrations (version) VALUES ('20991231000001')")
        .unwrap();
    let ours = binary_schema_version();
    let cases: [(&Path, Vec<&str>); 3] = [
        (
            &random,
            vec!["not a headcount backup", "not an SQLite database"],
        ),
        (&plain, vec!["not a headcount backup", "no table", "sites"]),
        (&newer, vec!["newer", "20991231000001", &ours]),
    ];
    for (input, expected) in cases {
        let before = hash(input);
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let absent = dir.path().join("absent");
        for target in [&empty, &absent] {
            let err = refused(
                headcount()
                    .arg("restore")
                    .arg("--input")
                    .arg(input)
                    .arg("--data-dir")
                    .arg(target),
            );
            for e in &expected {
                assert!(err.contains(e), "{input:?}: {e:?} in {err}");
            }
            assert_eq!(entries(&empty), Vec::<PathBuf>::new(), "{input:?}: {err}");
            assert!(!absent.exists(), "{input:?} created the data directory");
            assert_eq!(hash(input), before, "{input:?} changed");
        }
    }
}

#[test]
fn backup_and_restore_overwrite_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backup = real_backup(dir.path());
    let live = dir.path().join("live");

    let taken = dir.path().join("taken.db");
    std::fs::write(&taken, "keep me").unwrap();
    let err = refused(
        headcount()
            .arg("backup")
            .arg("--data-dir")
            .arg(&live)
            .arg("--output")
            .arg(&taken),
    );
    assert!(err.contains("taken.db exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me");

    let database = live.join("headcount.db");
    let before = hash(&database);
    let err = refused(
        headcount()
            .arg("restore")
            .arg("--data-dir")
            .arg(&live)
            .arg("--input")
            .arg(&backup),
    );
    assert!(
        err.contains(&format!("{} already exists", database.display())),
        "{err}"
    );
    assert_eq!(hash(&database), before);

    // Nothing to back up: refused, and no empty database is created.
    let nowhere = dir.path().join("nowhere");
    let err = refused(
        headcount()
            .arg("backup")
            .arg("--data-dir")
            .arg(&nowhere)
            .arg("--output")
            .arg(dir.path().join("b2.db")),
    );
    assert!(err.contains("no database"), "{err}");
    assert!(!nowhere.exists() && !dir.path().join("b2.db").exists());

    // PostgreSQL has its own tools; nothing connects to find that out.
    let pg = "postgres://headcount@127.0.0.1:1/headcount";
    let err = refused(
        headcount()
            .args(["backup", "--database-url", pg, "--output"])
            .arg(dir.path().join("pg.db")),
    );
    assert!(
        err.contains("pg_dump -Fc") && err.contains("docs/backup.md"),
        "{err}"
    );
    let err = refused(
        headcount()
            .args(["restore", "--database-url", pg, "--input"])
            .arg(&backup),
    );
    assert!(
        err.contains("pg_restore") && err.contains("docs/backup.md"),
        "{err}"
    );
}
