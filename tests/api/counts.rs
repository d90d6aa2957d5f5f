//! The per-site counts an admission decides from (kept as a row, moved by every write
//! and by time) against a full count from the session rows, after random
//! interleavings of events, snapshots, admissions, kills, evictions, expiry, the
//! retention sweep and a clock that moves both ways. Some sessions are admitted with
//! an exempt role: listed, never counted.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A small deterministic generator, so that a failing history can be replayed from
/// its seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const SESSIONS: u64 = 14;
const USERS: [&str; 3] = ["ann", "bob", "cy"];

struct Site {
    slug: &'static str,
    token: String,
    live: bool,
}

/// What the admission path counts now: the `counted` of an admission that changes
/// nothing (a session that has ended is refused, with the count it was judged by).
async fn decided_count(app: &TestApp, site: &Site) -> i64 {
    let r = app.admit(site.slug, &site.token, "probe").await;
    assert_eq!(r.body["outcome"], "session_ended", "{}", r.text);
    r.body["counted"].as_i64().unwrap()
}

/// A full count from the session rows, through the Sessions table: those not exempt,
/// and how many exempt ones were listed besides.
async fn listed_with_exempt(app: &TestApp, site: &Site) -> (i64, i64) {
    let state = if site.live { "live" } else { "active" };
    let r = app
        .get(
            &format!("/v1/sites/{}/sessions?state={state}&limit=200", site.slug),
            &app.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let items = r.body["items"].as_array().cloned().unwrap_or_default();
    let exempt = items.iter().filter(|s| s["exempt"] == true).count() as i64;
    (items.len() as i64 - exempt, exempt)
}

async fn listed(app: &TestApp, site: &Site) -> i64 {
    listed_with_exempt(app, site).await.0
}

/// Checks every site; returns the largest count seen and the exempt sessions listed.
async fn check(app: &TestApp, sites: &[Site], step: usize, seed: u64) -> (i64, i64) {
    let (mut most, mut exempt_seen) = (0, 0);
    for site in sites {
        let decided = decided_count(app, site).await;
        let usage = app.usage(site.slug).await;
        let (listed, exempt) = listed_with_exempt(app, site).await;
        exempt_seen += exempt;
        assert_eq!(
            (decided, usage["counted"].as_i64().unwrap(), listed),
            (listed, listed, listed),
            "site {} after step {step} of seed {seed}: decided, usage, Sessions table",
            site.slug
        );
        most = most.max(listed);
    }
    (most, exempt_seen)
}

async fn one_step(app: &TestApp, sites: &[Site], rng: &mut Lcg) {
    let site = rng.pick(sites);
    let session = format!("s{}", rng.below(SESSIONS));
    let user = *rng.pick(&USERS);
    let base = format!("/v1/sites/{}", site.slug);
    match rng.below(11) {
        0 | 1 => {
            // The last two sessions ask with an exempt role (kept by the row from
            // the first admission or event that wrote it).
            let roles = if session == "s12" || session == "s13" {
                json!(["robot"])
            } else {
                json!([])
            };
            let r = app
                .post(
                    &format!("{base}/admissions"),
                    &site.token,
                    json!({"session": session, "user": user, "roles": roles}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        2 | 3 => {
            let kind = *rng.pick(&["session.started", "session.activity", "session.ended"]);
            let mut e = json!({"type": kind, "session": session, "at": app.at(0), "user": user});
            if kind != "session.ended" && rng.below(2) == 0 {
                e["expires_at"] = json!(app.at(rng.below(400) as i64 - 60));
            }
            let r = app.events(site.slug, &site.token, json!([e])).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        4 => {
            let mut sessions: Vec<Value> = Vec::new();
            for i in 0..SESSIONS {
                if rng.below(3) == 0 {
                    sessions.push(
                        json!({"session": format!("s{i}"), "user": USERS[i as usize % 3],
                           "last_activity_at": app.at(-(rng.below(150) as i64)),
                           "expires_at": app.at(rng.below(300) as i64 + 1)}),
                    );
                }
            }
            let r = app
                .put(
                    &format!("{base}/sessions"),
                    &site.token,
                    json!({"as_of": app.at(0), "sessions": sessions}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        5 => {
            let r = app
                .delete(&format!("{base}/sessions/{session}"), &app.admin)
                .await;
            assert!(
                r.status == StatusCode::OK
                    || r.status == StatusCode::NO_CONTENT
                    || r.status == StatusCode::NOT_FOUND,
                "{}",
                r.text
            );
        }
        6 => {
            let state = *rng.pick(&["dangling", "active"]);
            let r = app
                .post(
                    &format!("{base}/sessions/kill"),
                    &app.admin,
                    json!({"state": state, "user": user}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        7 => headcount::jobs::retention::sweep(&app.state)
            .await
            .map(|_| ())
            .unwrap(),
        // Mostly forward, sometimes far enough to expire or idle everything, and
        // sometimes back (another process's clock, or the injected one).
        8 | 9 => app.advance(rng.below(90) as i64),
        _ => app.advance(if rng.below(3) == 0 {
            -(rng.below(40) as i64)
        } else {
            rng.below(400) as i64
        }),
    }
}

async fn setup(app: &TestApp) -> Vec<Site> {
    let mut sites = Vec::new();
    for (slug, mode, over) in [
        ("cnt-a", "active", "reject"),
        ("cnt-l", "live", "reject"),
        ("cnt-e", "active", "evict_dangling"),
    ] {
        let token = app
            .site_with(
                slug,
                json!({"session_limit": 6, "count_mode": mode, "over_limit": over,
                       "idle_timeout_seconds": 60, "session_ttl_seconds": 240,
                       "exempt_roles": ["robot"]}),
            )
            .await;
        let site = Site {
            slug,
            token,
            live: mode == "live",
        };
        // The probe: an ended session, so asking for it decides nothing.
        app.admit(slug, &site.token, "probe").await;
        let r = app
            .delete(&format!("/v1/sites/{slug}/sessions/probe"), &app.admin)
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        sites.push(site);
    }
    sites
}

#[actix_web::test]
async fn counts_agree_with_a_full_count_after_random_histories() {
    for seed in [7_u64, 1_234_567, 99] {
        let app = spawn().await;
        let sites = setup(&app).await;
        let mut rng = Lcg(seed);
        let (mut most, mut exempt_seen) = (0, 0);
        for step in 0..120 {
            one_step(&app, &sites, &mut rng).await;
            if step % 3 == 0 {
                let (m, e) = check(&app, &sites, step, seed).await;
                most = most.max(m);
                exempt_seen += e;
            }
        }
        check(&app, &sites, 120, seed).await;
        assert!(
            exempt_seen > 0,
            "seed {seed} never listed an exempt session"
        );
        // A history that never filled a site would prove little.
        assert!(
            most >= 3,
            "seed {seed} never had more than {most} sessions counted"
        );
    }
}

/// The time-driven moves alone: sessions expire and turn dangling between two
/// admissions with no write in between, forward and back.
#[actix_web::test]
async fn time_moves_sessions_out_of_the_count_and_back() {
    let app = spawn().await;
    let sites = setup(&app).await;
    let live = &sites[1];
    for (i, ttl) in [30_i64, 90, 150].iter().enumerate() {
        let r = app
            .post(
                &format!("/v1/sites/{}/admissions", live.slug),
                &live.token,
                json!({"session": format!("t{i}"), "expires_at": app.at(*ttl)}),
            )
            .await;
        assert_eq!(r.body["admitted"], true, "{}", r.text);
    }
    assert_eq!(decided_count(&app, live).await, 3);
    // Idle past 60 s: all three dangling, so none counts in live mode.
    app.advance(61);
    assert_eq!(decided_count(&app, live).await, 0);
    // Back before the idle timeout: live again.
    app.advance(-30);
    assert_eq!(decided_count(&app, live).await, 2, "t0 expired at 30 s");
    app.advance(-31);
    assert_eq!(decided_count(&app, live).await, 3);
    assert_eq!(listed(&app, live).await, 3);
}
