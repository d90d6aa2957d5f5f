//! `headcount billing export`: the monthly export from the command line, computed by
//! the same code as `GET /v1/billing/export`.

use std::io::Write;
use std::path::PathBuf;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::billing::{Format, render};
use crate::auth::Scope;
use crate::config::{Config, DbArgs};
use crate::db::Db;
use crate::domain::billing::Period;

#[derive(Debug, clap::Subcommand)]
pub enum BillingCommand {
    /// Export one month's billing lines, one per site and plan segment.
    ///
    /// Columns: tenant, site, plan, session_limit, from, to, peak_active, p95_active,
    /// sessions_started, distinct_users, session_hours, denied_admissions,
    /// overage_sessions, base_cents, overage_cents, total_cents, currency, peak_at.
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The UTC month, YYYY-MM.
    #[arg(long)]
    pub period: String,
    /// csv (RFC 4180 with a header row) or json.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: FormatArg,
    /// Only this tenant's sites.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Write here instead of to standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub fn run(cmd: BillingCommand) -> Result<(), String> {
    match cmd {
        BillingCommand::Export(args) => export(args),
    }
}

fn export(args: ExportArgs) -> Result<(), String> {
    let period = Period::parse(&args.period).map_err(|e| format!("--period: {e}"))?;
    let format = match args.format {
        FormatArg::Csv => Format::Csv,
        FormatArg::Json => Format::Json,
    };
    let config = Config::for_db(&args.db)?;
    let db = Db::connect_with(config.db_manager(), 2).map_err(|e| e.to_string())?;
    if db.pending_migrations().map_err(|e| e.to_string())? {
        return Err("the database has pending migrations; run `headcount migrate` first".into());
    }
    let tenant = args.tenant.clone();
    let progress = Progress::new(period);
    let rows = db
        .run_sync(|c| {
            crate::db::billing::export(
                c,
                &Scope::Provider,
                tenant.as_deref(),
                &period,
                &mut |done, total| progress.update(done, total),
            )
        })
        .map_err(|e| format!("billing export failed: {e}"))?;
    progress.finish(rows.len());
    let body = render(&period, rows, format);
    match &args.output {
        Some(path) => {
            std::fs::write(path, body).map_err(|e| format!("--output {}: {e}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(body.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write the export: {e}"))?;
        }
    }
    Ok(())
}

/// A one-line progress bar on a terminal; indicatif draws nothing when stderr is a
/// file or a pipe, so that scripts see only errors there.
struct Progress {
    bar: ProgressBar,
    period: Period,
}

impl Progress {
    fn new(period: Period) -> Self {
        let style = ProgressStyle::with_template("billing {prefix} [{bar:30}] {pos}/{len} sites")
            .expect("the template is valid")
            .progress_chars("# ");
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(period.to_string());
        Self { bar, period }
    }

    fn update(&self, done: usize, total: usize) {
        // Each change redraws, and indicatif allows only so many redraws a second.
        if self.bar.length() != Some(total as u64) {
            self.bar.set_length(total as u64);
        }
        self.bar.set_position(done as u64);
    }

    fn finish(&self, rows: usize) {
        if !self.bar.is_hidden() {
            self.bar.finish_and_clear();
            eprintln!("billing {}: {rows} line(s)", self.period);
        }
    }
}
