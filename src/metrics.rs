//! Prometheus text metrics: request counts and latency histograms by route and status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
}

impl Metrics {
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
}
