//! `headcount plan|tenant|site`: the built binary, run as a subprocess against a
//! headcount on a random port, as an operator would run it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, free_port, spawn};
use crate::receiver::Receiver;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    fn failed(&self) -> &str {
        assert_eq!(
            self.code, 1,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stderr
    }
}

/// Runs `headcount ARGS` with `token` (none: no token at all) against `url`.
pub async fn headcount_at(url: &str, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = crate::helpers::headcount();
    cmd.env_remove("HEADCOUNT_TOKEN")
        .env_remove("HEADCOUNT_URL")
        .args(args)
        .arg("--url")
        .arg(url);
    if let Some(t) = token {
        cmd.env("HEADCOUNT_TOKEN", t);
    }
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("run headcount");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn hc(app: &TestApp, args: &[&str]) -> Run {
    headcount_at(&app.url, Some(&app.admin), args).await
}

/// [`hc`] with the arguments written as one line; `'…'` holds spaces together.
async fn sh(app: &TestApp, line: &str) -> Run {
    let words: Vec<&str> = line
        .split('\'')
        .enumerate()
        .flat_map(|(i, part)| {
            if i % 2 == 1 {
                vec![part]
            } else {
                part.split_whitespace().collect()
            }
        })
        .collect();
    hc(app, &words).await
}

/// The `HEADCOUNT` dict of what `site create` printed, read by Python as settings.py
/// would read it (so all of the output must be valid Python).
pub fn settings_of(stdout: &str) -> Value {
    let mut py = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\nns = {}\nexec(sys.stdin.read(), ns)\nprint(json.dumps(ns['HEADCOUNT']))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    py.stdin
        .take()
        .unwrap()
        .write_all(stdout.as_bytes())
        .unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "not Python:\n{stdout}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn plans_are_created_listed_shown_and_updated() {
    let app = spawn().await;
    let made = sh(&app, "plan create --code team --name Team --session-limit 25 --monthly-price-cents 4900 --currency CHF --count-mode live --reserved-roles admin,staff")
    .await;
    let text = made.ok();
    assert!(
        text.starts_with("code: team\nname: Team\nsession_limit: 25\n"),
        "{text}"
    );
    assert!(
        text.contains("\ncurrency: CHF\n") && text.contains("\ncount_mode: live\n"),
        "{text}"
    );
    assert!(text.contains("\nreserved_roles: admin,staff\n"), "{text}");
    // What the command printed is what the API holds.
    let plan = app.get("/v1/plans/team", &app.admin).await.body;
    assert_eq!(plan["monthly_price_cents"], 4900);
    assert_eq!(plan["reserved_roles"], json!(["admin", "staff"]));

    sh(
        &app,
        "plan create --code solo --name Solo --session-limit 3",
    )
    .await
    .ok();
    let list = sh(&app, "plan list").await;
    let rows: Vec<&str> = list.ok().lines().collect();
    assert_eq!(rows.len(), 3, "{}", list.stdout);
    assert!(
        rows[0].starts_with("CODE") && rows[0].contains("LIMIT"),
        "{}",
        rows[0]
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("team ") && r.contains(" 25 ")),
        "{rows:?}"
    );
    let listed = sh(&app, "plan list --json").await.json();
    let codes: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 2);
    assert!(codes.contains(&"team") && codes.contains(&"solo"));

    let updated = sh(&app, "plan update team --session-limit 30 --name Team+").await;
    assert!(
        updated.ok().contains("session_limit: 30\n"),
        "{}",
        updated.stdout
    );
    let shown = sh(&app, "plan show team").await;
    assert!(
        shown
            .ok()
            .starts_with("code: team\nname: Team+\nsession_limit: 30\n"),
        "{}",
        shown.stdout
    );
    let json = sh(&app, "plan show team --json").await.json();
    assert_eq!(json, app.get("/v1/plans/team", &app.admin).await.body);
}

