//! The sites a run drives: one plan, one tenant and N sites with their tokens, all
//! created through the API under a prefix unique to the run; and the session ids and
//! event bodies the clients send.

use std::fmt::Write as _;
use std::time::Duration;

use futures_util::StreamExt as _;
use rand::Rng as _;
use serde_json::{Value, json};

/// One site of the fleet.
#[derive(Debug, Clone)]
pub struct Site {
    pub slug: String,
    /// The site's own token (events, admissions).
    pub token: String,
    /// Signs the pushes to this site (`whsec_…`).
    pub webhook_secret: String,
}

#[derive(Debug)]
pub struct Fleet {
    pub prefix: String,
    pub sites: Vec<Site>,
}

impl Fleet {
    /// Site slug → webhook secret, what a receiver needs to check the pushes.
    pub fn webhook_secrets(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.sites
            .iter()
            .map(|s| (s.slug.clone(), s.webhook_secret.clone()))
    }
}

/// How many setup calls run at once.
const SETUP_CONCURRENCY: usize = 8;
/// Tries of one seeding batch before the setup gives up.
const SETUP_ATTEMPTS: u32 = 3;

/// A prefix no earlier run used, so that runs against one server do not collide.
pub fn unique_prefix() -> String {
    format!("load-{:08x}", rand::rng().random::<u32>())
}

