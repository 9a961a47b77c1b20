//! Reading and writing tickets with optimistic concurrency, and when each ticket next needs the
//! dispatcher. Every persisted status change goes through [`update`].

use std::time::Duration;

use models::ticket::Ticket;
use models::TicketStatus;
use rand::Rng;
use store::StoreError;
use tracing::Instrument;

use crate::{views, App, AppError, AppResult};

/// How long a write keeps retrying against concurrent writers and throttling before giving up:
/// well below the HTTP functions' 29 s Lambda timeout (and the dispatcher's 55 s), so an
/// invocation stops cleanly with an error its caller retries, instead of being killed mid-way.
/// A deadline, not a count: a count of quick conflicts says nothing about the time left.
const WRITE_RETRY_DEADLINE: Duration = Duration::from_secs(10);

/// When the dispatcher must next look at this ticket, if ever: a due delivery, an owed backend
/// cancellation, a dispatch that never completed, reconciliation of a quiet PENDING ticket, expiry.
pub fn next_due(app: &App, t: &Ticket) -> Option<i64> {
    let mut due: Vec<i64> = Vec::new();
    if t.delivery.is_due() {
        due.push(t.delivery.next_attempt_at.unwrap_or(t.created_at));
    }
    if let Some(c) = &t.backend_cancel {
        if !c.done {
            due.push(c.next_attempt_at);
        }
    }
    if t.status == TicketStatus::Pending {
        due.push(t.expire_at);
        if let Some(r) = &t.withdraw_request {
            due.push(r.next_attempt_at);
        }
        if let Some(at) = reconcile_at(t, app.config.reconcile_after_secs * 1000) {
            due.push(at);
        } else if let Some(at) = redispatch_at(t) {
            due.push(at);
        }
    }
    due.into_iter().min()
}

/// The longest wait between two quiet backend reads of one ticket (SPEC 2).
pub const RECONCILE_MAX_WAIT_MS: i64 = 12 * 3_600_000;

/// When the dispatcher next reads a PENDING ticket's backend instance (reconciliation of lost
/// events): `after_ms` after the last event or read, doubled by every quiet read in a row, up to
/// [`RECONCILE_MAX_WAIT_MS`]. Events are what the bridge relies on; each read spends the
/// organisation's monthly DingTalk API budget, so a quiet ticket is read ever more rarely.
pub fn reconcile_at(t: &Ticket, after_ms: i64) -> Option<i64> {
    if t.status != TicketStatus::Pending || t.instance_id.is_none() {
        return None;
    }
    let quiet_since = t.last_event_at.max(t.last_reconciled_at.unwrap_or(0));
    Some(quiet_since + reconcile_wait(after_ms, t.quiet_reads))
}

/// The wait after `quiet_reads` reads in a row that found nothing new.
pub fn reconcile_wait(after_ms: i64, quiet_reads: u32) -> i64 {
    let doubled = after_ms.saturating_mul(1i64 << quiet_reads.min(40));
    doubled.min(RECONCILE_MAX_WAIT_MS.max(after_ms))
}

/// When the dispatcher should forward a PENDING ticket that never reached its backend: after a
/// crashed create's lease ran out, or with backoff after a failed dispatch.
pub fn redispatch_at(t: &Ticket) -> Option<i64> {
    if t.status != TicketStatus::Pending || t.instance_id.is_some() || t.backend.is_none() {
        return None;
    }
    Some(match (&t.dispatch, t.dispatch_lease_until) {
        (_, Some(lease)) => lease,
        (Some(d), None) => d.at + crate::delivery::backoff_ms(d.attempts.max(1), 0.0),
        (None, None) => t.created_at,
    })
}

pub async fn load(app: &App, id: &str) -> AppResult<Ticket> {
    app.store
        .get_ticket(id, false)
        .await?
        .map(|s| s.ticket)
        .ok_or_else(|| AppError::NotFound(format!("ticket {id} not found")))
}

pub async fn save(app: &App, t: &mut Ticket) -> AppResult<()> {
    let summary = views::list_row(t);
    let due = next_due(app, t);
    app.store.save_ticket(t, &summary, due).await?;
    Ok(())
}

/// Reads the ticket, lets `change` fold something into it, and writes it back if nobody wrote
/// in between; otherwise re-reads and folds again. `change` returns whether it changed anything
/// (nothing is written when it did not). Returns the ticket as stored.
pub async fn update<F>(app: &App, id: &str, change: F) -> AppResult<Ticket>
where
    F: FnMut(&mut Ticket) -> AppResult<bool>,
{
    let span = tracing::info_span!("ticket", ticket_id = %id);
    update_in_span(app, id, change).instrument(span).await
}

async fn update_in_span<F>(app: &App, id: &str, mut change: F) -> AppResult<Ticket>
where
    F: FnMut(&mut Ticket) -> AppResult<bool>,
{
    let deadline = std::time::Instant::now() + WRITE_RETRY_DEADLINE;
    for attempt in 0u32.. {
        let mut t = load(app, id).await?;
        let before = t.status;
        if !change(&mut t)? {
            return Ok(t);
        }
        let summary = views::list_row(&t);
        let due = next_due(app, &t);
        match app.store.save_ticket(&mut t, &summary, due).await {
            Ok(()) => {
                crate::metrics::ticket::written(before, &t);
                return Ok(t);
            }
            Err(StoreError::Conflict | StoreError::Throttled(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let ms = rand::thread_rng().gen_range(5..30) * u64::from(attempt.min(8) + 1);
        let pause = Duration::from_millis(ms);
        if std::time::Instant::now() + pause >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    Err(AppError::Internal(format!(
        "ticket {id}: too much concurrent change, try again"
    )))
}

/// Stable ticket id for (tenantId, applyId): the one conditional create is the idempotency check.
pub fn ticket_id(tenant_id: &str, apply_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(tenant_id.as_bytes());
    h.update([0u8]);
    h.update(apply_id.as_bytes());
    let digest = h.finalize();
    format!("tk-{}", &hex::encode(digest)[..24])
}

#[cfg(test)]
mod tests {
    use super::{reconcile_wait, RECONCILE_MAX_WAIT_MS};

    const HOUR: i64 = 3_600_000;

    #[test]
    fn quiet_reads_double_the_wait_up_to_twelve_hours() {
        let after = 1_800_000;
        let waits: Vec<i64> = (0..7).map(|n| reconcile_wait(after, n)).collect();
        assert_eq!(
            waits,
            vec![
                after,
                HOUR,
                2 * HOUR,
                4 * HOUR,
                8 * HOUR,
                12 * HOUR,
                12 * HOUR
            ]
        );
        assert_eq!(reconcile_wait(after, 1_000), RECONCILE_MAX_WAIT_MS);
        // a setting above the cap is kept as it is
        assert_eq!(reconcile_wait(24 * HOUR, 3), 24 * HOUR);
    }

    #[test]
    fn a_quiet_week_costs_seventeen_reads_instead_of_three_hundred_thirty_six() {
        let reads = |wait: &dyn Fn(u32) -> i64| {
            let (mut at, mut n) = (0, 0u32);
            loop {
                at += wait(n);
                if at > 168 * HOUR {
                    return n;
                }
                n += 1;
            }
        };
        assert_eq!(reads(&|_| 1_800_000), 336, "before: every 30 min");
        assert_eq!(reads(&|n| reconcile_wait(1_800_000, n)), 17);
    }
}
