//! The scheduled dispatcher: finds due tickets through the sparse due index (never a scan) and
//! does what each needs: deliver results, cancel backend instances, reconcile, expire.

use serde_json::{json, Value};

use crate::{callback, delivery, submit, tickets, withdraw, App, AppResult};

/// How many due tickets one run handles per shard.
const BATCH: i32 = 100;

#[derive(Debug, Default, Clone, Copy)]
pub struct RunReport {
    pub due: usize,
    pub delivered: usize,
    pub failed: usize,
}

/// One dispatcher run at `now`.
pub async fn run(app: &App, now: i64) -> AppResult<RunReport> {
    run_until(app, now, None).await
}

/// How long before the invocation's deadline no further ticket is started: the one in hand
/// finishes, the rest stays due for the next run, and the invocation is never killed mid-way.
const TICKET_BUDGET_MS: i64 = 15_000;

/// One dispatcher run at `now` that starts no ticket past `deadline_ms` less the budget of one.
pub async fn run_until(app: &App, now: i64, deadline_ms: Option<i64>) -> AppResult<RunReport> {
    let ids = app.store.due_ticket_ids(now, BATCH).await?;
    let mut report = RunReport {
        due: ids.len(),
        ..Default::default()
    };
    for id in ids {
        if deadline_ms.is_some_and(|d| crate::http::now_ms() + TICKET_BUDGET_MS > d) {
            tracing::warn!(
                "invocation deadline near: the remaining due tickets wait for the next run"
            );
            break;
        }
        match work_on(app, &id, now).await {
            Ok(delivered) => report.delivered += usize::from(delivered),
            Err(e) => {
                report.failed += 1;
                tracing::warn!(ticket_id = %id, error = %e, "dispatcher could not finish a ticket");
            }
        }
    }
    crate::meter::flush(app).await;
    tracing::info!(
        due = report.due,
        delivered = report.delivered,
        failed = report.failed,
        "dispatcher run"
    );
    Ok(report)
}

async fn work_on(app: &App, id: &str, now: i64) -> AppResult<bool> {
    let t = tickets::load(app, id).await?;
    if t.status == models::TicketStatus::Pending {
        if t.expire_at <= now {
            withdraw::expire(app, id, now).await?;
        } else if t
            .withdraw_request
            .as_ref()
            .is_some_and(|r| r.next_attempt_at <= now)
        {
            withdraw::repeat_requested(app, id, now).await?;
        } else if tickets::redispatch_at(&t).is_some_and(|at| at <= now) {
            submit::redispatch(app, id, now).await?;
        } else if tickets::reconcile_at(&t, app.config.reconcile_after_secs * 1000)
            .is_some_and(|at| at <= now)
        {
            reconcile(app, id, now).await?;
        }
    }
    let t = tickets::load(app, id).await?;
    if t.backend_cancel
        .as_ref()
        .is_some_and(|c| !c.done && c.next_attempt_at <= now)
    {
        withdraw::retry_cancel(app, id, now).await?;
    }
    let t = tickets::load(app, id).await?;
    let mut delivered = false;
    if t.delivery.is_due() && t.delivery.next_attempt_at.unwrap_or(0) <= now {
        delivered = delivery::deliver(app, id, now).await? == delivery::Attempt::Acknowledged;
    } else {
        // Nothing to do now: rewrite the ticket so its due time is current again.
        tickets::update(app, id, |_| Ok(true)).await?;
    }
    Ok(delivered)
}

/// Asks the backend where a quiet PENDING ticket stands, so a lost event still ends right.
pub async fn reconcile(app: &App, id: &str, now: i64) -> AppResult<()> {
    let t = tickets::load(app, id).await?;
    if let Some(instance) = &t.instance_id {
        // Events kept before the instance was linked, if the create died before applying them.
        callback::apply_waiting(app, instance, Some(id)).await?;
    }
    let polled = app.backend.poll(&t, now).await;
    let read_ok = polled.is_ok();
    let before = tickets::load(app, id).await?.version;
    match polled {
        Ok(mut events) if !events.is_empty() => {
            // Approvers who joined by a transfer or were added are named as Dataphin users.
            callback::name_people(app, &t, &mut events).await?;
            callback::fold(app, id, None, &events).await?;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(ticket_id = id, error = %e, "reconciliation poll failed"),
    }
    tickets::update(app, id, |t| {
        t.last_reconciled_at = Some(now);
        if read_ok && t.version == before {
            // Nothing new: the next read waits twice as long (an event starts over).
            t.quiet_reads = t.quiet_reads.saturating_add(1);
        }
        Ok(true)
    })
    .await?;
    Ok(())
}

pub fn report_json(r: &RunReport) -> Value {
    json!({"due": r.due, "delivered": r.delivered, "failed": r.failed})
}
