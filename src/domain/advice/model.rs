//! What advice is computed from and what one replay gives: plain values.

use crate::domain::Millis;
use crate::domain::billing::Period;
use crate::domain::config::{CountMode, OverLimit};
use crate::domain::session::Span;

/// A recorded refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub at: Millis,
    /// Whether a counted session was dangling then, as the refusal recorded it; `None`
    /// when it recorded none (site-side refusals): then judged from the sessions.
    pub dangling: Option<bool>,
    /// `false` for refusals of rules the replay does not model (a user's cap, the
    /// tenant's pool): they stay refusals in every option.
    pub replayable: bool,
}

/// The rule an option admits by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub session_limit: i64,
    pub count_mode: CountMode,
    pub over_limit: OverLimit,
    pub overage_percent: i64,
    pub idle_timeout_seconds: i64,
}

/// What a plan costs, and what it sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub plan: String,
    /// The plan's own limit; an option above it pays each extra place at the overage
    /// unit price.
    pub plan_limit: i64,
    pub rule: Rule,
    pub monthly_price_cents: i64,
    pub overage_unit_price_cents: i64,
}

/// Everything the advice is computed from.
#[derive(Debug, Clone)]
pub struct Input {
    pub period: Period,
    /// The part of the period the site existed in, for the prorated base price.
    pub billed_ms: i64,
    pub sessions: Vec<Span>,
    pub refusals: Vec<Refusal>,
    /// The site's plan with its effective rule.
    pub current: Offer,
    /// Every plan, the site's included (with the site's overrides applied).
    pub plans: Vec<Offer>,
    /// The currency of the amounts in the recommendation's text.
    pub currency: String,
}

/// What one replay gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Attempts refused (real sessions and recorded refusals).
    pub refusals: i64,
    /// Recorded refusals this rule would have admitted.
    pub admitted_refusals: i64,
    pub peak_active: i64,
}

/// The advice was given up: the budget ran out or nobody waits for it any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;
