//! Per-client recording and the summary: throughput, latency percentiles, errors by
//! status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Adds the named counters of one report into another: the sums of repeated runs.
macro_rules! add_up {
    ($into:expr, $from:expr; $($field:ident),+ $(,)?) => {
        $( $into.$field += $from.$field; )+
    };
}

/// What one client saw. Each client keeps its own, so recording needs no lock; they
/// are merged once at the end.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Latencies in microseconds: 4 bytes a request keeps even long runs small.
    latencies_us: Vec<u32>,
    requests: u64,
    events: u64,
    errors: BTreeMap<String, u64>,
    refused: u64,
}

/// Counters the progress line reads while the clients run.
#[derive(Debug, Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// How one request ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A 2xx reply; `events` is how many events it carried.
    Ok { events: u64 },
    /// A 2xx reply that still failed (rejected events in a batch).
    Rejected(&'static str),
    /// An admission that was refused (a 200, not an error).
    Refused,
    /// Another status.
    Status(u16),
    /// No reply: connection refused, reset, timeout.
    Transport,
}

impl Recorder {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            latencies_us: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    pub fn record(&mut self, started: Instant, outcome: Outcome, live: &Live) {
        let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        self.latencies_us.push(us);
        self.requests += 1;
        live.requests.fetch_add(1, Ordering::Relaxed);
        let error = match outcome {
            Outcome::Ok { events } => {
                self.events += events;
                None
            }
            Outcome::Refused => {
                self.events += 1;
                self.refused += 1;
                None
            }
            Outcome::Rejected(why) => Some(why.to_owned()),
            Outcome::Status(s) => Some(s.to_string()),
            Outcome::Transport => Some("transport".to_owned()),
        };
        if let Some(e) = error {
            *self.errors.entry(e).or_default() += 1;
            live.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn merge(&mut self, other: Self) {
        self.latencies_us.extend(other.latencies_us);
        self.requests += other.requests;
        self.events += other.events;
        self.refused += other.refused;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    pub fn summary(mut self, scenario: &str, elapsed: Duration, shape: Shape) -> Summary {
        self.latencies_us.sort_unstable();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let pct = |p: f64| -> f64 {
            if self.latencies_us.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest latency at or above p percent of requests.
            let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
            let i = rank.clamp(1, self.latencies_us.len()) - 1;
            ms(self.latencies_us[i])
        };
        let mean = if self.latencies_us.is_empty() {
            0.0
        } else {
            self.latencies_us.iter().map(|&u| u64::from(u)).sum::<u64>() as f64
                / self.latencies_us.len() as f64
                / 1000.0
        };
        Summary {
            scenario: scenario.to_owned(),
            prefix: String::new(),
            concurrency: shape.concurrency,
            sites: shape.sites,
            sessions: shape.sessions,
            batch: shape.batch,
            duration_seconds: round(secs, 3),
            requests: self.requests,
            events: self.events,
            requests_per_second: round(self.requests as f64 / secs, 1),
            events_per_second: round(self.events as f64 / secs, 1),
            p50_ms: pct(50.0),
            p90_ms: pct(90.0),
            p99_ms: pct(99.0),
            max_ms: self.latencies_us.last().map_or(0.0, |&u| ms(u)),
            mean_ms: round(mean, 3),
            errors: self.errors.values().sum(),
            errors_by_status: self.errors,
            refused: self.refused,
            runs_requests_per_second: Vec::new(),
            simulate: None,
            plan_edit: None,
        }
    }
}

fn ms(us: u32) -> f64 {
    round(f64::from(us) / 1000.0, 3)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The run's shape, repeated in the summary so that a JSON line stands on its own.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub concurrency: usize,
    pub sites: usize,
    pub sessions: usize,
    pub batch: usize,
}

/// What `simulate` adds: the users' fate and the pushes the receiver verified.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimulateReport {
    pub logins: u64,
    pub admitted: u64,
    pub refused: u64,
    /// Dangling sessions the server ended to admit a new one.
    pub evicted: u64,
    pub logouts: u64,
    /// Sessions left without a logout (they turn dangling after the idle timeout).
    pub abandoned: u64,
    /// Logins reported with a past time, so that they are dangling at once.
    pub stale_logins: u64,
    /// Limit changes made during the run (each queues a `site.config_changed` push).
    pub config_changes: u64,
    /// Pushes the server should send: one per eviction and one per limit change.
    pub pushes_expected: u64,
    pub pushes_received: u64,
    /// Distinct `webhook-id`s with a valid signature.
    pub pushes_verified: u64,
    pub pushes_bad_signature: u64,
    /// Pushes that arrived before the site's creation reply (answered 503, retried).
    pub pushes_early: u64,
    pub pushes_by_type: BTreeMap<String, u64>,
}

/// What `plan-edit` adds: the edit's answer and the pushes it caused.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanEditReport {
    /// Creating the sites and draining their creation pushes (not measured).
    pub setup_seconds: f64,
    /// Sites whose creation push arrived before the edit.
    pub creation_pushes: u64,
    /// From sending the `PATCH` of the plan to reading its reply.
    pub patch_ms: f64,
    /// One `site.config_changed` push per site on the plan.
    pub pushes_expected: u64,
    /// Sites whose push with the edited config arrived, signature verified.
    pub pushes_delivered: u64,
    /// From sending the `PATCH` to the last of those pushes.
    pub delivered_ms: f64,
    /// Every request the receiver got, retries and creation pushes included.
    pub pushes_received: u64,
    pub pushes_bad_signature: u64,
    /// Creation pushes that came before the site's creation reply, so before its
    /// secret was known (acknowledged unchecked; not measured).
    pub pushes_early: u64,
}

/// The result of one run; `--json` prints it as one line.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    /// The run's plan, tenant and sites are named `{prefix}-…` on the server.
    pub prefix: String,
    pub concurrency: usize,
    pub sites: usize,
    pub sessions: usize,
    pub batch: usize,
    pub duration_seconds: f64,
    pub requests: u64,
    pub events: u64,
    pub requests_per_second: f64,
    pub events_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Requests that failed: any status but 2xx, transport errors, rejected events.
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    /// Admissions answered with `admitted: false` (not errors).
    pub refused: u64,
    /// Requests per second of each measured window (`--repeat`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs_requests_per_second: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulate: Option<SimulateReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_edit: Option<PlanEditReport>,
}

