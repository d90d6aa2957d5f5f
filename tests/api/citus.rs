//! headcount on a Citus cluster: the schema distributed by site, admissions that stay
//! exact with several processes, a tenant pool over sites on different workers, and
//! the refusals of a database headcount cannot run on. These run when
//! `HEADCOUNT_TEST_DATABASE_URL` is a Citus coordinator (`.ci/run` starts one from
//! `../shared/citus/cluster`); every test database there is a copy, on every node, of
//! a template that `headcount migrate --citus` distributed (tests/api/helpers.rs).

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};
use futures_util::future::join_all;
use headcount::db::citus::{BY_SITE, REFERENCE};
use serde_json::json;

use crate::helpers::{
    Options, PgDatabase, TestApp, citus, citus_workers, free_port, headcount, pg_url, spawn,
    spawn_with,
};

fn skipped() -> bool {
    if !citus() {
        eprintln!("skipped: not a Citus coordinator (runs in .ci/run on the Citus cluster)");
        return true;
    }
    false
}

#[derive(QueryableByName, Debug)]
struct Placed {
    #[diesel(sql_type = Text)]
    tbl: String,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    column: String,
    #[diesel(sql_type = Integer)]
    colocation: i32,
}

async fn placement(app: &TestApp) -> HashMap<String, Placed> {
    app.state
        .db
        .run(|c| {
            let rows: Vec<Placed> = headcount::per_backend!(c, |c| diesel::sql_query(
                "SELECT logicalrelid::regclass::text AS tbl, partmethod::text AS method, \
                        coalesce(column_to_column_name(logicalrelid, partkey), '') AS column, \
                        colocationid AS colocation \
                 FROM pg_dist_partition"
            )
            .load(c)?);
            Ok::<_, headcount::db::Error>(rows)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.tbl.clone(), p))
        .collect()
}

#[tokio::test]
async fn every_per_site_table_is_distributed_by_site_and_the_rest_are_reference_tables() {
    if skipped() {
        return;
    }
    let app = spawn().await;
    let placed = placement(&app).await;
    let sites = &placed["sites"];
    assert_eq!((sites.method.as_str(), sites.column.as_str()), ("h", "id"));
    for t in BY_SITE.iter().skip(1) {
        let p = placed
            .get(*t)
            .unwrap_or_else(|| panic!("{t} is not distributed"));
        assert_eq!(p.method, "h", "{t}");
        assert_eq!(p.column, "site_id", "{t}");
        assert_eq!(
            p.colocation, sites.colocation,
            "{t} is not colocated with sites"
        );
    }
    for t in REFERENCE {
        let p = placed
            .get(*t)
            .unwrap_or_else(|| panic!("{t} is not placed"));
        assert_eq!(p.method, "n", "{t} is not a reference table");
    }
    assert!(!placed.contains_key("__diesel_schema_migrations"));
}

/// The worker port holding each site's shard.
async fn worker_of(app: &TestApp, site_ids: Vec<i64>) -> Vec<i64> {
    #[derive(QueryableByName)]
    struct Port {
        #[diesel(sql_type = BigInt)]
        port: i64,
    }
    app.state
        .db
        .run(move |c| {
            let mut ports = Vec::new();
            for id in &site_ids {
                let p: Port = headcount::per_backend!(c, |c| diesel::sql_query(format!(
                    "SELECT s.nodeport::bigint AS port FROM citus_shards s \
                     WHERE s.table_name = 'sites'::regclass \
                       AND s.shardid = get_shard_id_for_distribution_column('sites', {id})"
                ))
                .get_result(c)?);
                ports.push(p.port);
            }
            Ok::<_, headcount::db::Error>(ports)
        })
        .await
        .unwrap()
}

async fn site_id(app: &TestApp, slug: &str) -> i64 {
    let slug = slug.to_owned();
    app.state
        .db
        .run(move |c| {
            Ok::<_, headcount::db::Error>(headcount::db::sites::get_for_agent(c, &slug)?.site.id)
        })
        .await
        .unwrap()
}

/// Two headcount processes on one test database, their clocks together.
async fn two_processes() -> (TestApp, TestApp) {
    let a = spawn().await;
    let b = spawn_with(Options {
        database_url: Some(a.database_url.clone()),
        ..Default::default()
    })
    .await;
    b.clock.set(a.now());
    (a, b)
}

