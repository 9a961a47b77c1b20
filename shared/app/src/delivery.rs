//! Reporting results to Dataphin (SPEC 5): at least once, never lost, retried with exponential
//! backoff and jitter for the retry window, re-drivable by the ops API.

use dataphin::CallbackTarget;
use models::ticket::Ticket;
use rand::Rng;
use serde_json::Value;

use crate::http::now_ms;
use crate::{tickets, App, AppError, AppResult};

/// First retry after 10 s, doubling up to an hour between attempts.
const BACKOFF_BASE_MS: i64 = 10_000;
const BACKOFF_CAP_MS: i64 = 3_600_000;

/// Delay before retry number `attempts` (1-based), with up to 20 % jitter so that a recovering
/// Dataphin is not hit by every ticket at once.
pub fn backoff_ms(attempts: u32, jitter: f64) -> i64 {
    let exp = BACKOFF_BASE_MS.saturating_mul(1i64 << attempts.saturating_sub(1).min(20));
    let base = exp.min(BACKOFF_CAP_MS);
    base + (base as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64
}

/// The target as configured now: retries read the configuration current at the time.
fn target(app: &App) -> CallbackTarget {
    CallbackTarget {
        url: app.config.dataphin_callback_url.clone(),
        access_token: app.config.dataphin_access_token.expose().to_string(),
        aes_key: app.config.dataphin_aes_key.expose().to_string(),
    }
}

/// How long one sender holds a ticket's delivery: well beyond the Dataphin client's total timeout,
/// so a live sender never loses it, and short enough that a crashed one does not hold it for long.
const LEASE_MS: i64 = 30_000;

/// How many versions one sender delivers back to back before leaving the rest to the dispatcher.
const MAX_ROUNDS: usize = 64;

/// What one call to [`deliver`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Dataphin acknowledged the latest version.
    Acknowledged,
    /// Nothing was due.
    NothingDue,
    /// Another sender is delivering this ticket right now; it also sends what became due since.
    InProgress,
    /// Dataphin did not acknowledge; the result stays due (or failed, after the retry window).
    Failed,
}

/// Delivers the result of a ticket as the write that made it ready left it (its stream record's
/// image): the claim is one conditional write on that revision, with no read first; if someone
/// wrote since, the fresh read decides. Only a ready result is sent (no failed attempt waiting
/// out its backoff). Fails only when DynamoDB does, so the stream retries; a Dataphin failure is
/// recorded and retried on the schedule's backoff.
pub async fn deliver_written(app: &App, mut ticket: Ticket, now: i64) -> AppResult<()> {
    // A few rounds: each conflict means someone wrote the ticket since; the fresh read decides.
    for _ in 0..3 {
        if !claim(&mut ticket, now) {
            return Ok(());
        }
        let summary = crate::views::list_row(&ticket);
        let due = tickets::next_due(app, &ticket);
        match app.store.save_ticket(&mut ticket, &summary, due).await {
            Ok(()) => {
                send_claimed(app, ticket, now).await;
                return Ok(());
            }
            Err(store::StoreError::Conflict) => ticket = tickets::load(app, &ticket.id).await?,
            Err(e) => return Err(e.into()),
        }
    }
    // Still contended: a writer that keeps winning writes a ready ticket again (a new record).
    Ok(())
}

/// Takes the ticket's delivery for this caller if its result can be sent now (due, unheld, no
/// backoff pending); the caller's write of the ticket then holds the claim.
pub fn claim(t: &mut Ticket, now: i64) -> bool {
    let ready = store::tickets::delivery_ready(t);
    if ready {
        t.delivery.lease_until = Some(now + LEASE_MS);
    }
    ready
}

/// Sends the result of a ticket whose delivery this caller has just claimed (and written),
/// carrying it instead of reading it again: one send, then one write on the claimed revision
/// (re-read only if someone wrote meanwhile). Whatever became due since is sent by [`deliver`].
/// Never fails the caller: the result stays due until Dataphin acknowledges it.
pub async fn send_claimed(app: &App, mut ticket: Ticket, now: i64) {
    if !ticket.delivery.is_due() || ticket.delivery.lease_until.is_none() {
        return deliver_now(app, &ticket.id).await;
    }
    let retry_window = app.config.delivery_retry_hours * 3_600_000;
    let document = ticket.dataphin_document(app.config.integration_method);
    let sent_version = ticket.version;
    let outcome = app
        .dataphin
        .deliver(&target(app), &ticket.tenant_id, &document)
        .await;
    let jitter: f64 = rand::thread_rng().gen();
    let error = outcome.as_ref().err().map(|e| e.to_string());
    record_attempt(
        &mut ticket,
        sent_version,
        error.clone(),
        now,
        retry_window,
        jitter,
    );
    let id = ticket.id.clone();
    let recorded = match tickets::save(app, &mut ticket).await {
        Ok(()) => Ok(ticket),
        Err(_) => {
            // Someone wrote the ticket meanwhile (or the write failed): fold again on a fresh read.
            tickets::update(app, &id, |t| {
                Ok(record_attempt(
                    t,
                    sent_version,
                    error.clone(),
                    now,
                    retry_window,
                    jitter,
                ))
            })
            .await
        }
    };
    match recorded {
        Ok(t) => {
            crate::metrics::ticket::delivery_attempted(&t, error.is_none(), now);
            if error.is_none() && t.delivery.is_due() {
                deliver_now(app, &id).await;
            }
        }
        Err(e) => {
            tracing::warn!(ticket_id = %id, error = %e, "delivery not recorded; the dispatcher retries");
        }
    }
}

