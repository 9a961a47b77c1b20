//! Withdrawal: by the applicant from Dataphin, or by ops (optionally forced); and expiry.

use std::collections::HashMap;

use models::ticket::{BackendCancel, Ticket, WithdrawRequest};
use models::TicketStatus;
use serde_json::{json, Value};

use models::bounds::{check_id, check_len, MAX_WITHDRAW_TEXT_CHARS};

use crate::{delivery, tickets, App, AppError, AppResult};

/// Seed 003: reasons are at most 128 characters.
pub const MAX_REASON_CHARS: usize = models::bounds::MAX_WITHDRAW_TEXT_CHARS;
/// First retry of an owed backend cancellation (DingTalk refuses within 15 s of creation).
const CANCEL_RETRY_MS: i64 = 20_000;

fn check_reason(reason: &str) -> AppResult<()> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(AppError::InvalidField(format!(
            "reason is {} characters; at most {MAX_REASON_CHARS} are allowed",
            reason.chars().count()
        )));
    }
    Ok(())
}

fn field<'a>(body: &'a Value, key: &str) -> AppResult<&'a str> {
    match body.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(AppError::InvalidField(format!("{key} is required")))
        }
        Some(_) => Err(AppError::InvalidField(format!("{key} must be a string"))),
    }
}

/// `POST /dataphin/bpms/processinstance/terminate`.
pub async fn terminate(
    app: &App,
    query: &HashMap<String, String>,
    body: &[u8],
    now: i64,
) -> AppResult<Value> {
    crate::auth::dataphin(app, query, now).await?;
    let body = crate::http::parse_json(body)?;
    let tenant = field(&body, "tenantId")?;
    check_id("tenantId", tenant)?;
    let apply = field(&body, "applyId")?;
    check_id("applyId", apply)?;
    let operator = body
        .get("operatorUserId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    check_len("operatorUserId", &operator, MAX_WITHDRAW_TEXT_CHARS)?;
    let reason = body
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    check_reason(&reason)?;
    let id = tickets::ticket_id(tenant, apply);
    let t = withdraw(app, &id, &reason, &operator, Mode::Dataphin, now).await?;
    let mut reply =
        json!({"success": true, "processInstanceId": t.id, "status": t.status.dataphin_status()});
    if let Some(r) = t.withdraw_request.as_ref().filter(|_| !t.status.is_final()) {
        // DingTalk has not confirmed yet: the status stays PENDING until it does, and Dataphin
        // hears WITHDRAWN by callback then.
        reply["withdrawalPending"] = json!(true);
        reply["message"] = json!(format!(
            "DingTalk refuses to terminate an instance within 15 s of its creation; the withdrawal is repeated at {} and reported by callback",
            r.next_attempt_at
        ));
    }
    Ok(reply)
}

/// `POST /approvals/{id}/withdraw` body `{"reason", "operator", "force"}`.
pub async fn ops_withdraw(app: &App, id: &str, body: &[u8], now: i64) -> AppResult<Value> {
    check_id("id", id)?;
    let body = if body.is_empty() {
        json!({})
    } else {
        crate::http::parse_json(body)?
    };
    let reason = body
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    check_reason(&reason)?;
    let operator = body
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or("ops")
        .to_string();
    check_len("operator", &operator, MAX_WITHDRAW_TEXT_CHARS)?;
    let force = match body.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(AppError::InvalidField("force must be a boolean".into())),
    };
    let mode = if force { Mode::Forced } else { Mode::Ops };
    let t = withdraw(app, id, &reason, &operator, mode, now).await?;
    Ok(
        json!({"id": t.id, "status": t.status.list_status(), "canonical_status": t.status.as_str(),
              "backend_cancelled": t.backend_cancel.as_ref().is_none_or(|c| c.done)}),
    )
}

/// Who asks for a withdrawal, which decides what a backend refusal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Dataphin's terminate: refused within DingTalk's grace, it is repeated after it (the ticket
    /// stays PENDING meanwhile, and the reply says so).
    Dataphin,
    /// The ops API without `force`: the backend must confirm now.
    Ops,
    /// The ops API with `force`: withdrawn here at once, the cancellation owed.
    Forced,
    /// The dispatcher repeating a withdrawal DingTalk could not take yet.
    Repeat,
}

