//! Prometheus text metrics: request counts and latency histograms by route and status,
//! and the business counters and gauges of DESIGN §15. Counters count what this
//! process did; gauges read from the database (sessions, outbox) are provider-wide
//! and say so in their help text, so that a dashboard takes their `max` across
//! processes, not their sum.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Admission outcomes, each with a series from the start (0 included).
pub const OUTCOMES: [&str; 8] = [
    "within_limit",
    "evicted_dangling",
    "overage",
    "replaced",
    "limit_reached",
    "user_limit_reached",
    "pool_limit_reached",
    "session_ended",
];
/// Push kinds, each with a series from the start.
pub const PUSH_TYPES: [&str; 4] = [
    crate::db::outbox::KIND_CONFIG,
    crate::db::outbox::KIND_KILL,
    crate::db::outbox::KIND_UTILIZATION_HIGH,
    crate::db::outbox::KIND_LIMIT_REACHED,
];
/// How a push attempt ended.
pub const DELIVERY_RESULTS: [&str; 4] = ["delivered", "failed", "retried", "gone"];

/// Fleet-wide session counts, as the sampler last read them from the database.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fleet {
    pub active: i64,
    pub live: i64,
    pub dangling: i64,
    pub sites_at_limit: i64,
    /// By tenant slug: (active, live, dangling); kept only with
    /// `HEADCOUNT_METRICS_PER_TENANT=true`.
    pub by_tenant: BTreeMap<String, (i64, i64, i64)>,
}

/// The outbox as the scrape read it: pending rows by kind, and the oldest one's age.
#[derive(Debug, Default, Clone)]
pub struct Outbox {
    pub pending: BTreeMap<String, i64>,
    pub oldest_pending_seconds: f64,
}

pub use crate::db::WaitHistogram;