/// Tries to deliver the ticket's due result now; failures are recorded and left to the dispatcher.
/// Never fails the caller: the result stays due until Dataphin acknowledges it.
pub async fn deliver_now(app: &App, id: &str) {
    if let Err(e) = deliver(app, id, now_ms()).await {
        tracing::warn!(ticket_id = id, error = %e, "delivery not completed; the dispatcher retries");
    }
}

/// Delivers the latest document while a version is due, one sender per ticket at a time (a lease
/// on the ticket): versions reach Dataphin in order and each at most once per attempt. `now` is the
/// time of the caller (the dispatcher's run time), used for backoff and the retry window.
pub async fn deliver(app: &App, id: &str, now: i64) -> AppResult<Attempt> {
    let retry_window = app.config.delivery_retry_hours * 3_600_000;
    let mut result = Attempt::NothingDue;
    for _ in 0..MAX_ROUNDS {
        let mut claimed = false;
        let ticket = tickets::update(app, id, |t| {
            claimed =
                t.delivery.is_due() && t.delivery.lease_until.is_none_or(|until| until <= now);
            if claimed {
                t.delivery.lease_until = Some(now + LEASE_MS);
            }
            Ok(claimed)
        })
        .await?;
        if !claimed {
            if ticket.delivery.is_due() {
                result = Attempt::InProgress;
            }
            return Ok(result);
        }
        let document = ticket.dataphin_document(app.config.integration_method);
        let sent_version = ticket.version;
        let outcome = app
            .dataphin
            .deliver(&target(app), &ticket.tenant_id, &document)
            .await;
        let jitter: f64 = rand::thread_rng().gen();
        let error = outcome.as_ref().err().map(|e| e.to_string());
        let recorded = tickets::update(app, id, |t| {
            Ok(record_attempt(
                t,
                sent_version,
                error.clone(),
                now,
                retry_window,
                jitter,
            ))
        })
        .await?;
        crate::metrics::ticket::delivery_attempted(&recorded, error.is_none(), now);
        if error.is_some() {
            return Ok(Attempt::Failed);
        }
        // Acknowledged; a version that became due meanwhile is sent in the next round.
        result = Attempt::Acknowledged;
    }
    Ok(result)
}

/// Folds one delivery attempt into the ticket's delivery state.
fn record_attempt(
    t: &mut Ticket,
    sent_version: u64,
    error: Option<String>,
    now: i64,
    retry_window: i64,
    jitter: f64,
) -> bool {
    let d = &mut t.delivery;
    d.lease_until = None;
    d.last_attempt_at = Some(now);
    match error {
        None => {
            if sent_version > d.delivered_version {
                d.delivered_version = sent_version;
            }
            d.last_error = None;
            d.attempts = 0;
            if d.is_due() {
                // A newer version became due while this one travelled: send it right away.
                d.next_attempt_at = Some(now);
                d.due_since = Some(now);
            } else {
                d.next_attempt_at = None;
                d.due_since = None;
            }
            t.record(
                now,
                "delivery",
                format!("Dataphin acknowledged version {sent_version}"),
                Value::Null,
            );
        }
        Some(err) => {
            d.attempts += 1;
            d.last_error = Some(err.clone());
            let since = d.due_since.unwrap_or(now);
            if now - since >= retry_window {
                d.failed = true;
                d.next_attempt_at = None;
                t.record(
                    now,
                    "delivery",
                    format!(
                        "delivery failed for good after {} attempts: {err}",
                        t.delivery.attempts
                    ),
                    Value::Null,
                );
            } else {
                d.next_attempt_at = Some(now + backoff_ms(d.attempts, jitter));
                t.record(
                    now,
                    "delivery",
                    format!("delivery attempt {} failed: {err}", t.delivery.attempts),
                    Value::Null,
                );
            }
        }
    }
    true
}