/// Withdraws a PENDING ticket. Without `force` the backend must confirm the cancellation first;
/// with `force` the ticket is withdrawn at once and the cancellation is owed (the dispatcher retries).
pub async fn withdraw(
    app: &App,
    id: &str,
    reason: &str,
    operator: &str,
    mode: Mode,
    now: i64,
) -> AppResult<Ticket> {
    let force = mode == Mode::Forced;
    let ticket = tickets::load(app, id).await?;
    if ticket.status.is_final() {
        return Err(AppError::Conflict(format!(
            "ticket {id} is already {}",
            ticket.status.as_str()
        )));
    }
    let remark = if reason.is_empty() {
        format!("withdrawn by {operator}")
    } else {
        reason.to_string()
    };
    let cancelled = if ticket.instance_id.is_some() {
        match app.backend.terminate(&ticket, &remark).await {
            Ok(()) => Ok(()),
            Err(e) if e.finished.is_some() => {
                // The instance ended before the withdrawal reached it: the ticket takes the
                // real outcome and the withdrawal is refused with it.
                let events = e.finished.unwrap_or_default();
                crate::callback::fold(app, id, None, &events).await?;
                let t = tickets::load(app, id).await?;
                return Err(AppError::Conflict(format!(
                    "ticket {id} is already {} in the approval system",
                    t.status.as_str()
                )));
            }
            Err(e) if force => Err(e.message),
            Err(e)
                if matches!(mode, Mode::Dataphin | Mode::Repeat)
                    && (e.not_before.is_some() || mode == Mode::Repeat) =>
            {
                return defer(app, id, &remark, operator, &e, now).await;
            }
            Err(e) => {
                tickets::update(app, id, |t| {
                    t.record(
                        now,
                        "withdraw",
                        format!(
                            "withdrawal by {operator} refused by the backend: {}",
                            e.message
                        ),
                        Value::Null,
                    );
                    Ok(true)
                })
                .await?;
                return Err(AppError::BackendUnavailable(format!(
                    "the approval system did not cancel the instance: {}",
                    e.message
                )));
            }
        }
    } else {
        Ok(())
    };
    let mut conflict = None;
    let t = tickets::update(app, id, |t| {
        if t.status.is_final() {
            conflict = Some(t.status);
            return Ok(false);
        }
        let kind = if force {
            "force-withdrawn"
        } else {
            "withdrawn"
        };
        t.record(
            now,
            "withdraw",
            format!("{kind} by {operator}: {remark}"),
            Value::Null,
        );
        if let Err(err) = &cancelled {
            owe_cancellation(t, &remark, Some(err.clone()), now + CANCEL_RETRY_MS);
        }
        t.withdraw_request = None;
        t.finish(
            TicketStatus::Withdrawn,
            Some(remark.clone()),
            now,
            app.config.integration_method,
        );
        Ok(true)
    })
    .await?;
    if let Some(status) = conflict {
        return Err(AppError::Conflict(format!(
            "ticket {id} is already {}",
            status.as_str()
        )));
    }
    delivery::deliver_now(app, id).await;
    Ok(t)
}

/// Keeps a withdrawal DingTalk could not take yet on the PENDING ticket, for the dispatcher to
/// repeat: after the grace, then with backoff while DingTalk still refuses.
async fn defer(
    app: &App,
    id: &str,
    remark: &str,
    operator: &str,
    e: &crate::backend::BackendError,
    now: i64,
) -> AppResult<Ticket> {
    let mut conflict = None;
    let t = tickets::update(app, id, |t| {
        if t.status.is_final() {
            conflict = Some(t.status);
            return Ok(false);
        }
        let attempts = t.withdraw_request.as_ref().map_or(0, |r| r.attempts) + 1;
        let retry = now + delivery::backoff_ms(attempts, 0.5).max(CANCEL_RETRY_MS);
        let next_attempt_at = e.not_before.map_or(retry, |at| at.max(now + 1_000));
        if t.withdraw_request.is_none() {
            t.record(
                now,
                "withdraw",
                format!(
                    "withdrawal by {operator} waits for DingTalk ({}); repeated by the dispatcher",
                    e.message
                ),
                Value::Null,
            );
        }
        t.withdraw_request = Some(WithdrawRequest {
            reason: remark.to_string(),
            operator: operator.to_string(),
            requested_at: t.withdraw_request.as_ref().map_or(now, |r| r.requested_at),
            attempts,
            last_error: Some(e.message.clone()),
            next_attempt_at,
        });
        Ok(true)
    })
    .await?;
    if let Some(status) = conflict {
        return Err(AppError::Conflict(format!(
            "ticket {id} is already {}",
            status.as_str()
        )));
    }
    tracing::info!(ticket_id = id, error = %e.message, "withdrawal deferred until DingTalk takes it");
    Ok(t)
}

