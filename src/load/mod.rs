//! The load generator and site simulator (`headcount load`).
//!
//! It is an outside client that speaks HTTP only: it creates its own plan, tenant,
//! sites and site tokens through the API under a unique prefix, drives one scenario
//! with a fixed number of concurrent clients (a closed loop: each client sends its
//! next request when the previous one is answered), and reports throughput and
//! latency. Every run is bounded in time and in requests, and only talks to `--url`
//! (plus its own webhook receiver on loopback in `simulate` and `plan-edit`).

mod fleet;
mod hooks;
mod options;
mod plan_edit;
mod report;
mod simulate;
mod workload;

use std::time::Duration;

pub use options::{LoadArgs, Options, Scenario};
pub use report::{PlanEditReport, SimulateReport, Summary};

/// Runs one scenario: creates what it needs through the API, measures, and returns
/// the summary. Setup and seeding are not part of the measured window.
pub async fn run_scenario(opts: Options) -> Result<Summary, String> {
    let window = opts.check()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency + 8)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("headcount-load/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    match opts.scenario {
        Scenario::Simulate => {
            let mut runs = Vec::with_capacity(opts.repeat);
            for _ in 0..opts.repeat {
                runs.push(simulate::run(&client, &opts, window).await?);
            }
            Ok(Summary::median_of(runs))
        }
        Scenario::PlanEdit => plan_edit::run(&client, &opts).await,
        _ => workload::run(&client, &opts, window).await,
    }
}

/// `headcount load`: runs the scenario and prints the table (and the JSON line).
pub fn run(args: LoadArgs) -> Result<(), String> {
    let json = args.json;
    let opts = Options::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let summary = runtime.block_on(run_scenario(opts))?;
    print!("{}", summary.table());
    if json {
        println!(
            "{}",
            serde_json::to_string(&summary).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_always_bounded() {
        let mut o = Options::new("http://127.0.0.1:1", Some("t".into()), Scenario::Usage);
        assert_eq!(o.check().unwrap(), Duration::from_secs(10));
        o.requests = Some(5);
        assert_eq!(o.check().unwrap(), options::REQUESTS_ONLY_CAP);
        o.duration = Some(Duration::from_secs(7200));
        assert!(o.check().is_err());
        o.duration = Some(Duration::from_secs(2));
        o.sites = 10_000;
        o.sessions = 10_000;
        assert!(o.check().is_err(), "seeding 100M sessions is refused");
    }

    #[test]
    fn sites_need_an_admin_token_and_a_web_url() {
        let o = Options::new("http://127.0.0.1:1", None, Scenario::IngestBatch);
        assert!(o.check().is_err());
        let o = Options::new("http://127.0.0.1:1", None, Scenario::Healthz);
        assert!(o.check().is_ok());
        let o = Options::new("file:///etc", None, Scenario::Healthz);
        assert!(o.check().is_err());
    }
}
