//! The README's walk-throughs, run as pasted: each shell block is taken from
//! README.md and run command by command in one `bash` (one shell state) against a
//! headcount on a random port, with `T` an admin token and `api` its URL. Every
//! command's exit status, HTTP status and answer are checked, so a walk-through that
//! no longer works when pasted fails here.

use serde_json::Value;

use crate::cli::settings_of;
use crate::helpers::spawn;

/// One command of a block as it ran.
#[derive(Debug)]
struct Step {
    command: String,
    exit: i32,
    out: String,
    /// The HTTP status of each `curl` the command ran.
    statuses: Vec<u16>,
}

/// What a command must be (a part of its text) and answer.
struct Expect {
    command: &'static str,
    /// `Some`: the command runs one `curl` that must answer this status.
    status: Option<u16>,
    check: fn(&str) -> bool,
}

const fn expect(command: &'static str, status: Option<u16>, check: fn(&str) -> bool) -> Expect {
    Expect {
        command,
        status,
        check,
    }
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or(Value::Null)
}

/// The first ```sh block under the heading `## {title}`.
fn block(title: &str) -> String {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let heading = format!("\n## {title}\n");
    let start = readme
        .find(&heading)
        .unwrap_or_else(|| panic!("no section {title:?}"))
        + heading.len();
    let section = &readme[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let open = section
        .find("```sh\n")
        .unwrap_or_else(|| panic!("no sh block in {title:?}"))
        + 6;
    let body = &section[open..];
    body[..body.find("```").expect("the block ends")].to_owned()
}

/// The commands of a block: continued lines joined, comments and blank lines left out.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        current.push_str(line);
        if current.ends_with('\\') {
            current.push('\n');
        } else {
            out.push(std::mem::take(&mut current));
        }
    }
    assert!(
        current.is_empty(),
        "the block ends inside a command: {current}"
    );
    out
}

/// Runs `commands` one after the other in one bash, after `T` and `api` are set;
/// `curl` reports each answer's status on stderr, and `headcount` is this build's.
async fn run(commands: &[String], admin: &str, url: &str) -> Vec<Step> {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_headcount"),
        dir.path().join("headcount"),
    )
    .unwrap();
    let mut script = format!(
        "T='{admin}'; api='{url}'\n\
         curl() {{ command curl -w '%{{stderr}}\\n@@status %{{http_code}}\\n' \"$@\"; }}\n"
    );
    for (i, c) in commands.iter().enumerate() {
        script.push_str(&format!(
            "{c}\nprintf '\\n@@end {i} %d\\n' $?; printf '\\n@@end {i}\\n' >&2\n"
        ));
    }
    let file = dir.path().join("walk.sh");
    std::fs::write(&file, script).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new("bash")
        .arg("--noprofile")
        .arg("--norc")
        .arg(&file)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("HEADCOUNT_URL")
        .env_remove("HEADCOUNT_TOKEN")
        .env("HEADCOUNT_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (mut outs, mut errs) = (stdout.as_str(), stderr.as_str());
    let mut steps = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let Some((o, rest)) = outs.split_once(&format!("\n@@end {i} ")) else {
            panic!("the walk-through stopped before command {i} ({command}):\n{stdout}\n{stderr}")
        };
        let (exit, rest) = rest.split_once('\n').unwrap();
        outs = rest;
        let (e, rest) = errs.split_once(&format!("\n@@end {i}\n")).unwrap();
        errs = rest;
        steps.push(Step {
            command: command.clone(),
            exit: exit.parse().unwrap(),
            out: o.to_owned(),
            statuses: e
                .lines()
                .filter_map(|l| l.strip_prefix("@@status "))
                .map(|s| s.parse().unwrap())
                .collect(),
        });
    }
    steps
}

fn check(steps: &[Step], expected: &[Expect]) {
    let listed: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
    assert_eq!(
        steps.len(),
        expected.len(),
        "the walk-through's commands changed: {listed:#?}"
    );
    for (step, e) in steps.iter().zip(expected) {
        assert!(
            step.command.contains(e.command),
            "expected `{}` here, found {step:?}",
            e.command
        );
        assert_eq!(step.exit, 0, "{step:?}");
        assert_eq!(
            step.statuses,
            e.status.into_iter().collect::<Vec<_>>(),
            "{step:?}"
        );
        assert!((e.check)(&step.out), "unexpected answer: {step:?}");
    }
}

