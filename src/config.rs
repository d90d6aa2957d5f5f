//! Typed settings, layered flags > `HEADCOUNT_*` environment > optional TOML file >
//! defaults, and checked once at start so that a bad value stops the process with
//! one clear line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A secret value that never shows up in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Settings shared by every command that opens the database.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct DbArgs {
    /// Database URL: `sqlite://PATH` (embedded, the default) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory for the embedded SQLite database [default: ./headcount-data].
    #[arg(long, env = "HEADCOUNT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Optional TOML file with the same settings (snake_case keys, e.g. `listen`).
    #[arg(long, env = "HEADCOUNT_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `headcount serve` settings.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "HEADCOUNT_LISTEN")]
    pub listen: Option<String>,
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    jwt_secret: Option<String>,
    rate_limit: Option<String>,
    retry_schedule: Option<String>,
    sample_interval: Option<String>,
    webhook_deny_private: Option<bool>,
    log: Option<String>,
    log_format: Option<String>,
    session_retention_days: Option<i64>,
    sample_retention_days: Option<i64>,
    metrics_public: Option<bool>,
    prepared_statements: Option<bool>,
    metrics_per_tenant: Option<bool>,
    provider_notify_url: Option<String>,
    provider_notify_secret: Option<String>,
    pool_size: Option<u32>,
    workers: Option<usize>,
    expensive_reads_per_tenant: Option<u32>,
    expensive_reads_at_once: Option<u32>,
    expensive_reads_nice: Option<u8>,
    advice_budget_seconds: Option<u64>,
    advice_cache_entries: Option<u32>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<String>,
    public_url: Option<String>,
    oidc_admin_group: Option<String>,
    oidc_tenant_group_prefix: Option<String>,
    oidc_groups_claim: Option<String>,
    oidc_idle_minutes: Option<i64>,
    oidc_max_hours: Option<i64>,
    read_timeout_seconds: Option<i64>,
}

/// Sign-in for people through the provider's identity provider (OpenID Connect).
#[derive(Debug, Clone)]
pub struct Oidc {
    /// The issuer, as its ID tokens name it (no trailing slash added or removed).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Where browsers reach this headcount: the redirect URI is
    /// `{public_url}/auth/callback`; cookies are `Secure` when it is `https`.
    pub public_url: String,
    /// The group (in `groups_claim`) whose members are the provider's operators.
    pub admin_group: String,
    /// `{prefix}{tenant}` makes its members maintainers of that tenant.
    pub tenant_group_prefix: String,
    pub groups_claim: String,
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub max_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<Secret>,
    pub rate_limit: Option<RateLimit>,
    pub retry_schedule: Vec<Duration>,
    pub sample_interval: Duration,
    pub webhook_deny_private: bool,
    pub log: String,
    pub log_format: LogFormat,
    pub session_retention_days: i64,
    /// `HEADCOUNT_SAMPLE_RETENTION_DAYS`: still read (and checked) so that existing
    /// configurations start, but without effect since 0.2.0: samples are stored by
    /// change and kept as long as sessions (`session_retention_days`).
    pub sample_retention_days: i64,
    pub metrics_public: bool,
    /// `headcount_sessions` by tenant as well (one series per tenant and state).
    pub metrics_per_tenant: bool,
    pub provider_notify_url: Option<String>,
    pub provider_notify_secret: Option<Secret>,
    pub pool_size: u32,
    pub workers: usize,
    /// Expensive reads (usage history and charts, advice, billing export) one tenant
    /// may have running at a time in this process; the provider's operators count as
    /// one more such caller. Keeps one tenant's heavy reads from slowing the others.
    pub expensive_reads_per_tenant: u32,
    /// Expensive reads computed at once in this process, all tenants together; the
    /// others wait their turn (default: one core fewer than the machine has).
    pub expensive_reads_at_once: u32,
    /// The nice value (0–19) of the threads that compute expensive reads: higher
    /// gives admissions and events more of a core they both want; 0 runs them at the
    /// priority of the rest of the process.
    pub expensive_reads_nice: u8,
    /// Seconds of computing one plan advice may take before it is given up with a 503,
    /// so that a month too big to replay cannot hold the cores.
    pub advice_budget_seconds: u64,
    /// Computed advice kept (per site, period and data version); 0 keeps none.
    pub advice_cache_entries: usize,
    /// Named prepared statements on PostgreSQL; off behind a pooler that cannot keep
    /// them (PgBouncer before 1.21 in transaction mode).
    pub prepared_statements: bool,
    /// `None`: people sign in with tokens only.
    pub oidc: Option<Oidc>,
    /// How long one statement of an expensive read may run (PostgreSQL).
    pub read_timeout: Duration,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// The database connection manager these settings ask for.
    pub fn db_manager(&self) -> crate::db::Manager {
        let m = crate::db::Manager::new(&self.database_url);
        if self.prepared_statements {
            m
        } else {
            m.without_prepared_statements()
        }
    }

