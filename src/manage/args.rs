//! The flags of `headcount plan|tenant|site`. The optional fields serialize straight
//! into the API's request bodies (a flag left out is a field left out), so each flag
//! is named after the field it sets.

use clap::{Args, Subcommand};
use serde::Serialize;

/// Where headcount runs, who calls it and how to print: shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// headcount's base URL.
    #[arg(
        long,
        env = "HEADCOUNT_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// An admin token (`headcount token create --role admin`, or the one `serve`
    /// printed at first start).
    #[arg(long, env = "HEADCOUNT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON as it is, instead of lines for people.
    #[arg(long, global = true)]
    pub json: bool,
}

// ---------------------------------------------------------------------------------
// Plans

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[command(subcommand)]
    pub action: PlanAction,
}

#[derive(Debug, Subcommand)]
pub enum PlanAction {
    /// Create a plan (POST /v1/plans).
    #[command(
        after_help = "Example:\n  headcount plan create --code team --name Team \
                            --session-limit 25 --monthly-price-cents 4900"
    )]
    Create(PlanCreate),
    /// List the plans (GET /v1/plans, every page).
    #[command(after_help = "Example:\n  headcount plan list --json")]
    List,
    /// Show one plan (GET /v1/plans/{code}).
    #[command(after_help = "Example:\n  headcount plan show team")]
    Show {
        /// The plan's code.
        code: String,
    },
    /// Change a plan (PATCH /v1/plans/{code}): only the fields given change.
    ///
    /// Every site on the plan that does not override a field gets the new value, and
    /// the change is pushed to those sites.
    #[command(
        after_help = "Example:\n  headcount plan update team --session-limit 30 \
                            --monthly-price-cents 5900"
    )]
    Update(PlanUpdate),
}

#[derive(Debug, Args, Serialize)]
pub struct PlanCreate {
    /// The plan's code: lower-case letters, digits and dashes (`team`).
    #[arg(long)]
    pub code: String,
    /// The plan's name as people read it.
    #[arg(long)]
    pub name: String,
    /// The most simultaneous sessions a site on the plan may have.
    #[arg(long)]
    pub session_limit: i64,
    #[command(flatten)]
    #[serde(flatten)]
    pub terms: PlanTerms,
}

#[derive(Debug, Args, Serialize)]
pub struct PlanUpdate {
    /// The plan's code.
    #[serde(skip)]
    pub code: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new limit for the plan's sites.
    #[arg(long)]
    pub session_limit: Option<i64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub terms: PlanTerms,
}

/// A plan's terms besides its name and limit; each defaults on the server when left out.
#[derive(Debug, Args, Serialize)]
pub struct PlanTerms {
    /// Price per month, in cents [server default: 0].
    #[arg(long)]
    pub monthly_price_cents: Option<i64>,
    /// ISO 4217 code of the prices [server default: EUR].
    #[arg(long)]
    pub currency: Option<String>,
    /// Price of one session over the limit, in cents, for `allow_overage`.
    #[arg(long)]
    pub overage_unit_price_cents: Option<i64>,
    /// How far over the limit `allow_overage` may go, in percent.
    #[arg(long)]
    pub overage_percent: Option<i64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub rules: LimitRules,
}

/// The rules a plan sets and a site may override.
#[derive(Debug, Args, Serialize)]
pub struct LimitRules {
    /// Which sessions count: every active one, or only the live ones.
    #[arg(long, value_parser = ["active", "live"])]
    pub count_mode: Option<String>,
    /// What happens when a new session would pass the limit.
    #[arg(long, value_parser = ["reject", "evict_dangling", "allow_overage"])]
    pub over_limit: Option<String>,
    /// Seconds without activity after which a session is dangling.
    #[arg(long)]
    pub idle_timeout_seconds: Option<i64>,
    /// Seconds after which a session expires.
    #[arg(long)]
    pub session_ttl_seconds: Option<i64>,
    /// The text a refused user reads.
    #[arg(long)]
    pub limit_message: Option<String>,
    /// Places kept free for the reserved roles.
    #[arg(long)]
    pub reserved_slots: Option<i64>,
    /// Roles that may use the reserved places, comma-separated (`admin,staff`).
    #[arg(long, value_delimiter = ',')]
    pub reserved_roles: Option<Vec<String>>,
    /// Roles whose sessions are admitted but never counted, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exempt_roles: Option<Vec<String>>,
    /// Most counted sessions one user may hold.
    #[arg(long)]
    pub per_user_limit: Option<i64>,
    /// What happens when a user holds `per_user_limit` sessions.
    #[arg(long, value_parser = ["reject", "replace_oldest"])]
    pub per_user_over_limit: Option<String>,
}

// ---------------------------------------------------------------------------------
// Tenants

#[derive(Debug, Args)]
pub struct TenantArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[command(subcommand)]
    pub action: TenantAction,
}

#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Create a tenant (POST /v1/tenants); prints its alert secret, shown only now.
    #[command(after_help = "Example:\n  headcount tenant create --slug acme --name 'Acme Ltd'")]
    Create(TenantCreate),
    /// List the tenants (GET /v1/tenants, every page).
    #[command(after_help = "Example:\n  headcount tenant list")]
    List,
    /// Show one tenant (GET /v1/tenants/{slug}).
    #[command(after_help = "Example:\n  headcount tenant show acme")]
    Show {
        /// The tenant's slug.
        slug: String,
    },
    /// Change a tenant (PATCH /v1/tenants/{slug}): only the fields given change.
    #[command(
        after_help = "Example:\n  headcount tenant update acme --name 'Acme Group' \
                            --billing-email billing@acme.example"
    )]
    Update(TenantUpdate),
}

