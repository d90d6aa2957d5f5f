//! The command line: serve, migrate, token, billing, load, openapi, backup, restore,
//! and plan, tenant and site, which talk to a running headcount over HTTP.

use std::net::TcpListener;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::auth::Role;
use crate::clock::SystemClock;
use crate::config::{Config, DbArgs, LogFormat, ServeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "headcount",
    version = crate::db::migrations::release_line(),
    about = "Control plane for hosting providers that sell web sites priced by a sessions limit",
    long_about = "Control plane for hosting providers that sell web sites priced by a sessions limit.\n\n\
It keeps tenants, plans and sites, learns which user sessions exist on each site from the \
events the site's agent sends, counts active, live and dangling sessions, decides admissions \
at the limit, pushes limit changes and kills to the sites as signed webhooks, and exports \
what each tenant owes.\n\n\
With no setup it keeps its data in an embedded SQLite file under ./headcount-data; set \
DATABASE_URL=postgres://… to run several processes on one PostgreSQL database.\n\n\
Settings: flags win over HEADCOUNT_* environment variables, which win over a TOML file (--config)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the background jobs (push sender, sampler, retention).
    ///
    /// On the very first start this creates the data directory and database,
    /// generates the token signing key and prints one admin token.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit (serve also does this at start).
    ///
    /// With --citus, on a Citus coordinator, also distribute the schema: every
    /// per-site table by its site, colocated with `sites`, and the fleet-wide tables
    /// as reference tables. Run it once after the first migration (or when moving an
    /// installation onto Citus, docs/scaling.md); running it again changes nothing,
    /// and later migrations keep the distribution. `serve` refuses a Citus database
    /// that is not distributed.
    Migrate(MigrateArgs),
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Billing: export what each tenant owes for a month.
    #[command(subcommand)]
    Billing(crate::billing::BillingCommand),
    /// Load generator and site simulator: drives a running headcount over HTTP.
    Load(crate::load::LoadArgs),
    /// Print the OpenAPI document (the committed openapi/openapi.json).
    Openapi,
    /// Copy the SQLite database to a backup file while the server keeps running.
    ///
    /// The copy is one consistent snapshot (SQLite's VACUUM INTO), taken while the
    /// server goes on accepting writes. It is written beside FILE and renamed to FILE
    /// when complete; an existing FILE is never overwritten. The file holds the token
    /// signing key and webhook secrets: keep it as safe as the database.
    /// PostgreSQL is backed up with `pg_dump -Fc` instead (docs/backup.md).
    Backup(crate::backup::BackupArgs),
    /// Restore a backup file into a new SQLite database.
    ///
    /// Restores into an empty data directory, with headcount stopped: the database
    /// must not exist yet. The backup is checked first (an SQLite file that passes
    /// its integrity check, has headcount's tables and no migration newer than this
    /// binary knows) and is never changed; a refusal leaves nothing behind. Start
    /// `headcount serve` on the data directory afterwards. PostgreSQL dumps are
    /// restored with `pg_restore` instead (docs/backup.md).
    Restore(crate::backup::RestoreArgs),
    /// Plans of a running headcount, over its HTTP API: create, list, show, update.
    ///
    /// Needs an admin token (--token or HEADCOUNT_TOKEN) and headcount's URL (--url or
    /// HEADCOUNT_URL, default http://127.0.0.1:8080). --json prints the API's JSON.
    Plan(crate::manage::PlanArgs),
    /// Tenants of a running headcount, over its HTTP API: create, list, show, update.
    ///
    /// Needs an admin token (--token or HEADCOUNT_TOKEN) and headcount's URL (--url or
    /// HEADCOUNT_URL, default http://127.0.0.1:8080). --json prints the API's JSON.
    Tenant(crate::manage::TenantArgs),
    /// Sites of a running headcount, over its HTTP API: create (with the agent's
    /// settings block), list, show, update.
    ///
    /// Needs an admin token (--token or HEADCOUNT_TOKEN) and headcount's URL (--url or
    /// HEADCOUNT_URL, default http://127.0.0.1:8080). --json prints the API's JSON.
    Site(crate::manage::SiteArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token and print only the token (with --ui, a dashboard link holding it).
    Create(TokenArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Tenant,
    Site,
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// admin, tenant or site.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// The tenant's slug (tenant tokens).
    #[arg(long)]
    pub tenant: Option<String>,
    /// The site's slug (site tokens).
    #[arg(long)]
    pub site: Option<String>,
    /// Lifetime in seconds [default: 30 days; a year for site tokens].
    #[arg(long)]
    pub ttl_seconds: Option<i64>,
    /// Print a dashboard link that signs in with the token
    /// (`http://<listen address>/ui/#token=…`) instead of the bare token.
    #[arg(long)]
    pub ui: bool,
}

fn init_logging(config: &Config) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // actix-http logs a client's protocol faults (oversized headers, a malformed
    // request line, a peer that hung up) at ERROR, though nothing is wrong with the
    // server: they show only when the operator asks for actix-http's debug output.
    let client_faults_wanted = config.log.contains("debug") || config.log.contains("trace");
    let client_faults = tracing_subscriber::filter::filter_fn(move |meta| {
        client_faults_wanted
            || !(meta.target().starts_with("actix_http::h1")
                && *meta.level() == tracing::Level::ERROR)
    });
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_writer(std::io::stderr)
                    .with_filter(client_faults),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colours only for a person at a terminal, not in files or journals.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr)
                    .with_filter(client_faults),
            )
            .try_init(),
    };
}