/// Renders the pool checkout waits as a Prometheus histogram.
fn render_pool_wait(wait: &WaitHistogram, out: &mut String) {
    out.push_str(
        "# HELP headcount_db_pool_wait_seconds Time a query waited for a pooled database connection.\n\
         # TYPE headcount_db_pool_wait_seconds histogram\n",
    );
    let (buckets, count, sum) = wait.snapshot();
    for (b, n) in buckets {
        let _ = writeln!(
            out,
            "headcount_db_pool_wait_seconds_bucket{{le=\"{b}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "headcount_db_pool_wait_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(out, "headcount_db_pool_wait_seconds_sum {sum}");
    let _ = writeln!(out, "headcount_db_pool_wait_seconds_count {count}");
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    admissions: Mutex<BTreeMap<String, u64>>,
    events_accepted: AtomicU64,
    events_rejected: AtomicU64,
    snapshots: AtomicU64,
    deliveries: Mutex<BTreeMap<(String, &'static str), u64>>,
    fleet: Mutex<Fleet>,
    /// Milliseconds; 0 until the sampler's first run.
    sampler_last_run_ms: AtomicI64,
}

impl Metrics {
    /// One admission decided, by its outcome (`within_limit`, `limit_reached`, ...).
    pub fn admission(&self, outcome: &str) {
        let mut m = self.admissions.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(outcome.to_owned()).or_default() += 1;
    }

    /// One event batch: how many events were applied and how many rejected.
    pub fn events(&self, accepted: usize, rejected: usize) {
        self.events_accepted
            .fetch_add(accepted as u64, Ordering::Relaxed);
        self.events_rejected
            .fetch_add(rejected as u64, Ordering::Relaxed);
    }

    /// One snapshot applied.
    pub fn snapshot(&self) {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
    }

    /// One push attempt of `kind` that ended in `result` (one of [`DELIVERY_RESULTS`]).
    pub fn delivery(&self, kind: &str, result: &'static str) {
        let mut m = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((kind.to_owned(), result)).or_default() += 1;
    }

    /// The sampler's reading of the fleet, at `at_ms`.
    pub fn sampled(&self, fleet: Fleet, at_ms: i64) {
        *self.fleet.lock().unwrap_or_else(|e| e.into_inner()) = fleet;
        self.sampler_last_run_ms.store(at_ms, Ordering::Relaxed);
    }

    /// The business series: counters of this process, gauges of the fleet.
    pub fn render_business(
        &self, outbox: &Outbox, pool_wait: &WaitHistogram, per_tenant: bool,
    ) -> String {
        let mut out = String::new();
        self.render_fleet(&mut out, per_tenant);
        self.render_intake(&mut out);
        let push_types = render_outbox(&mut out, outbox);
        self.render_deliveries(&mut out, &push_types);
        render_pool_wait(pool_wait, &mut out);
        let _ = write!(
            out,
            "# HELP headcount_build_info The running release and the schema version it knows.\n\
             # TYPE headcount_build_info gauge\n\
             headcount_build_info{{version=\"{}\",schema=\"{}\"}} 1\n",
            crate::db::migrations::RELEASE,
            crate::db::migrations::schema_version()
        );
        out
    }

    /// The sampler's gauges: sessions by state (and tenant), sites at their limit.
    fn render_fleet(&self, out: &mut String, per_tenant: bool) {
        let fleet = self.fleet.lock().unwrap_or_else(|e| e.into_inner()).clone();
        out.push_str(
            "# HELP headcount_sessions User sessions by state, provider-wide: read from the database by the sampler (every process reports the same value).\n\
             # TYPE headcount_sessions gauge\n",
        );
        if per_tenant {
            for (tenant, (a, l, d)) in &fleet.by_tenant {
                for (state, n) in [("active", a), ("live", l), ("dangling", d)] {
                    let _ = writeln!(
                        out,
                        "headcount_sessions{{state=\"{state}\",tenant=\"{tenant}\"}} {n}"
                    );
                }
            }
        } else {
            for (state, n) in [
                ("active", fleet.active),
                ("live", fleet.live),
                ("dangling", fleet.dangling),
            ] {
                let _ = writeln!(out, "headcount_sessions{{state=\"{state}\"}} {n}");
            }
        }
        let _ = write!(
            out,
            "# HELP headcount_sites_at_limit Sites whose counted sessions reach their limit, provider-wide: read from the database by the sampler.\n\
             # TYPE headcount_sites_at_limit gauge\n\
             headcount_sites_at_limit {}\n",
            fleet.sites_at_limit
        );
        let _ = write!(
            out,
            "# HELP headcount_sampler_last_run_timestamp_seconds When this process's usage sampler last finished a run (Unix time).\n\
             # TYPE headcount_sampler_last_run_timestamp_seconds gauge\n\
             headcount_sampler_last_run_timestamp_seconds {}\n",
            self.sampler_last_run_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }

    /// What the sites told this process: admissions, events, snapshots.
    fn render_intake(&self, out: &mut String) {
        let admissions = self
            .admissions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.push_str(
            "# HELP headcount_admissions_total Admissions decided by this process, by outcome.\n\
             # TYPE headcount_admissions_total counter\n",
        );
        for (o, n) in with_zeros(&OUTCOMES, &admissions) {
            let _ = writeln!(out, "headcount_admissions_total{{outcome=\"{o}\"}} {n}");
        }
        let _ = write!(
            out,
            "# HELP headcount_events_total Session events received by this process, by result.\n\
             # TYPE headcount_events_total counter\n\
             headcount_events_total{{result=\"accepted\"}} {}\n\
             headcount_events_total{{result=\"rejected\"}} {}\n\
             # HELP headcount_snapshots_total Session snapshots applied by this process.\n\
             # TYPE headcount_snapshots_total counter\n\
             headcount_snapshots_total {}\n",
            self.events_accepted.load(Ordering::Relaxed),
            self.events_rejected.load(Ordering::Relaxed),
            self.snapshots.load(Ordering::Relaxed),
        );
    }

    /// Push attempts by type and result, with a series for every result of every
    /// `push_types`.
    fn render_deliveries(&self, out: &mut String, push_types: &[&str]) {
        let deliveries = self
            .deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut all: BTreeMap<(String, &str), u64> = BTreeMap::new();
        for t in push_types {
            for r in DELIVERY_RESULTS {
                all.insert(((*t).to_owned(), r), 0);
            }
        }
        for (k, n) in deliveries {
            all.insert(k, n);
        }
        out.push_str(
            "# HELP headcount_deliveries_total Push attempts made by this process, by type and result (delivered, failed: given up, retried: another attempt is scheduled, gone: the receiver answered 410).\n\
             # TYPE headcount_deliveries_total counter\n",
        );
        for ((t, r), n) in &all {
            let _ = writeln!(
                out,
                "headcount_deliveries_total{{type=\"{t}\",result=\"{r}\"}} {n}"
            );
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let h = map
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
    }

    /// Renders every series; `extra` lines (gauges) are appended as they are.
    pub fn render(&self, extra: &str) -> String {
        let map = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        out.push_str("# HELP headcount_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE headcount_http_requests_total counter\n");
        for ((m, r, s), h) in &map {
            let _ = writeln!(
                out,
                "headcount_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP headcount_http_request_duration_seconds Request latency by route and status.\n",
        );
        out.push_str("# TYPE headcount_http_request_duration_seconds histogram\n");
        for ((m, r, s), h) in &map {
            let labels = format!("method=\"{m}\",route=\"{r}\",status=\"{s}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "headcount_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "headcount_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "headcount_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "headcount_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str(extra);
        out
    }
}

/// The outbox gauges; returns the push types they list, the known ones and any
/// other found pending.
fn render_outbox<'a>(out: &mut String, outbox: &'a Outbox) -> Vec<&'a str> {
    let pending = with_zeros(&PUSH_TYPES, &outbox.pending);
    out.push_str(
        "# HELP headcount_outbox_pending Pushes waiting to be sent, by type, provider-wide: read from the database at scrape.\n\
         # TYPE headcount_outbox_pending gauge\n",
    );
    for (t, n) in &pending {
        let _ = writeln!(out, "headcount_outbox_pending{{type=\"{t}\"}} {n}");
    }
    let _ = write!(
        out,
        "# HELP headcount_outbox_oldest_pending_seconds Age of the oldest push waiting to be sent (0 when none), provider-wide: read from the database at scrape.\n\
         # TYPE headcount_outbox_oldest_pending_seconds gauge\n\
         headcount_outbox_oldest_pending_seconds {}\n",
        outbox.oldest_pending_seconds
    );
    pending.into_keys().collect()
}

/// `counts` with a 0 for every one of `known` it lacks, so that a series exists from
/// the start and a rate over it does not begin with a gap.
fn with_zeros<'a, N: Copy + Default>(
    known: &[&'a str], counts: &'a BTreeMap<String, N>,
) -> BTreeMap<&'a str, N> {
    let mut all: BTreeMap<&str, N> = known.iter().map(|k| (*k, N::default())).collect();
    for (k, n) in counts {
        all.insert(k.as_str(), *n);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("GET", "/healthz", 200, 0.003);
        m.observe("GET", "/healthz", 200, 0.3);
        let text = m.render("");
        assert!(text.contains(
            "headcount_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"
        ));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.5\"} 2"));
    }

    #[test]
    fn sessions_by_tenant_only_when_asked() {
        let m = Metrics::default();
        let mut fleet = Fleet {
            active: 3,
            live: 2,
            dangling: 1,
            ..Fleet::default()
        };
        fleet.by_tenant.insert("acme".into(), (3, 2, 1));
        fleet.by_tenant.insert("idle".into(), (0, 0, 0));
        m.sampled(fleet, 5_000);
        let wait = WaitHistogram::default();
        let plain = m.render_business(&Outbox::default(), &wait, false);
        assert!(plain.contains("headcount_sessions{state=\"active\"} 3"));
        assert!(!plain.contains("tenant="));
        assert!(plain.contains("headcount_sampler_last_run_timestamp_seconds 5"));
        let split = m.render_business(&Outbox::default(), &wait, true);
        assert!(split.contains("headcount_sessions{state=\"dangling\",tenant=\"acme\"} 1"));
        assert!(split.contains("headcount_sessions{state=\"active\",tenant=\"idle\"} 0"));
        assert!(!split.contains("headcount_sessions{state=\"active\"} 3"));
    }

    #[test]
    fn business_series_exist_before_anything_happens() {
        let m = Metrics::default();
        let text = m.render_business(&Outbox::default(), &WaitHistogram::default(), false);
        for line in [
            "headcount_sessions{state=\"dangling\"} 0",
            "headcount_admissions_total{outcome=\"limit_reached\"} 0",
            "headcount_outbox_pending{type=\"session.kill\"} 0",
            "headcount_deliveries_total{type=\"site.config_changed\",result=\"gone\"} 0",
            "headcount_db_pool_wait_seconds_bucket{le=\"+Inf\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        m.admission("within_limit");
        m.delivery("session.kill", "retried");
        let wait = WaitHistogram::default();
        wait.observe(0.002);
        let text = m.render_business(&Outbox::default(), &wait, false);
        assert!(text.contains("headcount_admissions_total{outcome=\"within_limit\"} 1"));
        assert!(
            text.contains("headcount_deliveries_total{type=\"session.kill\",result=\"retried\"} 1")
        );
        assert!(text.contains("headcount_db_pool_wait_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("headcount_db_pool_wait_seconds_bucket{le=\"0.001\"} 0"));
    }
}