#[derive(Debug, Args, Serialize)]
pub struct TenantCreate {
    /// The tenant's slug: lower-case letters, digits and dashes (`acme`).
    #[arg(long)]
    pub slug: String,
    /// The tenant's name as people read it.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    #[serde(flatten)]
    pub fields: TenantFields,
}

#[derive(Debug, Args, Serialize)]
pub struct TenantUpdate {
    /// The tenant's slug.
    #[serde(skip)]
    pub slug: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub fields: TenantFields,
    /// Unset a field (`billing_email`, `notify_url`, `pooled_session_limit`); repeatable.
    #[arg(long, value_name = "FIELD")]
    #[serde(skip)]
    pub clear: Vec<String>,
}

#[derive(Debug, Args, Serialize)]
pub struct TenantFields {
    /// Where invoices go.
    #[arg(long)]
    pub billing_email: Option<String>,
    /// Where headcount posts the tenant's threshold alerts.
    #[arg(long)]
    pub notify_url: Option<String>,
    /// A limit shared by all of the tenant's sites.
    #[arg(long)]
    pub pooled_session_limit: Option<i64>,
}

// ---------------------------------------------------------------------------------
// Sites

#[derive(Debug, Args)]
pub struct SiteArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[command(subcommand)]
    pub action: SiteAction,
}

#[derive(Debug, Subcommand)]
pub enum SiteAction {
    /// Create a site and a token for its agent; print the agent's settings block.
    ///
    /// Creates the site (POST /v1/sites), mints a site token for it (POST /v1/tokens
    /// with role `site`) and prints the `HEADCOUNT = {…}` block to paste into the
    /// Django site's settings.py. The webhook secret and the token in it are shown
    /// only now. With --json: one object with `site`, `token` and `settings`.
    #[command(
        after_help = "Example:\n  headcount site create --slug acme-erp --tenant acme \
                            --plan team --name 'Acme ERP' \\\n      \
                            --webhook-url https://erp.acme.example/headcount/webhook/"
    )]
    Create(SiteCreate),
    /// List the sites (GET /v1/sites, every page).
    #[command(after_help = "Example:\n  headcount site list --tenant acme")]
    List {
        /// Only this tenant's sites.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show one site (GET /v1/sites/{slug}): its plan, overrides and what it runs with.
    #[command(after_help = "Example:\n  headcount site show acme-erp")]
    Show {
        /// The site's slug.
        slug: String,
    },
    /// Change a site (PATCH /v1/sites/{slug}): only the fields given change.
    ///
    /// --session-limit and the other rules are overrides of the plan's; --clear FIELD
    /// removes an override, so the plan's value applies again.
    #[command(
        after_help = "Example:\n  headcount site update acme-erp --plan business \
                            --session-limit 40\n  \
                            headcount site update acme-erp --clear session_limit"
    )]
    Update(SiteUpdate),
}

#[derive(Debug, Args, Serialize)]
pub struct SiteCreate {
    /// The site's slug: lower-case letters, digits and dashes (`acme-erp`).
    #[arg(long)]
    pub slug: String,
    /// The slug of the tenant that owns it.
    #[arg(long)]
    pub tenant: String,
    /// The code of its plan.
    #[arg(long)]
    pub plan: String,
    /// Its name as people read it [default: the slug].
    #[arg(long)]
    pub name: Option<String>,
    /// Where headcount pushes limit changes and kills: the agent answers at
    /// `https://<the site>/headcount/webhook/`.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// The provider's own limit for this site, in place of the plan's.
    #[arg(long)]
    pub session_limit: Option<i64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub rules: LimitRules,
    #[command(flatten)]
    #[serde(skip)]
    pub agent: AgentFlags,
}

/// What goes into the agent's settings block besides what headcount answers.
#[derive(Debug, Args)]
pub struct AgentFlags {
    /// The agent's MODE: `off` reports only, `local` refuses sign-ins by the pushed
    /// limit, `central` asks headcount at each sign-in.
    #[arg(long, default_value = "local", value_parser = ["off", "local", "central"])]
    pub mode: String,
    /// headcount's URL as the site reaches it, for the block's URL [default: --url].
    #[arg(long)]
    pub agent_url: Option<String>,
    /// Lifetime of the site token in seconds [default: the server's, a year].
    #[arg(long)]
    pub token_ttl_seconds: Option<i64>,
}

#[derive(Debug, Args, Serialize)]
pub struct SiteUpdate {
    /// The site's slug.
    #[serde(skip)]
    pub slug: String,
    /// Move the site to this plan.
    #[arg(long)]
    pub plan: Option<String>,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new webhook URL (setting it again re-enables pushes after a 410).
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// The provider's own limit for this site, in place of the plan's.
    #[arg(long)]
    pub session_limit: Option<i64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub rules: LimitRules,
    /// Remove an override or the webhook URL (`session_limit`, `count_mode`,
    /// `webhook_url`, …), so the plan's value applies; repeatable.
    #[arg(long, value_name = "FIELD")]
    #[serde(skip)]
    pub clear: Vec<String>,
}