/// Calls the API once; a non-2xx reply is an error with its body.
pub async fn call(
    client: &reqwest::Client, method: reqwest::Method, url: &str, token: &str, body: Option<&Value>,
) -> Result<Value, String> {
    let mut req = client.request(method.clone(), url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{method} {url}: {status}: {text}"));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// What [`create`] makes.
pub struct Spec<'a> {
    pub sites: usize,
    /// The plan values (`session_limit`, `over_limit`, …).
    pub plan: Value,
    /// When given, each site's `webhook_url` is this followed by the site's slug.
    pub webhook_base: Option<&'a str>,
    /// Mint a site token for each site: needed to send events and admissions, not
    /// for a fleet that only receives pushes (which saves a call per site).
    pub tokens: bool,
}

/// The code of the plan [`create`] makes for a run.
pub fn plan_code(prefix: &str) -> String {
    format!("{prefix}-plan")
}

/// Creates the plan, the tenant and the sites (with their tokens if asked).
pub async fn create(
    client: &reqwest::Client, base: &str, admin: &str, prefix: &str, spec: Spec<'_>,
) -> Result<Fleet, String> {
    let Spec {
        sites,
        mut plan,
        webhook_base,
        tokens,
    } = spec;
    let plan_code = plan_code(prefix);
    plan["code"] = json!(plan_code);
    plan["name"] = json!(format!("load test plan {prefix}"));
    post(client, &format!("{base}/v1/plans"), admin, &plan).await?;
    let tenant = format!("{prefix}-t");
    let body = json!({"slug": tenant, "name": format!("load test tenant {prefix}")});
    post(client, &format!("{base}/v1/tenants"), admin, &body).await?;
    let made: Vec<Result<Site, String>> = futures_util::stream::iter(0..sites)
        .map(|i| {
            let slug = format!("{prefix}-s{i}");
            let mut body = json!({"slug": slug, "tenant": tenant, "name": slug, "plan": plan_code});
            if let Some(b) = webhook_base {
                body["webhook_url"] = json!(format!("{b}{slug}"));
            }
            create_site(client, base, admin, slug, body, tokens)
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    Ok(Fleet {
        prefix: prefix.to_owned(),
        sites: made.into_iter().collect::<Result<_, _>>()?,
    })
}

async fn post(
    client: &reqwest::Client, url: &str, token: &str, body: &Value,
) -> Result<Value, String> {
    call(client, reqwest::Method::POST, url, token, Some(body)).await
}

/// Creates one site from its request `body`, and mints its token if asked.
async fn create_site(
    client: &reqwest::Client, base: &str, admin: &str, slug: String, body: Value, token: bool,
) -> Result<Site, String> {
    // A 503 (SQLite busy while the sender records the creation pushes of the sites
    // before) rolled the creation back: asking again is safe.
    let mut attempt = 1;
    let created = loop {
        match post(client, &format!("{base}/v1/sites"), admin, &body).await {
            Err(e) if e.contains(": 503 ") && attempt < SETUP_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => break other?,
        }
    };
    let token = if token {
        let body = json!({"role": "site", "site": slug, "ttl_seconds": 86_400});
        let minted = post(client, &format!("{base}/v1/tokens"), admin, &body).await?;
        minted["token"]
            .as_str()
            .ok_or("the token reply has no token")?
            .to_owned()
    } else {
        String::new()
    };
    Ok(Site {
        webhook_secret: created["webhook_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        token,
        slug,
    })
}

/// Places `active` live sessions and `ended` ended ones in every site, outside the
/// pool the workload uses, so that a measurement sees a site that already holds them.
/// The active ones carry an expiry a day ahead, so that they stay active (and
/// counted) through any run whatever the plan's session TTL. Not measured.
pub async fn background(
    client: &reqwest::Client, base: &str, fleet: &Fleet, active: usize, ended: usize,
    deadline: Duration,
) -> Result<(), String> {
    // The server's most events per request: 50,000 sessions are 50 requests.
    const BATCH: usize = 1000;
    let now = chrono::Utc::now();
    let at = rfc3339(now - chrono::Duration::seconds(60));
    let end = rfc3339(now - chrono::Duration::seconds(30));
    let until = rfc3339(now + chrono::Duration::days(1));
    let mut bodies = Vec::new();
    for (s, site) in fleet.sites.iter().enumerate() {
        let mut events: Vec<String> = Vec::with_capacity(active + 2 * ended);
        for n in 0..active {
            let mut e = String::new();
            push_event(&mut e, "session.started", &format!("bga{s}x{n}"), &at, n);
            // `{…}` → `{…,"expires_at":"…"}`
            e.pop();
            let _ = write!(e, ",\"expires_at\":\"{until}\"}}");
            events.push(e);
        }
        for n in 0..ended {
            for (kind, when) in [("session.started", &at), ("session.ended", &end)] {
                let mut e = String::new();
                push_event(&mut e, kind, &format!("bge{s}x{n}"), when, n);
                events.push(e);
            }
        }
        for chunk in events.chunks(BATCH) {
            bodies.push((site, format!("{{\"events\":[{}]}}", chunk.join(","))));
        }
    }
    post_batches(
        client,
        base,
        bodies,
        "placing background sessions",
        deadline,
    )
    .await
}

/// Fills every site with `sessions` sessions in 500-event batches, their last activity
/// spread over the last `spread_seconds`, so that reads see a realistic mix of live and
/// dangling sessions. Not measured.
pub async fn seed(
    client: &reqwest::Client, base: &str, fleet: &Fleet, sessions: usize, spread_seconds: i64,
    seed: u64, deadline: Duration,
) -> Result<(), String> {
    const SEED_BATCH: usize = 500;
    let now = chrono::Utc::now();
    let jobs: Vec<(usize, usize)> = (0..fleet.sites.len())
        .flat_map(|s| (0..sessions).step_by(SEED_BATCH).map(move |from| (s, from)))
        .collect();
    let bodies: Vec<(&Site, String)> = jobs
        .into_iter()
        .map(|(s, from)| {
            let site = &fleet.sites[s];
            let to = (from + SEED_BATCH).min(sessions);
            let mut body = String::with_capacity((to - from) * 120);
            body.push_str("{\"events\":[");
            for n in from..to {
                let back = (mix(seed ^ 0x5eed, s as u64, n as u64) % (spread_seconds.max(1) as u64))
                    as i64;
                let at = rfc3339(now - chrono::Duration::seconds(back));
                if n > from {
                    body.push(',');
                }
                push_event(
                    &mut body,
                    "session.started",
                    &session_id(seed, s, n),
                    &at,
                    n,
                );
            }
            body.push_str("]}");
            (site, body)
        })
        .collect();
    post_batches(client, base, bodies, "seeding", deadline).await
}

/// Posts event batches to their sites, a few at a time, within `deadline`. Setup
/// work, not measured.
async fn post_batches(
    client: &reqwest::Client, base: &str, bodies: Vec<(&Site, String)>, what: &str,
    deadline: Duration,
) -> Result<(), String> {
    let work = futures_util::stream::iter(bodies)
        .map(|(site, body)| {
            let url = format!("{base}/v1/sites/{}/events", site.slug);
            async move {
                // Merging is idempotent, so a batch that timed out or met a 5xx on a
                // machine busy with the seeding itself is simply sent again.
                let mut attempt = 1;
                loop {
                    let sent = client
                        .post(&url)
                        .bearer_auth(&site.token)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let retry = match sent {
                        Ok(res) if res.status().is_success() => return Ok(()),
                        Ok(res) if res.status().is_server_error() => {
                            format!("{what}: {}", res.status())
                        }
                        Ok(res) => return Err(format!("{what}: {}", res.status())),
                        Err(e) => format!("{what}: {e}"),
                    };
                    if attempt == SETUP_ATTEMPTS {
                        return Err(retry);
                    }
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<Result<(), String>>>();
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| format!("{what} did not finish within {deadline:?}"))?
        .into_iter()
        .collect()
}

/// splitmix64 of three inputs: cheap, and the same session ids in every run with the
/// same seed.
pub fn mix(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(b.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        .wrapping_add(c.wrapping_mul(0x94d0_49bb_1331_11eb))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Session `n` of site `site`: 32 hex digits, like the hash of a session key an agent
/// sends.
pub fn session_id(seed: u64, site: usize, n: usize) -> String {
    let a = mix(seed, site as u64, n as u64);
    let b = mix(a, seed, 0x5e55);
    format!("{a:016x}{b:016x}")
}

pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Appends one event object. The values are hex ids, fixed words and RFC 3339 times,
/// none of which needs JSON escaping, so the body is written without a serializer.
pub fn push_event(out: &mut String, kind: &str, session: &str, at: &str, user: usize) {
    let _ = write!(
        out,
        "{{\"type\":\"{kind}\",\"session\":\"{session}\",\"at\":\"{at}\",\"user\":\"user-{user}\"}}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_stable_printable_and_distinct() {
        let a = session_id(1, 0, 0);
        assert_eq!(a, session_id(1, 0, 0));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, session_id(1, 0, 1));
        assert_ne!(a, session_id(1, 1, 0));
        assert_ne!(a, session_id(2, 0, 0));
    }

    #[test]
    fn an_event_body_is_json() {
        let mut s = String::from("{\"events\":[");
        push_event(
            &mut s,
            "session.activity",
            "abc",
            "2026-01-01T00:00:00.000Z",
            7,
        );
        s.push_str("]}");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["events"][0]["user"], "user-7");
    }
}
