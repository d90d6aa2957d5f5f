//! What a load run is asked to do: the scenarios, the command line and the checked
//! settings of one run.

use std::io::IsTerminal as _;
use std::time::Duration;

use serde::Serialize;

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `GET /healthz`: the HTTP stack alone, the ceiling the other scenarios are compared to.
    Healthz,
    /// `POST /v1/sites/{slug}/events` with `--batch` events per request.
    IngestBatch,
    /// `POST /v1/sites/{slug}/events` with one event per request.
    IngestSingle,
    /// `POST /v1/sites/{slug}/admissions` over a pool of `--sessions` sessions per site.
    Admission,
    /// `GET /v1/sites/{slug}/usage` after seeding `--sessions` sessions into every site.
    Usage,
    /// Single events, small batches, admissions and usage reads, interleaved.
    Mixed,
    /// Sites whose users log in, stay active, log out or abandon their sessions, with a
    /// local webhook receiver that verifies the pushes.
    Simulate,
    /// One edit of a plan shared by `--sites` sites, each with a webhook to a receiver
    /// inside the load tool: how long the `PATCH` takes to answer and how long until
    /// every site's `site.config_changed` push has arrived, signature verified. The
    /// server must allow webhooks to 127.0.0.1 (HEADCOUNT_WEBHOOK_DENY_PRIVATE off,
    /// the default). Runs once; --duration, --concurrency and --repeat do not apply.
    PlanEdit,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::IngestBatch => "ingest-batch",
            Self::IngestSingle => "ingest-single",
            Self::Admission => "admission",
            Self::Usage => "usage",
            Self::Mixed => "mixed",
            Self::Simulate => "simulate",
            Self::PlanEdit => "plan-edit",
        }
    }
}

/// `headcount load` options.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Base URL of the headcount to drive.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin token (creates the plan, tenant, sites and site tokens it uses; not
    /// needed for `healthz`).
    #[arg(long, env = "HEADCOUNT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, value_enum, default_value = "ingest-batch")]
    pub scenario: Scenario,
    /// How long to measure, like `10s` or `2m` [default: 10s unless --requests is given].
    #[arg(long)]
    pub duration: Option<String>,
    /// Stop after this many requests (whichever of --duration and --requests comes first).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Sites to create (in `plan-edit`, the sites on the edited plan).
    #[arg(long, default_value_t = 10)]
    pub sites: usize,
    /// Sessions per site (the pool the events and admissions use; seeded for `usage`).
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// Other active sessions placed in each site before measuring, in batches of 1000
    /// events, expiring a day later so that they stay active through the run. They
    /// are not in the pool the clients use, but they count against the limit, which
    /// is raised by as many so that admissions still measure the admit path: with
    /// `--scenario admission --sites 1` this shows how admissions fare on a site that
    /// already holds that many sessions.
    #[arg(
        long = "other-sessions",
        visible_alias = "background-active",
        default_value_t = 0
    )]
    pub background_active: usize,
    /// Extra ended sessions placed in each site before measuring, as a site keeps them
    /// for billing (they must not slow the admission path).
    #[arg(long, default_value_t = 0)]
    pub background_ended: usize,
    /// Events per request in `ingest-batch`.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Measure this many windows one after the other on the same sites (after one
    /// setup) and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Seed of the request mix, so that two runs send the same sequence.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object with the results as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Upper bounds that keep a mistyped flag from running away.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// With only `--requests`, a run still ends after this long.
pub(super) const REQUESTS_ONLY_CAP: Duration = Duration::from_secs(600);
const MAX_CONCURRENCY: usize = 1024;
const MAX_SITES: usize = 10_000;
const MAX_SESSIONS_PER_SITE: usize = 1_000_000;
const MAX_SEEDED_SESSIONS: usize = 10_000_000;
const MAX_REPEAT: usize = 10;
/// The server's own limit on events per request.
const MAX_BATCH: usize = 1000;

/// One run's settings, for callers in the same process (the tests).
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub token: Option<String>,
    pub scenario: Scenario,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub concurrency: usize,
    pub sites: usize,
    pub sessions: usize,
    pub batch: usize,
    /// Extra active and ended sessions per site, placed before measuring.
    pub background_active: usize,
    pub background_ended: usize,
    /// Measured windows after one setup; the summary holds the median of each figure.
    pub repeat: usize,
    pub seed: u64,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
}

impl Options {
    /// Defaults for a scenario against `url`.
    pub fn new(url: impl Into<String>, token: Option<String>, scenario: Scenario) -> Self {
        Self {
            url: url.into().trim_end_matches('/').to_owned(),
            token,
            scenario,
            duration: None,
            requests: None,
            concurrency: 16,
            sites: 10,
            sessions: 100,
            batch: 500,
            background_active: 0,
            background_ended: 0,
            repeat: 1,
            seed: 1,
            progress: false,
        }
    }

    pub(super) fn from_args(a: LoadArgs) -> Result<Self, String> {
        let duration = a
            .duration
            .as_deref()
            .map(crate::config::parse_duration)
            .transpose()
            .map_err(|e| format!("--duration: {e}"))?;
        Ok(Self {
            duration,
            requests: a.requests,
            concurrency: a.concurrency,
            sites: a.sites,
            sessions: a.sessions,
            batch: a.batch,
            background_active: a.background_active,
            background_ended: a.background_ended,
            repeat: a.repeat,
            seed: a.seed,
            progress: std::io::stderr().is_terminal(),
            ..Self::new(a.url, a.token, a.scenario)
        })
    }

    /// Checks the bounds and returns how long the run may last.
    pub(super) fn check(&self) -> Result<Duration, String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("--url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err("--url: expected http://host:port".into());
        }
        if self.scenario != Scenario::Healthz && self.token.is_none() {
            return Err("--token: an admin token is needed to create the sites".into());
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(format!("--concurrency: between 1 and {MAX_CONCURRENCY}"));
        }
        if !(1..=MAX_SITES).contains(&self.sites) {
            return Err(format!("--sites: between 1 and {MAX_SITES}"));
        }
        if !(1..=MAX_SESSIONS_PER_SITE).contains(&self.sessions) {
            return Err(format!("--sessions: between 1 and {MAX_SESSIONS_PER_SITE}"));
        }
        if self.scenario == Scenario::Usage && self.sites * self.sessions > MAX_SEEDED_SESSIONS {
            return Err(format!(
                "--sites × --sessions: at most {MAX_SEEDED_SESSIONS} seeded sessions"
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(format!("--batch: between 1 and {MAX_BATCH}"));
        }
        if !(1..=MAX_REPEAT).contains(&self.repeat) {
            return Err(format!("--repeat: between 1 and {MAX_REPEAT}"));
        }
        if self.scenario == Scenario::PlanEdit && self.repeat > 1 {
            // Each run would create another fleet of up to 10,000 sites.
            return Err("--repeat: plan-edit runs once".into());
        }
        if self.requests == Some(0) {
            return Err("--requests: at least 1".into());
        }
        match (self.duration, self.requests) {
            (Some(d), _) if d.is_zero() || d > MAX_DURATION => {
                Err("--duration: between 1ms and 1h".into())
            }
            (Some(d), _) => Ok(d),
            (None, Some(_)) => Ok(REQUESTS_ONLY_CAP),
            (None, None) => Ok(Duration::from_secs(10)),
        }
    }
}