/// `n` admissions sent at once, spread over the processes and the sites (slug,
/// token), each a session and user of its own: how many were admitted.
async fn admit_at_once(
    apps: &[&TestApp], sites: &[(String, String)], n: usize, prefix: &str,
) -> usize {
    let calls = (0..n).map(|i| {
        let app = apps[i % apps.len()];
        let (slug, token) = &sites[i % sites.len()];
        async move {
            let r = app
                .post(
                    &format!("/v1/sites/{slug}/admissions"),
                    token,
                    json!({"session": format!("{prefix}{i}"), "user": format!("u{i}")}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.body["admitted"] == true
        }
    });
    join_all(calls).await.into_iter().filter(|x| *x).count()
}

#[tokio::test]
async fn two_processes_admit_exactly_the_limit_five_rounds() {
    if skipped() {
        return;
    }
    let (a, b) = two_processes().await;
    a.create_plan("p", json!({"session_limit": 50})).await;
    a.create_tenant("t").await;
    for round in 0..5 {
        let slug = format!("r{round}");
        a.create_site(&slug, "t", "p", json!({})).await;
        let token = a.token("site", None, Some(&slug)).await;
        let sites = [(slug.clone(), token)];
        let admitted = admit_at_once(&[&a, &b], &sites, 300, &format!("r{round}-")).await;
        assert_eq!(admitted, 50, "round {round}");
        assert_eq!(a.usage(&slug).await["active"], 50, "round {round}");
    }
}

#[tokio::test]
async fn a_tenant_pool_over_sites_on_both_workers_admits_exactly_its_size() {
    if skipped() {
        return;
    }
    let (a, b) = two_processes().await;
    a.create_plan("p", json!({"session_limit": 100})).await;
    let r = a
        .post(
            "/v1/tenants",
            &a.admin,
            json!({"slug": "t", "name": "t", "pooled_session_limit": 10}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut slugs = Vec::new();
    let mut ids = Vec::new();
    for i in 0..8 {
        let slug = format!("s{i}");
        a.create_site(&slug, "t", "p", json!({})).await;
        ids.push(site_id(&a, &slug).await);
        slugs.push(slug);
    }
    let workers: BTreeSet<i64> = worker_of(&a, ids).await.into_iter().collect();
    assert!(
        workers.len() >= 2,
        "the sites are all on one worker: {workers:?}"
    );
    let mut tokens = Vec::new();
    for s in &slugs {
        tokens.push(a.token("site", None, Some(s)).await);
    }
    let sites: Vec<(String, String)> = slugs.into_iter().zip(tokens).collect();
    let admitted = admit_at_once(&[&a, &b], &sites, 200, "p").await;
    assert_eq!(admitted, 10);
    let u = a.get("/v1/tenants/t/usage", &a.admin).await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.body["active"], 10, "{}", u.text);
}

/// Runs `headcount serve` on `url` and returns its exit status and stderr, or `None`
/// when it started (it is then stopped).
fn serve_outcome(url: &str) -> Option<(std::process::ExitStatus, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut child = headcount()
        .args(["serve"])
        .env("DATABASE_URL", url)
        .env("HEADCOUNT_DATA_DIR", dir.path())
        .env("HEADCOUNT_LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Some((status, err));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[tokio::test]
async fn serve_refuses_an_undistributed_database_and_a_worker_and_migrate_citus_fixes_the_first() {
    if skipped() {
        return;
    }
    let admin = pg_url().unwrap();
    let db = PgDatabase::bare_citus(&admin);
    let (status, err) = serve_outcome(&db.url()).expect("serve started on an undistributed schema");
    assert!(!status.success());
    let line = err
        .lines()
        .find(|l| l.starts_with("headcount: error:"))
        .unwrap_or_default();
    assert!(
        line.contains("not distributed") && line.contains("headcount migrate --citus"),
        "{err}"
    );

    let out = headcount()
        .args(["migrate", "--citus", "--shards", "4"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("distributed by site"), "{text}");
    // Again: nothing left to place.
    let out = headcount()
        .args(["migrate", "--citus"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("placed 0 table(s)"));
    assert!(
        serve_outcome(&db.url()).is_none(),
        "serve did not start once distributed"
    );

    // The same database on a worker: refused before anything is written there.
    let worker = citus_workers(&admin).pop().unwrap();
    let mut on_worker = url::Url::parse(&worker).unwrap();
    on_worker.set_path(&format!("/{}", db.name));
    let (status, err) = serve_outcome(on_worker.as_str()).expect("serve started on a worker");
    assert!(!status.success());
    let line = err
        .lines()
        .find(|l| l.starts_with("headcount: error:"))
        .unwrap_or_default();
    assert!(
        line.contains("Citus worker") && line.contains("coordinator"),
        "{err}"
    );
}
