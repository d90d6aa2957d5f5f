//! `headcount plan|tenant|site`: the control API from the command line.
//!
//! Like `load`, an outside client that speaks HTTP only: each command is one or two
//! requests to a running headcount (`--url`, with an admin `--token`), printed as
//! `key: value` lines or a table, or with `--json` as the API's JSON. A failed request
//! is an `Err` with the problem's title, detail and field errors, which `main` prints
//! before exiting with status 1.

mod args;
mod client;
mod render;
mod site;

use serde_json::Value;

pub use args::{PlanAction, PlanArgs, Remote, SiteAction, SiteArgs, TenantAction, TenantArgs};
use client::{Client, body, changes};

/// The keys `show` prints first, before the others by name.
const PLAN_FIRST: &[&str] = &[
    "code",
    "name",
    "session_limit",
    "monthly_price_cents",
    "currency",
];
const TENANT_FIRST: &[&str] = &["slug", "name", "notify_secret"];
const SITE_FIRST: &[&str] = &["slug", "name", "tenant", "plan", "webhook_url"];

pub fn plan(args: PlanArgs) -> Result<(), String> {
    let client = Client::new(&args.remote)?;
    let out = Output(args.remote.json);
    match args.action {
        PlanAction::Create(b) => out.one(&client.post(&["v1", "plans"], &body(&b)?)?, PLAN_FIRST),
        PlanAction::List => {
            let items = client.get_all(&["v1", "plans"], &[])?;
            out.list(&items, PLAN_COLUMNS)
        }
        PlanAction::Show { code } => {
            out.one(&client.get(&["v1", "plans", &code], &[])?, PLAN_FIRST)
        }
        PlanAction::Update(b) => {
            let changes = changes(&b, &[])?;
            out.one(
                &client.patch(&["v1", "plans", &b.code], &changes)?,
                PLAN_FIRST,
            )
        }
    }
}

pub fn tenant(args: TenantArgs) -> Result<(), String> {
    let client = Client::new(&args.remote)?;
    let out = Output(args.remote.json);
    match args.action {
        TenantAction::Create(b) => {
            let created = client.post(&["v1", "tenants"], &body(&b)?)?;
            out.one(&created, TENANT_FIRST)
        }
        TenantAction::List => {
            let items = client.get_all(&["v1", "tenants"], &[])?;
            out.list(&items, TENANT_COLUMNS)
        }
        TenantAction::Show { slug } => {
            out.one(&client.get(&["v1", "tenants", &slug], &[])?, TENANT_FIRST)
        }
        TenantAction::Update(b) => {
            let changes = changes(&b, &b.clear)?;
            out.one(
                &client.patch(&["v1", "tenants", &b.slug], &changes)?,
                TENANT_FIRST,
            )
        }
    }
}

pub fn site(args: SiteArgs) -> Result<(), String> {
    let client = Client::new(&args.remote)?;
    let out = Output(args.remote.json);
    match args.action {
        SiteAction::Create(b) => site::create(&client, &args.remote, b),
        SiteAction::List { tenant } => {
            let query: Vec<(&str, &str)> = tenant.iter().map(|t| ("tenant", t.as_str())).collect();
            let items = client.get_all(&["v1", "sites"], &query)?;
            out.list(&items, SITE_COLUMNS)
        }
        SiteAction::Show { slug } => {
            out.one(&client.get(&["v1", "sites", &slug], &[])?, SITE_FIRST)
        }
        SiteAction::Update(b) => {
            let changes = changes(&b, &b.clear)?;
            out.one(
                &client.patch(&["v1", "sites", &b.slug], &changes)?,
                SITE_FIRST,
            )
        }
    }
}

const PLAN_COLUMNS: &[(&str, &str)] = &[
    ("CODE", "code"),
    ("NAME", "name"),
    ("LIMIT", "session_limit"),
    ("COUNT", "count_mode"),
    ("OVER LIMIT", "over_limit"),
    ("PRICE", "monthly_price_cents"),
    ("CURRENCY", "currency"),
];
const TENANT_COLUMNS: &[(&str, &str)] = &[
    ("SLUG", "slug"),
    ("NAME", "name"),
    ("BILLING EMAIL", "billing_email"),
    ("POOL", "pooled_session_limit"),
];
const SITE_COLUMNS: &[(&str, &str)] = &[
    ("SLUG", "slug"),
    ("TENANT", "tenant"),
    ("PLAN", "plan"),
    ("LIMIT", "effective.session_limit"),
    ("NAME", "name"),
    ("WEBHOOK URL", "webhook_url"),
];

/// `--json` or not.
struct Output(bool);

impl Output {
    fn one(&self, v: &Value, first: &[&str]) -> Result<(), String> {
        if self.0 {
            println!("{v}");
        } else {
            print!("{}", render::lines(v, first));
        }
        Ok(())
    }

    /// With `--json`, one page holding every item, as the API's lists are shaped.
    fn list(&self, items: &[Value], columns: &[(&str, &str)]) -> Result<(), String> {
        if self.0 {
            println!(
                "{}",
                serde_json::json!({"items": items, "next_cursor": null})
            );
        } else {
            print!("{}", render::table(items, columns));
        }
        Ok(())
    }
}