#[tokio::test]
async fn tenants_are_created_listed_shown_and_updated() {
    let app = spawn().await;
    let made = sh(
        &app,
        "tenant create --slug acme --name 'Acme Ltd' --billing-email billing@acme.example",
    )
    .await;
    let text = made.ok();
    assert!(
        text.starts_with("slug: acme\nname: Acme Ltd\nnotify_secret: whsec_"),
        "{text}"
    );
    let made = sh(&app, "tenant create --slug globex --name Globex --json")
        .await
        .json();
    assert!(
        made["notify_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    assert_eq!(made["slug"], "globex");

    let list = sh(&app, "tenant list").await;
    let rows: Vec<&str> = list.ok().lines().collect();
    assert_eq!(rows.len(), 3, "{}", list.stdout);
    assert!(
        rows.iter()
            .any(|r| r.starts_with("acme ") && r.contains("billing@acme.example"))
    );

    sh(&app, "tenant update acme --name 'Acme Group'")
        .await
        .ok();
    let shown = sh(&app, "tenant show acme").await;
    assert!(
        shown.ok().starts_with("slug: acme\nname: Acme Group\n"),
        "{}",
        shown.stdout
    );
    sh(&app, "tenant update acme --clear billing_email")
        .await
        .ok();
    let t = sh(&app, "tenant show acme --json").await.json();
    assert_eq!(t["name"], "Acme Group");
    assert_eq!(t["billing_email"], Value::Null);
}

async fn plan_and_tenant(app: &TestApp) {
    sh(
        app,
        "plan create --code team --name Team --session-limit 25",
    )
    .await
    .ok();
    sh(
        app,
        "plan create --code business --name Business --session-limit 60",
    )
    .await
    .ok();
    sh(app, "tenant create --slug acme --name Acme").await.ok();
}

/// The block `site create` prints holds a token that the events endpoint takes and
/// the secret that the site's pushes are signed with.
#[tokio::test]
async fn site_create_prints_a_settings_block_that_works() {
    let app = spawn().await;
    plan_and_tenant(&app).await;
    let rx = Receiver::start().await;
    let made = hc(
        &app,
        &[
            "site",
            "create",
            "--slug",
            "acme-erp",
            "--tenant",
            "acme",
            "--plan",
            "team",
            "--name",
            "Acme ERP",
            "--webhook-url",
            &rx.url,
        ],
    )
    .await;
    let text = made.ok();
    assert!(text.contains("\nHEADCOUNT = {\n"), "{text}");
    assert!(text.contains(&format!("#     {}\n", rx.url)), "{text}");
    let s = settings_of(text);
    assert_eq!(s["URL"], app.url.as_str());
    assert_eq!(s["SITE"], "acme-erp");
    assert_eq!(s["MODE"], "local");
    let keys: Vec<&String> = s.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["MODE", "SITE", "TOKEN", "URL", "WEBHOOK_SECRET"]);

    // The token is a site token for this site.
    let token = s["TOKEN"].as_str().unwrap();
    let ev = json!([{"type": "session.started", "session": "9f2c41d07b3e", "at": app.at(0), "user": "ann"}]);
    let r = app.events("acme-erp", token, ev).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["accepted"], 1, "{}", r.text);
    assert_eq!(app.usage("acme-erp").await["active"], 1);

    // The secret verifies the pushes headcount sends the site.
    rx.trust(s["WEBHOOK_SECRET"].as_str().unwrap());
    let got = rx
        .wait_for("the first config push", |m| {
            m.iter().any(|x| x.body["type"] == "site.config_changed")
        })
        .await;
    assert!(
        got.iter()
            .filter(|m| m.body["type"] == "site.config_changed")
            .all(|m| m.signature_ok)
    );

    // --agent-url and --mode go into the block; without a webhook URL it says how to set one.
    let other = sh(&app, "site create --slug acme-shop --tenant acme --plan team --mode central --agent-url https://hc.provider.example/")
    .await;
    let s = settings_of(other.ok());
    assert_eq!(s["URL"], "https://hc.provider.example");
    assert_eq!(s["MODE"], "central");
    assert!(other.stdout.contains(
        "headcount site update acme-shop --webhook-url https://<the site>/headcount/webhook/"
    ));
    let site = app.get("/v1/sites/acme-shop", &app.admin).await.body;
    assert_eq!(site["name"], "acme-shop", "the name defaults to the slug");
}