/// Ops re-drive: makes the latest version due again (also after a failed delivery) and sends it now.
pub async fn redeliver(app: &App, id: &str) -> AppResult<Value> {
    let now = now_ms();
    tickets::update(app, id, |t| {
        let v = t.version;
        t.delivery.failed = false;
        t.delivery.due_version = v;
        if t.delivery.delivered_version >= v {
            // Dataphin deduplicates by version: resending the same version is harmless.
            t.delivery.delivered_version = v - 1;
        }
        t.delivery.attempts = 0;
        t.delivery.due_since = Some(now);
        t.delivery.next_attempt_at = Some(now);
        t.record(
            now,
            "delivery",
            format!("re-delivery of version {v} requested"),
            Value::Null,
        );
        Ok(true)
    })
    .await?;
    let attempt = deliver(app, id, now).await?;
    let t = tickets::load(app, id).await?;
    if attempt == Attempt::Failed {
        return Err(AppError::BackendUnavailable(
            t.delivery
                .last_error
                .unwrap_or_else(|| "Dataphin did not acknowledge".into()),
        ));
    }
    // InProgress: a sender already in flight delivers the version made due here as well.
    Ok(
        serde_json::json!({"success": true, "id": t.id, "delivered_version": t.delivery.delivered_version,
                          "in_progress": attempt == Attempt::InProgress}),
    )
}

#[cfg(test)]
mod tests {
    use super::{backoff_ms, record_attempt};
    use models::ticket::Ticket;

    /// A ticket with version 3 due since t=1000 and a sender holding the lease.
    fn due_ticket() -> Ticket {
        let mut t: Ticket = serde_json::from_value(serde_json::json!({
            "id": "t1", "tenant_id": "300073302", "apply_id": "a1", "title": "t", "submission_type": "AUTH",
            "reason_for_request": "r", "applicant": {"user_id": "u", "user_name": "U"}, "status": "APPROVED",
            "created_at": 1000, "expire_at": 9_000_000_000i64, "version": 3, "revision": 1, "nodes": [],
            "last_event_at": 1000
        }))
        .unwrap();
        t.mark_due(3);
        t.delivery.lease_until = Some(31_000);
        t
    }

    #[test]
    fn an_acknowledged_attempt_clears_error_backoff_and_lease() {
        let mut t = due_ticket();
        record_attempt(&mut t, 3, Some("503".into()), 2_000, 10_000_000, 0.0);
        assert_eq!(t.delivery.attempts, 1);
        assert_eq!(t.delivery.next_attempt_at, Some(12_000));
        assert_eq!(t.delivery.lease_until, None);
        t.delivery.lease_until = Some(40_000);
        record_attempt(&mut t, 3, None, 13_000, 10_000_000, 0.0);
        assert!(!t.delivery.is_due());
        assert_eq!(t.delivery.delivered_version, 3);
        assert_eq!(
            (
                t.delivery.attempts,
                t.delivery.last_error.clone(),
                t.delivery.lease_until
            ),
            (0, None, None)
        );
    }

    #[test]
    fn a_version_that_became_due_in_flight_stays_due() {
        let mut t = due_ticket();
        t.version = 4;
        t.mark_due(4);
        record_attempt(&mut t, 3, None, 2_000, 10_000_000, 0.0);
        assert_eq!(t.delivery.delivered_version, 3);
        assert!(t.delivery.is_due());
        assert_eq!(t.delivery.next_attempt_at, Some(2_000));
    }

    #[test]
    fn failures_past_the_retry_window_give_up_visibly() {
        let mut t = due_ticket();
        record_attempt(
            &mut t,
            3,
            Some("timeout".into()),
            1_000 + 5_000,
            10_000,
            0.0,
        );
        assert!(t.delivery.is_due() && !t.delivery.failed);
        record_attempt(
            &mut t,
            3,
            Some("timeout".into()),
            1_000 + 10_000,
            10_000,
            0.0,
        );
        assert!(t.delivery.failed);
        assert!(!t.delivery.is_due());
        assert_eq!(t.delivery.next_attempt_at, None);
        assert_eq!(t.delivery.attempts, 2);
    }

    #[test]
    fn backoff_grows_exponentially_is_capped_and_jittered() {
        assert_eq!(backoff_ms(1, 0.0), 10_000);
        assert_eq!(backoff_ms(2, 0.0), 20_000);
        assert_eq!(backoff_ms(5, 0.0), 160_000);
        assert_eq!(backoff_ms(30, 0.0), 3_600_000);
        assert_eq!(backoff_ms(1, 1.0), 12_000);
        // attempts over 24 h: the window is covered by a bounded number of retries
        let mut total = 0;
        let mut n = 0;
        while total < 24 * 3_600_000 {
            n += 1;
            total += backoff_ms(n, 0.0);
        }
        assert!(n < 40, "{n} attempts in 24 h");
    }
}