#[tokio::test]
async fn the_curl_walk_through_works_when_pasted() {
    let app = spawn().await;
    let mut commands = commands(&block("A walk through with curl"));
    // The reader's own token and address take the place of the placeholders.
    let mut replaced = 0;
    for c in &mut commands {
        if c.starts_with("T=") || c.starts_with("api=") {
            *c = "true".to_owned();
            replaced += 1;
        }
    }
    assert_eq!(replaced, 2, "the block sets T and api: {commands:#?}");
    assert!(
        commands.iter().all(|c| !c.contains("127.0.0.1:8080")),
        "every request goes to $api"
    );
    let steps = run(&commands, &app.admin, &app.url).await;
    check(
        &steps,
        &[
            expect("true", None, str::is_empty),
            expect("H=", None, str::is_empty),
            expect("true", None, str::is_empty),
            expect("/v1/plans", Some(201), |o| {
                json(o)["code"] == "team" && json(o)["session_limit"] == 25
            }),
            expect("/v1/tenants", Some(201), |o| json(o)["slug"] == "acme"),
            expect("/v1/sites ", Some(201), |o| {
                let s = json(o);
                s["slug"] == "acme-erp"
                    && s["webhook_secret"]
                        .as_str()
                        .is_some_and(|w| w.starts_with("whsec_"))
            }),
            expect("S=$(", Some(201), str::is_empty),
            expect("/events", Some(200), |o| json(o)["accepted"] == 1),
            expect("/admissions", Some(200), |o| {
                json(o)["admitted"] == true && json(o)["counted"] == 2
            }),
            expect("/usage", Some(200), |o| {
                json(o)["active"] == 2 && json(o)["session_limit"] == 25
            }),
            expect("state=dangling", Some(200), |o| {
                json(o)["items"] == serde_json::json!([])
            }),
            expect("/users", Some(200), |o| {
                let users = json(o)["items"].clone();
                users.as_array().is_some_and(|u| u.len() == 2)
                    && users.as_array().unwrap().iter().all(|u| u["active"] == 1)
            }),
            expect("/sessions/kill", Some(200), |o| json(o)["killed"] == 0),
        ],
    );
    // The sessions the walk-through reported are the site's.
    let sessions = app
        .get("/v1/sites/acme-erp/sessions", &app.admin)
        .await
        .body;
    let mut users: Vec<&str> = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user"].as_str().unwrap())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["ann", "bob"]);
}

#[tokio::test]
async fn the_command_line_walk_through_works_when_pasted() {
    let app = spawn().await;
    let commands = commands(&block("The same from the command line"));
    let steps = run(&commands, &app.admin, &app.url).await;
    check(
        &steps,
        &[
            expect(
                "export HEADCOUNT_URL=$api HEADCOUNT_TOKEN=$T",
                None,
                str::is_empty,
            ),
            expect("headcount plan create", None, |o| {
                o.starts_with("code: business\nname: Business\nsession_limit: 60\n")
            }),
            expect("headcount tenant create", None, |o| {
                o.starts_with("slug: globex\nname: Globex Corp\nnotify_secret: whsec_")
            }),
            expect("headcount site create", None, |o| {
                let s = settings_of(o);
                s["SITE"] == "globex-crm"
                    && s["WEBHOOK_SECRET"]
                        .as_str()
                        .is_some_and(|w| w.starts_with("whsec_"))
            }),
            expect("headcount site list", None, |o| {
                o.lines()
                    .nth(1)
                    .is_some_and(|r| r.starts_with("globex-crm ") && r.contains(" 60 "))
            }),
            expect("headcount site update", None, |o| {
                o.contains("\neffective.session_limit: 40\n")
            }),
            expect("headcount site show", None, |o| {
                o.contains("\nprovider_session_limit: 40\n") && o.contains("\nplan: business\n")
            }),
            expect("headcount plan list --json", None, |o| {
                json(o)["items"][0]["code"] == "business"
            }),
        ],
    );
    // The token the block printed is the site's.
    let s = settings_of(&steps[3].out);
    let config = app
        .get("/v1/sites/globex-crm/config", s["TOKEN"].as_str().unwrap())
        .await;
    assert_eq!(config.status, reqwest::StatusCode::OK, "{}", config.text);
    assert_eq!(config.body["session_limit"], 40);
}