    /// Reads only the database part (for `migrate`, `token`, `billing`).
    pub fn for_db(args: &DbArgs) -> Result<Self, String> {
        Self::load(&ServeArgs {
            db: args.clone(),
            listen: None,
        })
    }

    pub fn load(args: &ServeArgs) -> Result<Self, String> {
        let file = match &args.db.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        // One setting after another in a fixed order, so that of several bad ones
        // the same is reported first.
        let (data_dir, database_url) = database(&args.db, &file)?;
        let listen = listen(args.listen.clone(), &file)?;
        let jwt_secret = jwt_secret(&file)?;
        let rate_limit = rate_limit(&file)?;
        let retry_schedule = retry_schedule(&file)?;
        let sample_interval = sample_interval(&file)?;
        let webhook_deny_private = parse_bool(
            "HEADCOUNT_WEBHOOK_DENY_PRIVATE",
            file.webhook_deny_private,
            false,
        )?;
        let metrics_public = parse_bool("HEADCOUNT_METRICS_PUBLIC", file.metrics_public, true)?;
        let metrics_per_tenant = parse_bool(
            "HEADCOUNT_METRICS_PER_TENANT",
            file.metrics_per_tenant,
            false,
        )?;
        let prepared_statements = parse_bool(
            "HEADCOUNT_PREPARED_STATEMENTS",
            file.prepared_statements,
            true,
        )?;
        let log = pick(None, "HEADCOUNT_LOG", file.log.clone()).unwrap_or_else(|| "info".into());
        let log_format = log_format(&file)?;
        let session_retention_days = parse_int(
            "HEADCOUNT_SESSION_RETENTION_DAYS",
            file.session_retention_days,
            400,
        )?;
        let sample_retention_days = parse_int(
            "HEADCOUNT_SAMPLE_RETENTION_DAYS",
            file.sample_retention_days,
            35,
        )?;
        let (provider_notify_url, provider_notify_secret) = provider_notify(&file)?;
        let (pool_size, workers, (expensive_reads_per_tenant, expensive_reads_at_once)) =
            capacity(&file)?;
        let (advice_budget_seconds, advice_cache_entries) = advice_settings(&file)?;
        let oidc = oidc(&file)?;
        let read_timeout = parse_int(
            "HEADCOUNT_READ_TIMEOUT_SECONDS",
            file.read_timeout_seconds,
            30,
        )?;
        Ok(Self {
            listen,
            database_url,
            data_dir,
            jwt_secret,
            rate_limit,
            retry_schedule,
            sample_interval,
            webhook_deny_private,
            log,
            log_format,
            session_retention_days,
            sample_retention_days,
            metrics_public,
            metrics_per_tenant,
            provider_notify_url,
            provider_notify_secret,
            pool_size: pool_size.clamp(1, 512) as u32,
            workers: workers.clamp(1, 256) as usize,
            expensive_reads_per_tenant: expensive_reads_per_tenant.clamp(1, 100_000) as u32,
            expensive_reads_at_once: expensive_reads_at_once.clamp(1, 100_000) as u32,
            expensive_reads_nice: nice(&file)?,
            prepared_statements,
            advice_budget_seconds: advice_budget_seconds as u64,
            advice_cache_entries: advice_cache_entries.min(100_000) as usize,
            oidc,
            read_timeout: Duration::from_secs(read_timeout.min(86_400) as u64),
        })
    }
}

