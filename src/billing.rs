//! `headcount billing export`: the monthly export from the command line, computed by
//! the same code as `GET /v1/billing/export`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::ValueEnum;

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
    let db = Db::connect(&config.database_url, 2).map_err(|e| e.to_string())?;
    if db.pending_migrations().map_err(|e| e.to_string())? {
        return Err("the database has pending migrations; run `headcount migrate` first".into());
    }
    let tenant = args.tenant.clone();
    let mut progress = Progress::new(std::io::stderr().is_terminal(), period);
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

/// A one-line progress indication on a terminal; silent when stderr is a file or a
/// pipe, so that scripts see only errors there.
struct Progress {
    on: bool,
    period: Period,
    shown: usize,
}

impl Progress {
    fn new(on: bool, period: Period) -> Self {
        Self {
            on,
            period,
            shown: 0,
        }
    }

    fn update(&mut self, done: usize, total: usize) {
        // At most about a hundred redraws, whatever the number of sites.
        if !self.on || (done < total && done < self.shown + total.div_ceil(100)) {
            return;
        }
        self.shown = done;
        const WIDTH: usize = 30;
        let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
        eprint!(
            "\rbilling {} [{}{}] {done}/{total} sites",
            self.period,
            "#".repeat(filled),
            " ".repeat(WIDTH - filled)
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self, rows: usize) {
        if self.on {
            eprintln!(
                "\rbilling {}: {rows} line(s){}",
                self.period,
                " ".repeat(40)
            );
        }
    }
}
