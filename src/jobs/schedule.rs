//! The runner of limits over time: every few seconds it applies what is due at the
//! clock's now, scheduled changes and the edges of boosts, oldest first, each dated its
//! own instant. Every step is claimed with a conditional update in the transaction that
//! applies it, so several processes may run this and each step happens once; steps
//! missed while no process ran are applied at the next start.

use std::time::Duration;

use actix_web::web;
use diesel::Connection as _;
use tokio::sync::watch;

use crate::api::sites::ScheduledEdit;
use crate::clock::Millis;
use crate::db::schedule::{self, ScheduledChange, Target};
use crate::db::{DbConn, boosts, plans, sites};
use crate::domain::schedule::{ChangeStatus, Due, Step, due};
use crate::domain::scope::Scope;
use crate::error::{Error, Result};
use crate::state::AppState;

/// How often the runner looks, in real time: "within a minute of `at`" with room.
pub const EVERY: Duration = Duration::from_secs(2);

pub async fn run(state: web::Data<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = tick(&state).await {
            tracing::warn!(error = %e, "scheduled changes: run failed; trying again shortly");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Applies everything due now; how many steps this process applied.
pub async fn tick(state: &web::Data<AppState>) -> Result<usize> {
    let now = state.now();
    let steps = state
        .db
        .run(move |c| {
            let changes = schedule::due_changes(c, now)?;
            let boosts = schedule::due_boosts(c, now)?;
            Ok::<_, Error>(due(&changes, &boosts, now))
        })
        .await?;
    let mut applied = 0;
    for step in steps {
        let st = state.clone();
        match state.db.run(move |c| run_step(c, &st, step, now)).await {
            Ok(true) => applied += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, ?step, "scheduled step failed"),
        }
    }
    if applied > 0 {
        state.outbox_wakeup.notify_one();
    }
    Ok(applied)
}

fn run_step(c: &mut DbConn, state: &AppState, step: Due, now: Millis) -> Result<bool> {
    match step.step {
        Step::StartBoost => Ok(boosts::run_edge(c, step.owner, step.id, true, step.at)?),
        Step::EndBoost => Ok(boosts::run_edge(c, step.owner, step.id, false, step.at)?),
        Step::SiteChange | Step::PlanChange => {
            run_change(c, state, Target::of_due(&step), step.id, now)
        }
    }
}

/// Claims the change and applies it in one transaction; a change that can no longer
/// be applied (its plan was deleted, say) is marked `failed` with the reason.
fn run_change(
    c: &mut DbConn, state: &AppState, target: Target, id: i64, now: Millis,
) -> Result<bool> {
    let ch = schedule::get_change(c, target, id)?;
    let applied = c.transaction(|c| {
        if !schedule::claim_change(c, target, id, ChangeStatus::Done, now, None)? {
            return Ok(false);
        }
        apply(c, state, &ch)?;
        Ok::<_, Error>(true)
    });
    match applied {
        Err(e @ (Error::Busy | Error::Unavailable(_) | Error::Internal(_))) => Err(e),
        Err(e) => {
            let why = e.to_string();
            tracing::warn!(id, error = %why, "scheduled change could not be applied");
            schedule::claim_change(c, target, id, ChangeStatus::Failed, now, Some(&why))?;
            Ok(false)
        }
        ok => ok,
    }
}

/// The change, through the same path as the change it schedules, dated its `at`.
fn apply(c: &mut DbConn, state: &AppState, ch: &ScheduledChange) -> Result<()> {
    let body: serde_json::Value =
        serde_json::from_str(&ch.body).map_err(|e| Error::Internal(e.into()))?;
    match ch.target {
        Target::Site(site) => {
            let slug = sites::get_by_id(c, site.id())?.site.slug;
            let edit = ScheduledEdit {
                body: &body,
                by_provider: ch.by_provider,
                at: ch.at,
                actor: &ch.actor,
            };
            crate::api::sites::apply_scheduled(c, state, &Scope::Provider, &slug, &edit)?;
        }
        Target::Plan(plan_id) => {
            let code = plans::get_by_id(c, plan_id)?.code;
            crate::api::plans::apply_scheduled_plan(c, &code, &body, ch.at, &ch.actor)?;
        }
    }
    Ok(())
}