/// `HEADCOUNT_POOL_SIZE`, `HEADCOUNT_WORKERS`, `HEADCOUNT_EXPENSIVE_READS_PER_TENANT` and
/// `HEADCOUNT_EXPENSIVE_READS_AT_ONCE`.
fn capacity(file: &FileSettings) -> Result<(i64, i64, (i64, i64)), String> {
    let pool_size = parse_int("HEADCOUNT_POOL_SIZE", file.pool_size.map(i64::from), 16)?;
    let workers = parse_int(
        "HEADCOUNT_WORKERS",
        file.workers.map(|w| w as i64),
        std::thread::available_parallelism().map_or(2, |n| n.get() as i64),
    )?;
    let expensive_reads_per_tenant = parse_int(
        "HEADCOUNT_EXPENSIVE_READS_PER_TENANT",
        file.expensive_reads_per_tenant.map(i64::from),
        4,
    )?;
    // Expensive reads are computed on at most all cores but one, so that admissions
    // and events always find one free.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as i64);
    let at_once = parse_int(
        "HEADCOUNT_EXPENSIVE_READS_AT_ONCE",
        file.expensive_reads_at_once.map(i64::from),
        (cores - 1).max(1),
    )?;
    Ok((pool_size, workers, (expensive_reads_per_tenant, at_once)))
}

/// `HEADCOUNT_EXPENSIVE_READS_NICE`: 0 to 19, the range of nice values a process may
/// give its own threads (default 10: an expensive read gets about a tenth of a core
/// that admissions want too, and all of an idle one).
fn nice(file: &FileSettings) -> Result<u8, String> {
    let name = "HEADCOUNT_EXPENSIVE_READS_NICE";
    let value = match env(name) {
        None => file.expensive_reads_nice.unwrap_or(10),
        Some(v) => v
            .parse::<u8>()
            .map_err(|_| format!("{name}: {v:?} is not a whole number from 0 to 19"))?,
    };
    if value > 19 {
        return Err(format!(
            "{name}: {value} is not a whole number from 0 to 19"
        ));
    }
    Ok(value)
}

/// `HEADCOUNT_ADVICE_BUDGET_SECONDS` and `HEADCOUNT_ADVICE_CACHE_ENTRIES` (which may
/// be 0: no cache).
fn advice_settings(file: &FileSettings) -> Result<(i64, i64), String> {
    let budget = parse_int(
        "HEADCOUNT_ADVICE_BUDGET_SECONDS",
        file.advice_budget_seconds
            .map(|s| s.min(i64::MAX as u64) as i64),
        20,
    )?;
    let entries = match env("HEADCOUNT_ADVICE_CACHE_ENTRIES") {
        None => i64::from(file.advice_cache_entries.unwrap_or(256)),
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            format!("HEADCOUNT_ADVICE_CACHE_ENTRIES: {v:?} is not a whole number")
        })?,
    };
    Ok((budget, entries))
}

/// The OpenID Connect settings: all four of issuer, client id, client secret and
/// public URL, or none (token sign-in only).
fn oidc(file: &FileSettings) -> Result<Option<Oidc>, String> {
    let issuer = pick(None, "HEADCOUNT_OIDC_ISSUER", file.oidc_issuer.clone());
    let client_id = pick(
        None,
        "HEADCOUNT_OIDC_CLIENT_ID",
        file.oidc_client_id.clone(),
    );
    let secret = pick(
        None,
        "HEADCOUNT_OIDC_CLIENT_SECRET",
        file.oidc_client_secret.clone(),
    );
    let public_url = pick(None, "HEADCOUNT_PUBLIC_URL", file.public_url.clone());
    let (Some(issuer), Some(client_id), Some(secret), Some(public_url)) = (
        issuer.clone(),
        client_id.clone(),
        secret.clone(),
        public_url.clone(),
    ) else {
        let given = [
            ("HEADCOUNT_OIDC_ISSUER", issuer.is_some()),
            ("HEADCOUNT_OIDC_CLIENT_ID", client_id.is_some()),
            ("HEADCOUNT_OIDC_CLIENT_SECRET", secret.is_some()),
        ];
        if let Some((name, _)) = given.iter().find(|(_, set)| *set) {
            let missing: Vec<&str> = given
                .iter()
                .chain(&[("HEADCOUNT_PUBLIC_URL", public_url.is_some())])
                .filter(|(_, set)| !set)
                .map(|(n, _)| *n)
                .collect();
            return Err(format!(
                "{name}: OpenID Connect sign-in also needs {}",
                missing.join(", ")
            ));
        }
        return Ok(None);
    };
    for (name, value) in [
        ("HEADCOUNT_OIDC_ISSUER", &issuer),
        ("HEADCOUNT_PUBLIC_URL", &public_url),
    ] {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(format!("{name}: {value:?} is not an http(s) URL")),
        }
    }
    let idle = parse_int("HEADCOUNT_OIDC_IDLE_MINUTES", file.oidc_idle_minutes, 60)?;
    let max_hours = parse_int("HEADCOUNT_OIDC_MAX_HOURS", file.oidc_max_hours, 12)?;
    let text = |var: &str, file: &Option<String>, default: &str| {
        pick(None, var, file.clone()).unwrap_or_else(|| default.to_owned())
    };
    Ok(Some(Oidc {
        issuer,
        client_id,
        client_secret: Secret::new(secret),
        public_url: public_url.trim_end_matches('/').to_owned(),
        admin_group: text(
            "HEADCOUNT_OIDC_ADMIN_GROUP",
            &file.oidc_admin_group,
            "headcount-admins",
        ),
        tenant_group_prefix: text(
            "HEADCOUNT_OIDC_TENANT_GROUP_PREFIX",
            &file.oidc_tenant_group_prefix,
            "headcount-tenant-",
        ),
        groups_claim: text(
            "HEADCOUNT_OIDC_GROUPS_CLAIM",
            &file.oidc_groups_claim,
            "groups",
        ),
        idle: Duration::from_secs(idle.min(100_000) as u64 * 60),
        max_age: Duration::from_secs(max_hours.min(10_000) as u64 * 3600),
    }))
}