/// The dispatcher's repeat of a withdrawal DingTalk could not take yet.
pub async fn repeat_requested(app: &App, id: &str, now: i64) -> AppResult<()> {
    let t = tickets::load(app, id).await?;
    let Some(r) = t.withdraw_request.clone() else {
        return Ok(());
    };
    if t.status.is_final() || r.next_attempt_at > now {
        return Ok(());
    }
    match withdraw(app, id, &r.reason, &r.operator, Mode::Repeat, now).await {
        // Conflict: the instance had ended; the ticket took DingTalk's real outcome.
        Ok(_) | Err(AppError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Ends a PENDING ticket that outlived `TICKET_TIMEOUT_HOURS`: backend instance cancelled (or owed),
/// status EXPIRED, Dataphin told why.
pub async fn expire(app: &App, id: &str, now: i64) -> AppResult<()> {
    let ticket = tickets::load(app, id).await?;
    if ticket.status.is_final() || ticket.expire_at > now {
        return Ok(());
    }
    let hours = app.config.ticket_timeout_hours;
    let reason = format!(
        "expired: no decision within {hours} hour{}",
        if hours == 1 { "" } else { "s" }
    );
    let cancelled = if ticket.instance_id.is_some() {
        app.backend
            .terminate(&ticket, &reason)
            .await
            .map_err(|e| e.message)
    } else {
        Ok(())
    };
    tickets::update(app, id, |t| {
        if t.status.is_final() {
            return Ok(false);
        }
        if let Err(err) = &cancelled {
            owe_cancellation(t, &reason, Some(err.clone()), now + CANCEL_RETRY_MS);
        }
        t.finish(
            TicketStatus::Expired,
            Some(reason.clone()),
            now,
            app.config.integration_method,
        );
        Ok(true)
    })
    .await?;
    delivery::deliver_now(app, id).await;
    Ok(())
}

/// Retries an owed backend cancellation (after a forced withdrawal or an expiry).
pub async fn retry_cancel(app: &App, id: &str, now: i64) -> AppResult<()> {
    let ticket = tickets::load(app, id).await?;
    let Some(cancel) = ticket
        .backend_cancel
        .clone()
        .filter(|c| !c.done && c.next_attempt_at <= now)
    else {
        return Ok(());
    };
    let result = app.backend.terminate(&ticket, &cancel.reason).await;
    tickets::update(app, id, |t| {
        let Some(c) = t.backend_cancel.as_mut() else {
            return Ok(false);
        };
        c.attempts += 1;
        match &result {
            Ok(()) => {
                c.done = true;
                c.last_error = None;
                t.record(now, "withdraw", "backend instance cancelled", Value::Null);
            }
            Err(e) => {
                c.last_error = Some(e.message.clone());
                c.next_attempt_at =
                    now + delivery::backoff_ms(c.attempts, 0.5).max(CANCEL_RETRY_MS);
            }
        }
        Ok(true)
    })
    .await?;
    Ok(())
}

/// Records that the backend instance must still be cancelled (the dispatcher retries it).
/// `failure` is the error of an attempt already made, if any.
pub(crate) fn owe_cancellation(
    t: &mut Ticket,
    reason: &str,
    failure: Option<String>,
    next_attempt_at: i64,
) {
    t.backend_cancel = Some(BackendCancel {
        reason: reason.to_string(),
        attempts: u32::from(failure.is_some()),
        last_error: failure,
        next_attempt_at,
        done: false,
    });
}