impl Summary {
    /// One summary of several measured windows: the median of each rate and latency
    /// (so that one disturbed window does not move the result), the sum of the counts.
    /// The windows' rates are kept in `runs_requests_per_second`.
    pub fn median_of(mut runs: Vec<Summary>) -> Summary {
        if runs.len() == 1 {
            return runs.remove(0);
        }
        let median = |f: &dyn Fn(&Summary) -> f64| -> f64 {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                round((v[n / 2 - 1] + v[n / 2]) / 2.0, 3)
            }
        };
        let mut out = runs[0].clone();
        out.requests_per_second = median(&|s| s.requests_per_second);
        out.events_per_second = median(&|s| s.events_per_second);
        out.p50_ms = median(&|s| s.p50_ms);
        out.p90_ms = median(&|s| s.p90_ms);
        out.p99_ms = median(&|s| s.p99_ms);
        out.mean_ms = median(&|s| s.mean_ms);
        out.max_ms = runs.iter().map(|s| s.max_ms).fold(0.0, f64::max);
        out.duration_seconds = round(runs.iter().map(|s| s.duration_seconds).sum(), 3);
        out.runs_requests_per_second = runs.iter().map(|s| s.requests_per_second).collect();
        out.requests = 0;
        out.events = 0;
        out.errors = 0;
        out.refused = 0;
        out.errors_by_status.clear();
        let mut sim: Option<SimulateReport> = None;
        for r in runs {
            add_up!(out, r; requests, events, errors, refused);
            for (k, v) in r.errors_by_status {
                *out.errors_by_status.entry(k).or_default() += v;
            }
            if let Some(x) = r.simulate {
                let t = sim.get_or_insert_with(SimulateReport::default);
                add_up!(t, x; logins, admitted, refused, evicted, logouts, abandoned,
                    stale_logins, config_changes, pushes_expected, pushes_received,
                    pushes_verified, pushes_bad_signature, pushes_early);
                for (k, v) in x.pushes_by_type {
                    *t.pushes_by_type.entry(k).or_default() += v;
                }
            }
        }
        out.simulate = sim;
        out
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        self.write_shape(&mut t);
        self.write_traffic(&mut t);
        if let Some(s) = &self.simulate {
            s.write_lines(&mut t);
        }
        if let Some(p) = &self.plan_edit {
            p.write_lines(&mut t);
        }
        t
    }

    /// What ran, and for how long.
    fn write_shape(&self, t: &mut String) {
        if self.plan_edit.is_some() {
            let _ = writeln!(
                t,
                "scenario     {}  ({} sites on one plan)",
                self.scenario, self.sites
            );
        } else {
            let _ = writeln!(
                t,
                "scenario     {}  ({} sites x {} sessions, concurrency {}{})",
                self.scenario,
                self.sites,
                self.sessions,
                self.concurrency,
                if self.scenario == "ingest-batch" {
                    format!(", batch {}", self.batch)
                } else {
                    String::new()
                }
            );
        }
        if self.runs_requests_per_second.is_empty() {
            let _ = writeln!(t, "duration     {:.2} s", self.duration_seconds);
        } else {
            let rates: Vec<String> = self
                .runs_requests_per_second
                .iter()
                .map(|r| format!("{r:.1}"))
                .collect();
            let _ = writeln!(
                t,
                "duration     {:.2} s in {} windows (requests/s {}); rates and latencies are medians",
                self.duration_seconds,
                rates.len(),
                rates.join(", ")
            );
        }
    }

    /// Requests, events, latencies, errors and refusals.
    fn write_traffic(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "requests     {:>10}  {:>10.1}/s",
            self.requests, self.requests_per_second
        );
        let _ = writeln!(
            t,
            "events       {:>10}  {:>10.1}/s",
            self.events, self.events_per_second
        );
        let _ = writeln!(
            t,
            "latency ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.mean_ms
        );
        let by_status = if self.errors_by_status.is_empty() {
            String::new()
        } else {
            format!("  ({})", counts(&self.errors_by_status))
        };
        let _ = writeln!(t, "errors       {:>10}{by_status}", self.errors);
        if self.refused > 0 {
            let _ = writeln!(
                t,
                "refused      {:>10}  (admissions at the limit)",
                self.refused
            );
        }
    }
}