/// The first of a command-line flag, the environment variable `var` and the file.
fn pick(flag: Option<String>, var: &str, file: Option<String>) -> Option<String> {
    flag.or_else(|| env(var)).or(file)
}

/// The data directory and the database URL; clap has already read their variables.
fn database(args: &DbArgs, file: &FileSettings) -> Result<(PathBuf, String), String> {
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./headcount-data"));
    let database_url = args
        .database_url
        .clone()
        .or(file.database_url.clone())
        .unwrap_or_else(|| format!("sqlite://{}/headcount.db", data_dir.display()));
    if crate::db::Backend::of_url(&database_url).is_none() {
        return Err(format!(
            "DATABASE_URL: unsupported URL {:?}; use sqlite://PATH or postgres://USER@HOST/DB",
            redact_url(&database_url)
        ));
    }
    if database_url.starts_with("postgres") && url::Url::parse(&database_url).is_err_and(|_| true) {
        return Err("DATABASE_URL: not a valid URL".to_owned());
    }
    Ok((data_dir, database_url))
}

fn listen(flag: Option<String>, file: &FileSettings) -> Result<String, String> {
    let listen = pick(flag, "HEADCOUNT_LISTEN", file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    if listen.parse::<SocketAddr>().is_err() {
        return Err(format!(
            "HEADCOUNT_LISTEN: {listen:?} is not an address like 127.0.0.1:8080"
        ));
    }
    Ok(listen)
}

fn jwt_secret(file: &FileSettings) -> Result<Option<Secret>, String> {
    let jwt_secret = pick(None, "HEADCOUNT_JWT_SECRET", file.jwt_secret.clone());
    if let Some(s) = &jwt_secret
        && s.len() < 32
    {
        return Err(format!(
            "HEADCOUNT_JWT_SECRET: must be at least 32 bytes, got {}",
            s.len()
        ));
    }
    Ok(jwt_secret.map(Secret::new))
}

fn rate_limit(file: &FileSettings) -> Result<Option<RateLimit>, String> {
    match pick(None, "HEADCOUNT_RATE_LIMIT", file.rate_limit.clone()) {
        None => Ok(None),
        Some(s) if s == "off" => Ok(None),
        Some(s) => parse_rate_limit(&s)
            .map(Some)
            .map_err(|e| format!("HEADCOUNT_RATE_LIMIT: {e}")),
    }
}

fn retry_schedule(file: &FileSettings) -> Result<Vec<Duration>, String> {
    let schedule = pick(
        None,
        "HEADCOUNT_RETRY_SCHEDULE",
        file.retry_schedule.clone(),
    )
    .unwrap_or_else(|| "0s,5s,5m,30m,2h,5h,10h,10h".to_owned());
    parse_schedule(&schedule).map_err(|e| format!("HEADCOUNT_RETRY_SCHEDULE: {e}"))
}

fn sample_interval(file: &FileSettings) -> Result<Duration, String> {
    let interval = pick(
        None,
        "HEADCOUNT_SAMPLE_INTERVAL",
        file.sample_interval.clone(),
    )
    .unwrap_or_else(|| "60s".to_owned());
    let interval =
        parse_duration(&interval).map_err(|e| format!("HEADCOUNT_SAMPLE_INTERVAL: {e}"))?;
    if interval.is_zero() {
        return Err("HEADCOUNT_SAMPLE_INTERVAL: must be more than 0s".to_owned());
    }
    Ok(interval)
}

fn log_format(file: &FileSettings) -> Result<LogFormat, String> {
    match pick(None, "HEADCOUNT_LOG_FORMAT", file.log_format.clone())
        .as_deref()
        .unwrap_or("text")
    {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!(
            "HEADCOUNT_LOG_FORMAT: {other:?} is neither \"text\" nor \"json\""
        )),
    }
}

