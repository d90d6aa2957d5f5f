//! Which claimed pushes may start now. Pushes wait in one queue per receiver (the
//! webhook's host and port) and start while both the receiver's and the process's
//! number of requests in flight stay under their bounds, so that a receiver that
//! answers slowly holds up only its own pushes.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Requests in flight at once over all receivers: enough to keep a fleet's pushes
/// moving while hundreds of receivers each take their time, few enough that sockets,
/// memory and the receivers' accept queues stay modest.
pub const MAX_IN_FLIGHT: usize = 256;

/// Requests in flight at once to one receiver. A site's agent is one web server that
/// also serves its users; four parallel pushes keep a backlog draining (a fast agent
/// answers in milliseconds) without crowding its workers, and a receiver that holds
/// every request until the timeout occupies four places, not the whole sender.
pub const PER_RECEIVER: usize = 4;

/// Where a push goes, as far as concurrency is concerned: scheme, host and port, so
/// that sites sharing one server (different paths) share its bound.
pub fn receiver_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        // An unparsable URL fails at send time; it is its own receiver meanwhile.
        Err(_) => url.to_owned(),
    }
}

struct Waiting<T> {
    item: T,
    start_by: Instant,
}

/// The per-receiver queues and counts of requests in flight.
pub struct Fanout<T> {
    waiting: HashMap<String, VecDeque<Waiting<T>>>,
    in_flight: HashMap<String, usize>,
    in_flight_total: usize,
    waiting_total: usize,
    per_receiver: usize,
    max_in_flight: usize,
}

/// What [`Fanout::ready`] hands out.
pub struct Ready<T> {
    /// To start now; each counts as in flight until [`Fanout::finished`].
    pub start: Vec<(String, T)>,
    /// Waited past their start deadline: not to be sent by this process any more.
    pub expired: Vec<T>,
}

impl<T> Default for Fanout<T> {
    fn default() -> Self {
        Self::with_bounds(PER_RECEIVER, MAX_IN_FLIGHT)
    }
}

impl<T> Fanout<T> {
    pub fn with_bounds(per_receiver: usize, max_in_flight: usize) -> Self {
        Self {
            waiting: HashMap::new(),
            in_flight: HashMap::new(),
            in_flight_total: 0,
            waiting_total: 0,
            per_receiver: per_receiver.max(1),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Queues `item` for `receiver`; it may start until `start_by`.
    pub fn push(&mut self, receiver: String, item: T, start_by: Instant) {
        self.waiting
            .entry(receiver)
            .or_default()
            .push_back(Waiting { item, start_by });
        self.waiting_total += 1;
    }

    /// Takes what may start now, in each receiver's claim order, and what waited too
    /// long. Queues are filled in claim order, so the front holds the earliest deadline.
    pub fn ready(&mut self, now: Instant) -> Ready<T> {
        let mut out = Ready {
            start: Vec::new(),
            expired: Vec::new(),
        };
        for (receiver, queue) in &mut self.waiting {
            while queue.front().is_some_and(|w| w.start_by <= now) {
                if let Some(w) = queue.pop_front() {
                    out.expired.push(w.item);
                }
            }
            let busy = self.in_flight.entry(receiver.clone()).or_default();
            while *busy < self.per_receiver && self.in_flight_total < self.max_in_flight {
                let Some(w) = queue.pop_front() else { break };
                *busy += 1;
                self.in_flight_total += 1;
                out.start.push((receiver.clone(), w.item));
            }
        }
        self.waiting_total -= out.start.len() + out.expired.len();
        self.waiting.retain(|_, q| !q.is_empty());
        self.in_flight.retain(|_, n| *n > 0);
        out
    }

    /// One request to `receiver` has ended, freeing its place.
    pub fn finished(&mut self, receiver: &str) {
        if let Some(n) = self.in_flight.get_mut(receiver) {
            *n = n.saturating_sub(1);
            self.in_flight_total = self.in_flight_total.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(receiver);
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight_total
    }

    pub fn waiting(&self) -> usize {
        self.waiting_total
    }

    /// Empties the queues (on shutdown), returning what never started.
    pub fn drain_waiting(&mut self) -> Vec<T> {
        self.waiting_total = 0;
        self.waiting
            .drain()
            .flat_map(|(_, q)| q.into_iter().map(|w| w.item))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn one_receiver_gets_at_most_its_share() {
        let mut f = Fanout::with_bounds(2, 100);
        for i in 0..5 {
            f.push("slow".into(), i, later());
        }
        f.push("fast".into(), 100, later());
        let r = f.ready(Instant::now());
        let mut slow: Vec<i32> = r
            .start
            .iter()
            .filter(|(k, _)| k == "slow")
            .map(|(_, i)| *i)
            .collect();
        slow.sort_unstable();
        assert_eq!(slow, vec![0, 1], "claim order within a receiver");
        assert!(r.start.iter().any(|(k, i)| k == "fast" && *i == 100));
        assert_eq!((f.in_flight(), f.waiting()), (3, 3));
        // Nothing more for the slow receiver until one of its requests ends.
        assert!(f.ready(Instant::now()).start.is_empty());
        f.finished("slow");
        let r = f.ready(Instant::now());
        assert_eq!(r.start.len(), 1);
        assert_eq!(r.start[0], ("slow".to_owned(), 2));
    }

    #[test]
    fn the_overall_bound_holds_across_receivers() {
        let mut f = Fanout::with_bounds(4, 3);
        for i in 0..10 {
            f.push(format!("r{i}"), i, later());
        }
        let started = f.ready(Instant::now()).start;
        assert_eq!(started.len(), 3);
        assert_eq!(f.in_flight(), 3);
        // Which three start depends on the map's order; end one of them.
        f.finished(&started[0].0);
        f.finished("nobody");
        assert_eq!(f.in_flight(), 2);
        assert_eq!(f.ready(Instant::now()).start.len(), 1);
    }

    #[test]
    fn pushes_past_their_deadline_are_handed_back_unstarted() {
        let mut f = Fanout::with_bounds(1, 10);
        let now = Instant::now();
        f.push("r".into(), 1, now + Duration::from_secs(1));
        f.push("r".into(), 2, now + Duration::from_secs(1));
        f.push("r".into(), 3, now + Duration::from_secs(60));
        assert_eq!(f.ready(now).start, vec![("r".to_owned(), 1)]);
        f.finished("r");
        let r = f.ready(now + Duration::from_secs(2));
        assert_eq!(r.expired, vec![2]);
        assert_eq!(r.start, vec![("r".to_owned(), 3)]);
        assert_eq!(f.waiting(), 0);
    }

    #[test]
    fn receivers_are_host_and_port() {
        assert_eq!(
            receiver_of("https://Site.example/hook"),
            "https://site.example:443"
        );
        assert_eq!(
            receiver_of("http://127.0.0.1:8080/a"),
            receiver_of("http://127.0.0.1:8080/b")
        );
        assert_ne!(
            receiver_of("http://127.0.0.1:8080/"),
            receiver_of("http://127.0.0.1:8081/")
        );
    }
}