/// `headcount migrate` settings.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// On a Citus coordinator: distribute the schema by site after migrating.
    #[arg(long)]
    pub citus: bool,
    /// With --citus: shards per distributed table, for tables not yet distributed.
    #[arg(long, requires = "citus", value_name = "N",
          default_value_t = crate::db::citus::DEFAULT_SHARDS,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub shards: u32,
}

fn migrate(args: MigrateArgs) -> Result<(), String> {
    let config = Config::for_db(&args.db)?;
    let db = crate::db::Db::connect_with(config.db_manager(), 2).map_err(|e| e.to_string())?;
    let n = db.migrate().map_err(|e| e.to_string())?;
    println!("applied {n} migration(s)");
    if args.citus {
        let placed = db.distribute(args.shards).map_err(|e| e.to_string())?;
        println!("citus: placed {placed} table(s); the schema is distributed by site");
    } else if let Some(line) = db.citus_refusal().map_err(|e| e.to_string())? {
        println!("note: {line}");
    }
    Ok(())
}

/// Runs a command; an `Err` is one line for the operator.
pub fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Migrate(args) => migrate(args),
        Command::Token(TokenCommand::Create(args)) => {
            let config = Config::for_db(&args.db)?;
            let listen = config.listen.clone();
            let (state, _) =
                crate::app::prepare(config, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
            let role = match args.role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Tenant => Role::Tenant,
                RoleArg::Site => Role::Site,
            };
            match (role, &args.tenant, &args.site) {
                (Role::Tenant, None, _) => {
                    return Err("--tenant is required for a tenant token".into());
                }
                (Role::Site, _, None) => return Err("--site is required for a site token".into()),
                _ => {}
            }
            let ttl = args.ttl_seconds.unwrap_or(if role == Role::Site {
                365 * 86_400
            } else {
                30 * 86_400
            });
            // The token names the row that holds the slug now, and dies with it.
            let subject_key = match (role, &args.tenant, &args.site) {
                (Role::Tenant, Some(t), _) => {
                    let slug = t.clone();
                    state
                        .db
                        .run_sync(move |c| crate::db::tenants::subject_key(c, &slug))
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("no tenant {t:?}"))?
                        .token_key
                }
                (Role::Site, _, Some(s)) => {
                    let slug = s.clone();
                    state
                        .db
                        .run_sync(move |c| crate::db::sites::get_for_agent(c, &slug))
                        .map_err(|_| format!("no site {s:?}"))?
                        .into_inner()
                        .site
                        .token_key
                }
                _ => None,
            };
            let (token, _) = state
                .mint(role, args.tenant, args.site, subject_key.as_deref(), ttl)
                .map_err(|e| e.to_string())?;
            if args.ui {
                println!("{}", dashboard_link(&listen, &token));
            } else {
                println!("{token}");
            }
            Ok(())
        }
        Command::Billing(cmd) => crate::billing::run(cmd),
        Command::Load(args) => crate::load::run(args),
        Command::Openapi => {
            print!("{}", crate::openapi::json());
            Ok(())
        }
        Command::Backup(args) => crate::backup::backup(args),
        Command::Restore(args) => crate::backup::restore(args),
        Command::Plan(args) => crate::manage::plan(args),
        Command::Tenant(args) => crate::manage::tenant(args),
        Command::Site(args) => crate::manage::site(args),
    }
}

/// The dashboard address that signs in with `token`: the token rides in the fragment,
/// which the browser never sends to the server, so no access log ever holds it.
fn dashboard_link(listen: &str, token: &str) -> String {
    // A wildcard listen address is not one a browser can open; the local host is.
    let host = match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("localhost:{}", a.port()),
        _ => listen.to_owned(),
    };
    format!("http://{host}/ui/#token={token}")
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let config = Config::load(&args)?;
    init_logging(&config);
    let listener = TcpListener::bind(&config.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let redacted = crate::config::redact_url(&config.database_url);
    runtime.block_on(async move {
        let (state, first_start) = tokio::task::spawn_blocking(move || {
            crate::app::prepare(config, Arc::new(SystemClock))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e}"))?;
        if first_start {
            let (token, _) = state
                .mint(Role::Admin, None, None, None, 30 * 86_400)
                .map_err(|e| e.to_string())?;
            println!(
                "headcount: first start. This admin token is valid for 30 days; keep it safe, it is not shown again\n\
                 (mint more with `headcount token create --role admin`):\n\n{token}\n"
            );
        }
        tracing::info!(%addr, database = %redacted, "headcount listening on http://{addr}");
        let running = crate::app::start(state, listener, true).map_err(|e| e.to_string())?;
        let result = running.server.await;
        let _ = running.stop_jobs.send(true);
        for j in running.jobs {
            let _ = j.await;
        }
        tracing::info!("headcount stopped");
        result.map_err(|e| e.to_string())
    })
}