impl SimulateReport {
    fn write_lines(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "users        {} logins, {} admitted, {} refused, {} evicted, {} logouts, {} abandoned, {} stale",
            self.logins,
            self.admitted,
            self.refused,
            self.evicted,
            self.logouts,
            self.abandoned,
            self.stale_logins
        );
        let _ = writeln!(
            t,
            "pushes       {} expected, {} received, {} verified, {} bad signature, {} early  ({})",
            self.pushes_expected,
            self.pushes_received,
            self.pushes_verified,
            self.pushes_bad_signature,
            self.pushes_early,
            counts(&self.pushes_by_type)
        );
    }
}

impl PlanEditReport {
    fn write_lines(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "plan edit    PATCH answered in {:.1} ms; {} of {} sites' pushes delivered, verified, the last {:.1} ms after the PATCH was sent",
            self.patch_ms, self.pushes_delivered, self.pushes_expected, self.delivered_ms
        );
        let _ = writeln!(
            t,
            "pushes       {} received, {} bad signature; setup {:.1} s, {} creation pushes ({} before the site's secret was known)",
            self.pushes_received,
            self.pushes_bad_signature,
            self.setup_seconds,
            self.creation_pushes,
            self.pushes_early
        );
    }
}

/// `key: count` pairs, comma separated, in the map's order.
fn counts<K: std::fmt::Display, V: std::fmt::Display>(map: &BTreeMap<K, V>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let live = Live::default();
        let mut r = Recorder::default();
        let now = Instant::now();
        for _ in 0..10 {
            r.record(now, Outcome::Ok { events: 2 }, &live);
        }
        r.record(now, Outcome::Status(503), &live);
        r.latencies_us = (1..=100).map(|i| i * 1000).collect();
        let s = r.summary(
            "x",
            Duration::from_secs(2),
            Shape {
                concurrency: 1,
                sites: 1,
                sessions: 1,
                batch: 1,
            },
        );
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(s.events, 20);
        assert_eq!(s.errors, 1);
        assert_eq!(s.errors_by_status.get("503"), Some(&1));
        assert_eq!(s.requests_per_second, 5.5);
    }
}