/// The provider's notice URL and the secret its notices are signed with: a URL
/// without a secret is refused, as its notices could not be signed.
fn provider_notify(file: &FileSettings) -> Result<(Option<String>, Option<Secret>), String> {
    let url = pick(
        None,
        "HEADCOUNT_PROVIDER_NOTIFY_URL",
        file.provider_notify_url.clone(),
    );
    let secret = pick(
        None,
        "HEADCOUNT_PROVIDER_NOTIFY_SECRET",
        file.provider_notify_secret.clone(),
    )
    .map(Secret::new);
    if url.is_some() && secret.is_none() {
        return Err(
            "HEADCOUNT_PROVIDER_NOTIFY_SECRET: required when HEADCOUNT_PROVIDER_NOTIFY_URL is set"
                .to_owned(),
        );
    }
    Ok((url, secret))
}

fn read_file(path: &Path) -> Result<FileSettings, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))
}

/// A switch from the environment variable `name`, else the file, else `default`.
fn parse_bool(name: &str, file: Option<bool>, default: bool) -> Result<bool, String> {
    match env(name).as_deref() {
        None => Ok(file.unwrap_or(default)),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(format!("{name}: {other:?} is not true or false")),
    }
}

/// A positive number from the environment variable `name`, else the file, else
/// `default`.
fn parse_int(name: &str, file: Option<i64>, default: i64) -> Result<i64, String> {
    match env(name) {
        None => Ok(file.unwrap_or(default)),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}: {v:?} is not a positive whole number")),
        },
    }
}

/// Parses a duration in humantime's notation: `250ms`, `5s`, `5m`, `2h`, `1d`, `1h 30m`.
/// A bare number is refused, as humantime refuses it, so that `5` cannot silently
/// mean seconds to one reader and minutes to another. Months and years are refused
/// too: humantime counts them as averages (30.44 and 365.25 days), which no one
/// writing a retry schedule has in mind.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let calendar_unit = s.split(|c: char| !c.is_alphabetic()).find(|unit| {
        matches!(
            *unit,
            "M" | "month" | "months" | "y" | "yr" | "yrs" | "year" | "years"
        )
    });
    if let Some(unit) = calendar_unit {
        return Err(format!(
            "{s:?}: {unit:?} has no fixed length (use ms, s, m, h, d or w)"
        ));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let v = s
        .split(',')
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()?;
    if v.is_empty() {
        return Err("the schedule needs at least one attempt".to_owned());
    }
    Ok(v)
}

/// Parses `100/s,200` (requests per second, burst).
pub fn parse_rate_limit(s: &str) -> Result<RateLimit, String> {
    let (rate, burst) = s.split_once(',').unwrap_or((s, ""));
    let per_second: u32 = rate
        .trim()
        .strip_suffix("/s")
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .ok_or_else(|| format!("{s:?} is not like 100/s,200"))?;
    let burst = if burst.is_empty() {
        per_second
    } else {
        burst
            .trim()
            .parse()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| format!("{s:?} has a bad burst (like 100/s,200)"))?
    };
    Ok(RateLimit { per_second, burst })
}

/// Hides the password of a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn default_schedule_has_eight_attempts() {
        let s = parse_schedule("0s,5s,5m,30m,2h,5h,10h,10h").unwrap();
        assert_eq!(s.len(), 8);
        assert_eq!(s[7], Duration::from_secs(36000));
    }

    #[test]
    fn rate_limits_parse() {
        assert_eq!(
            parse_rate_limit("100/s,200").unwrap(),
            RateLimit {
                per_second: 100,
                burst: 200
            }
        );
        assert_eq!(parse_rate_limit("5/s").unwrap().burst, 5);
        assert!(parse_rate_limit("100,200").is_err());
        assert!(parse_rate_limit("0/s").is_err());
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let s = Secret::new("super-secret-value");
        assert!(!format!("{s:?}").contains("super"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert!(!redact_url("postgres://u:pw@h/db").contains("pw"));
    }
}