#[tokio::test]
async fn site_create_with_json_gives_the_site_the_token_and_the_settings() {
    let app = spawn().await;
    plan_and_tenant(&app).await;
    let out = sh(
        &app,
        "site create --slug acme-erp --tenant acme --plan team --json",
    )
    .await
    .json();
    assert_eq!(out["site"]["slug"], "acme-erp");
    assert_eq!(out["site"]["plan"], "team");
    let secret = out["site"]["webhook_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(out["settings"]["WEBHOOK_SECRET"], secret);
    assert_eq!(out["settings"]["TOKEN"], out["token"]["token"]);
    assert_eq!(out["settings"]["SITE"], "acme-erp");
    let token = out["token"]["token"].as_str().unwrap();
    let r = app.get("/v1/sites/acme-erp/config", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["session_limit"], 25);
}

#[tokio::test]
async fn sites_are_listed_shown_and_updated() {
    let app = spawn().await;
    plan_and_tenant(&app).await;
    sh(&app, "tenant create --slug globex --name Globex")
        .await
        .ok();
    for (slug, tenant) in [
        ("acme-erp", "acme"),
        ("acme-shop", "acme"),
        ("globex-crm", "globex"),
    ] {
        hc(
            &app,
            &[
                "site", "create", "--slug", slug, "--tenant", tenant, "--plan", "team",
            ],
        )
        .await
        .ok();
    }
    let all = sh(&app, "site list").await;
    assert_eq!(all.ok().lines().count(), 4, "{}", all.stdout);
    let acme = sh(&app, "site list --tenant acme").await;
    let rows: Vec<&str> = acme.ok().lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", acme.stdout);
    assert!(
        rows.iter()
            .all(|r| r.starts_with("acme-") && r.contains(" team ")),
        "{rows:?}"
    );
    let json = sh(&app, "site list --tenant globex --json").await.json();
    assert_eq!(json["items"].as_array().unwrap().len(), 1);
    assert_eq!(json["items"][0]["slug"], "globex-crm");

    let shown = sh(&app, "site show acme-erp").await;
    let text = shown.ok();
    assert!(
        text.starts_with("slug: acme-erp\nname: acme-erp\ntenant: acme\nplan: team\n"),
        "{text}"
    );
    assert!(text.contains("\neffective.session_limit: 25\n"), "{text}");

    sh(&app, "site update acme-erp --plan business --session-limit 40 --webhook-url https://erp.acme.example/headcount/webhook/")
    .await
    .ok();
    let text = sh(&app, "site show acme-erp").await.ok().to_owned();
    assert!(text.contains("\nplan: business\n"), "{text}");
    assert!(
        text.contains("\nwebhook_url: https://erp.acme.example/headcount/webhook/\n"),
        "{text}"
    );
    assert!(text.contains("\neffective.session_limit: 40\n"), "{text}");

    // Clearing the override brings back the (new) plan's limit.
    sh(
        &app,
        "site update acme-erp --clear session_limit --clear webhook_url",
    )
    .await
    .ok();
    let site = sh(&app, "site show acme-erp --json").await.json();
    assert_eq!(site["effective"]["session_limit"], 60);
    assert_eq!(site["webhook_url"], Value::Null);
}

#[tokio::test]
async fn failures_say_what_went_wrong_and_exit_1() {
    let app = spawn().await;
    plan_and_tenant(&app).await;

    // A bad token: the problem's title, as the API gives it.
    let api = app.get("/v1/plans", "not-a-token").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let title = api.body["title"].as_str().unwrap();
    let bad = headcount_at(&app.url, Some("not-a-token"), &["plan", "list"]).await;
    let err = bad.failed();
    assert!(err.contains(title) && err.contains("401"), "{err}");
    assert!(bad.stdout.is_empty());

    // An unknown plan: the API's answer, with the field that is wrong.
    let body = json!({"slug": "x", "tenant": "acme", "name": "x", "plan": "nope"});
    let api = app.post("/v1/sites", &app.admin, body).await;
    assert!(api.status.is_client_error(), "{}", api.text);
    let unknown = sh(&app, "site create --slug x --tenant acme --plan nope").await;
    let err = unknown.failed();
    assert!(err.contains(api.body["title"].as_str().unwrap()), "{err}");
    assert!(err.contains(&api.status.as_u16().to_string()), "{err}");
    assert!(err.contains("no plan nope"), "{err}");
    assert_eq!(
        app.get("/v1/sites/x", &app.admin).await.status,
        StatusCode::NOT_FOUND
    );

    // The field that is wrong is named, with the API's own words for it.
    let body = json!({"code": "Bad Code", "name": "x", "session_limit": 3});
    let api = app.post("/v1/plans", &app.admin, body).await;
    let field = &api.body["errors"][0];
    assert_eq!(field["field"], "code", "{}", api.text);
    let invalid = sh(
        &app,
        "plan create --code 'Bad Code' --name x --session-limit 3",
    )
    .await;
    let err = invalid.failed();
    let said = format!("code: {}", field["message"].as_str().unwrap());
    assert!(err.contains(&said), "{err}");

    let missing = sh(&app, "plan show nope").await;
    assert!(missing.failed().contains("404"), "{}", missing.stderr);

    // No token at all, nothing to change, nobody listening.
    let none = headcount_at(&app.url, None, &["tenant", "list"]).await;
    assert!(
        none.failed()
            .contains("no token: pass --token or set HEADCOUNT_TOKEN"),
        "{}",
        none.stderr
    );
    let nothing = sh(&app, "site update acme-erp").await;
    assert!(
        nothing.failed().contains("nothing to change"),
        "{}",
        nothing.stderr
    );
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let refused = headcount_at(&nobody, Some(&app.admin), &["site", "list"]).await;
    let err = refused.failed();
    assert!(
        err.contains(&format!("cannot reach headcount at {nobody}/")),
        "{err}"
    );
}

#[tokio::test]
async fn every_subcommand_explains_itself() {
    for sub in [
        ["plan", "create"],
        ["plan", "update"],
        ["tenant", "create"],
        ["tenant", "update"],
        ["site", "create"],
        ["site", "list"],
        ["site", "update"],
    ] {
        let help = headcount_at("http://127.0.0.1:1", None, &[sub[0], sub[1], "--help"]).await;
        let text = help.ok();
        assert!(text.contains("Example:\n  headcount "), "{sub:?}: {text}");
        assert!(
            text.contains("--token <TOKEN>") && text.contains("--json"),
            "{sub:?}: {text}"
        );
    }
}
