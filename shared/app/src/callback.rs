//! Decisions coming back from the backend: DingTalk event subscription and the BPM webhook.
//! Each event is checked (signature first), normalised into an [`ApprovalEvent`], folded into its
//! ticket, and the resulting change is reported to Dataphin.

use std::collections::HashMap;

use crypto::MessageCrypto;
use models::ticket::{ApprovalEvent, Outcome, Ticket, Verdict};
use serde_json::{json, Value};

use crate::config::DingTalkSettings;
use crate::mapping::person_for_backend_id;
use crate::{delivery, tickets, App, AppError, AppResult};

/// DingTalk event bodies are small; anything bigger is not DingTalk.
const MAX_EVENT_BODY: usize = 64 * 1024;

fn first<'a>(q: &'a HashMap<String, String>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| q.get(*k)).map(String::as_str)
}

fn dingtalk_crypto(s: &DingTalkSettings) -> AppResult<MessageCrypto> {
    MessageCrypto::new(
        s.callback_token.expose(),
        s.callback_aes_key.expose(),
        &s.owner_key,
    )
    .map_err(|e| AppError::Internal(format!("DingTalk callback key: {e}")))
}

/// `POST /callback/dingtalk`: verify, decrypt, record, and answer with the encrypted `success`.
/// The answer waits on one conditional write and no outbound call (DingTalk allows 1.5 s and
/// re-sends what is answered late); the tickets table's stream carries the record to
/// [`apply_recorded`], which folds it and whose ticket write hands the result to the delivery.
pub async fn dingtalk(app: &App, query: &HashMap<String, String>, body: &[u8]) -> AppResult<Value> {
    let settings = match &app.backend {
        crate::backend::Backend::DingTalk { settings, .. } => settings,
        _ => return Err(AppError::BackendNotConfigured("DingTalk")),
    };
    let signature = first(query, &["signature", "msg_signature"])
        .ok_or_else(|| AppError::InvalidField("signature is missing".into()))?;
    let timestamp = first(query, &["timestamp", "timeStamp"])
        .ok_or_else(|| AppError::InvalidField("timestamp is missing".into()))?;
    let nonce = first(query, &["nonce"])
        .ok_or_else(|| AppError::InvalidField("nonce is missing".into()))?;
    if body.len() > MAX_EVENT_BODY {
        return Err(AppError::PayloadTooLarge(MAX_EVENT_BODY));
    }
    let envelope: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::InvalidJson(format!("body is not valid JSON: {e}")))?;
    let encrypt = envelope
        .get("encrypt")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::InvalidField("encrypt is missing".into()))?;
    let (crypto, plaintext) =
        crate::auth::checked(app, crate::secrets::Party::DingTalkEvents, || {
            let crypto = dingtalk_crypto(settings)?;
            let plaintext =
                crypto
                    .open(signature, timestamp, nonce, encrypt)
                    .map_err(|e| match e {
                        crypto::CryptoError::BadSignature => AppError::InvalidAccessToken,
                        other => AppError::InvalidField(format!("encrypt: {other}")),
                    })?;
            Ok((crypto, plaintext))
        })
        .await?;
    let event: Value = serde_json::from_slice(&plaintext)
        .map_err(|e| AppError::InvalidJson(format!("event is not valid JSON: {e}")))?;
    let event_type = event
        .get("EventType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    tracing::info!(event_type, "DingTalk event");
    if let "bpms_task_change" | "bpms_instance_change" = event_type {
        let instance = text(&event, "processInstanceId")
            .ok_or_else(|| AppError::InvalidField("processInstanceId is missing".into()))?;
        let key = dingtalk_event_id(event_type, &instance, &event);
        record(app, &instance, SOURCE_DINGTALK, &key, &event).await?;
    }
    let sealed = crypto.seal_now(b"success");
    Ok(
        json!({"msg_signature": sealed.signature, "timeStamp": sealed.timestamp, "nonce": sealed.nonce, "encrypt": sealed.encrypt}),
    )
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn millis(v: &Value, keys: &[&str]) -> i64 {
    keys.iter()
        .find_map(|k| text(v, k).and_then(|t| t.parse::<i64>().ok()))
        .unwrap_or_else(crate::http::now_ms)
}

/// The id a DingTalk event is deduplicated by: its `eventId`, else what identifies it.
fn dingtalk_event_id(event_type: &str, instance: &str, e: &Value) -> String {
    text(e, "eventId").unwrap_or_else(|| {
        format!(
            "{event_type}/{instance}/{}/{}/{}/{}",
            text(e, "taskId").unwrap_or_default(),
            text(e, "type").unwrap_or_default(),
            text(e, "result").unwrap_or_default(),
            text(e, "staffId").unwrap_or_default()
        )
    })
}

const SOURCE_DINGTALK: &str = "dingtalk";
const SOURCE_WEBHOOK: &str = "webhook";

/// Records an event before it is answered (the answer path's one write). A re-sent copy whose
/// first is still recorded writes nothing and starts no work.
async fn record(app: &App, instance: &str, source: &str, key: &str, e: &Value) -> AppResult<()> {
    let recorded = app
        .store
        .record_event(
            instance,
            source,
            key,
            &e.to_string(),
            crate::http::now_ms() / 1000,
        )
        .await?;
    tracing::info!(
        instance_id = %instance,
        source,
        again = recorded == store::Recorded::Again,
        "event recorded"
    );
    Ok(())
}

/// Applies one recorded event (its record's stream INSERT) if its instance is linked. If not, the
/// event waits: the link's own write (a create's reply arriving after DingTalk's pushes) starts
/// [`apply_waiting`], which applies it then. Either this or that sees the other's write, so the
/// event is never answered and forgotten. The record stays until its TTL: it is the window in
/// which a re-sent copy is recognised without any work.
pub async fn apply_recorded(
    app: &App,
    instance: &str,
    recorded: &store::RecordedEvent,
) -> AppResult<()> {
    match app.store.ticket_for_instance(instance).await? {
        Some(ticket_id) => apply_one(app, &ticket_id, instance, recorded).await,
        None => {
            tracing::info!(instance_id = %instance, "event before its instance was linked: it waits");
            Ok(())
        }
    }
}

/// Applies the events recorded for `instance` that its ticket has not seen. Started by the
/// instance link's stream record (`ticket_id` from its image) and by reconciliation (the safety
/// net when that work ran out of retries).
pub async fn apply_waiting(app: &App, instance: &str, ticket_id: Option<&str>) -> AppResult<()> {
    let recorded = app.store.recorded_events(instance).await?;
    if recorded.is_empty() {
        return Ok(());
    }
    let ticket_id = match ticket_id {
        Some(id) => id.to_string(),
        None => match app.store.ticket_for_instance(instance).await? {
            Some(id) => id,
            None => return Ok(()),
        },
    };
    let seen = tickets::load(app, &ticket_id).await?.seen_events;
    for r in recorded {
        if !seen.contains(&seen_id(&r)) {
            apply_one(app, &ticket_id, instance, &r).await?;
        }
    }
    Ok(())
}

/// The id under which a ticket remembers a recorded event it folded.
fn seen_id(r: &store::RecordedEvent) -> String {
    match r.source.as_str() {
        SOURCE_WEBHOOK => webhook_seen_id(r.event_key()),
        _ => r.event_key().to_string(),
    }
}

/// A webhook event's id on the ticket (prefixed: BPM ids and DingTalk ids share one list).
fn webhook_seen_id(event_id: &str) -> String {
    format!("webhook/{event_id}")
}

/// Folds one recorded event into its ticket. A failure that a retry can heal (DynamoDB, DingTalk
/// unavailable) fails the caller, so the stream retries it; an event that can never apply is
/// logged and its record removed.
async fn apply_one(
    app: &App,
    ticket_id: &str,
    instance: &str,
    recorded: &store::RecordedEvent,
) -> AppResult<()> {
    let result = match serde_json::from_str::<Value>(&recorded.body) {
        Err(err) => Err(AppError::InvalidJson(format!("recorded event: {err}"))),
        Ok(e) => match recorded.source.as_str() {
            SOURCE_DINGTALK => match text(&e, "EventType") {
                Some(event_type) => apply_dingtalk(app, ticket_id, instance, &event_type, &e).await,
                None => Err(AppError::InvalidField(
                    "recorded event without EventType".into(),
                )),
            },
            SOURCE_WEBHOOK => apply_webhook(app, ticket_id, &e, crate::http::now_ms()).await,
            other => Err(AppError::InvalidField(format!(
                "recorded event source {other}"
            ))),
        },
    };
    match result {
        Ok(()) => Ok(()),
        Err(
            err
            @ (AppError::InvalidField(_) | AppError::InvalidJson(_) | AppError::UnmappedUser(_)),
        ) => {
            tracing::warn!(instance_id = %instance, error = %err, "recorded event cannot apply: dropped");
            app.store
                .drop_recorded_event(instance, &recorded.key)
                .await?;
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Folds one DingTalk event into its (linked) ticket.
async fn apply_dingtalk(
    app: &App,
    ticket_id: &str,
    instance: &str,
    event_type: &str,
    e: &Value,
) -> AppResult<()> {
    let ticket_id = ticket_id.to_string();
    let instance = instance.to_string();
    let kind = text(e, "type").unwrap_or_default();
    let result = text(e, "result").unwrap_or_default();
    let staff = text(e, "staffId").unwrap_or_default();
    let remark = text(e, "remark");
    let at = millis(e, &["finishTime", "createTime", "EventTime"]);
    let event_id = dingtalk_event_id(event_type, &instance, e);
    let ticket = tickets::load(app, &ticket_id).await?;
    if ticket.seen_events.contains(&event_id) || ticket.status.is_final() {
        // A re-sent push, or one after the end: it changes nothing, and spends no DingTalk read.
        return Ok(());
    }
    let event = match (event_type, kind.as_str(), result.as_str()) {
        ("bpms_task_change", "comment", _) => Some(ApprovalEvent::Commented {
            backend_user_id: staff,
            remark,
            at,
        }),
        ("bpms_task_change", _, "redirect") => {
            // A transfer or a send-back to an earlier node: the push does not say which, and
            // names neither the new approver nor the node; the instance does (one read).
            let detail = read_instance(app, &instance).await?;
            if let Some(back) = crate::backend::was_sent_back(&detail, &staff) {
                let note = format!(
                    "{} sent the ticket back to an earlier node: {}",
                    ticket.name_of(&staff),
                    back.unwrap_or_default()
                );
                let note = Some(note.trim_end_matches(": ").to_string());
                return fold_nodes_read(app, &ticket, &event_id, &detail, note, at).await;
            }
            let target = redirect_target(&detail, &ticket, text(e, "taskId").as_deref(), &staff);
            let to = match target {
                Some(user) => Some(person_for_backend_id(app, &ticket.tenant_id, &user).await?),
                None => None,
            };
            Some(ApprovalEvent::TaskHandedOver {
                node_id: None,
                backend_user_id: staff,
                to,
                delegated: false,
                remark,
                at,
            })
        }
        ("bpms_task_change", "finish", "agree") => Some(ApprovalEvent::TaskDecided {
            node_id: None,
            backend_user_id: staff,
            verdict: Verdict::Agree,
            remark,
            at,
        }),
        ("bpms_task_change", "finish", "refuse") => Some(ApprovalEvent::TaskDecided {
            node_id: None,
            backend_user_id: staff,
            verdict: Verdict::Refuse,
            remark,
            at,
        }),
        ("bpms_task_change", "start", _) if !fits_the_plan(&ticket, &staff) => {
            // A task for someone the open node does not expect: approvers were added, or the
            // instance went back to an earlier node. The instance shows where each node stands.
            let detail = read_instance(app, &instance).await?;
            return fold_nodes_read(app, &ticket, &event_id, &detail, None, at).await;
        }
        ("bpms_task_change", "start", _) => {
            let person = person_for_backend_id(app, &ticket.tenant_id, &staff).await?;
            Some(ApprovalEvent::TaskStarted {
                backend_user_id: staff,
                person: Some(person),
                at,
            })
        }
        ("bpms_instance_change", "finish", "agree") => Some(ApprovalEvent::InstanceFinished {
            verdict: Verdict::Agree,
            remark,
            at,
        }),
        ("bpms_instance_change", "finish", "refuse") => Some(ApprovalEvent::InstanceFinished {
            verdict: Verdict::Refuse,
            remark,
            at,
        }),
        ("bpms_instance_change", "terminate" | "delete", _) => {
            Some(ApprovalEvent::InstanceTerminated { remark, at })
        }
        _ => None,
    };
    let Some(event) = event else {
        return Ok(());
    };
    fold(app, &ticket_id, Some(&event_id), &[event]).await
}

/// Whether a task start for `user` is what the ticket expects: a pending approver of an open
/// node, or the new approver of a node handed over (a transfer announces its target this way).
fn fits_the_plan(ticket: &Ticket, user: &str) -> bool {
    if ticket.status.is_final() {
        return true;
    }
    let Some(node) = ticket.nodes.iter().find(|n| n.is_open()) else {
        return false;
    };
    matches!(
        node.status,
        models::NodeStatus::Transferred | models::NodeStatus::Delegated
    ) || ticket.nodes.iter().filter(|n| n.is_open()).any(|n| {
        n.approvers.iter().any(|a| {
            a.person.backend_user_id == user && a.state == models::ticket::ApproverState::Pending
        })
    })
}

/// Reads the instance, for an event that needs it. A failure fails the event's application,
/// so the stream retries it (and reconciliation reads the instance if those retries run out).
async fn read_instance(app: &App, instance: &str) -> AppResult<dingtalk::InstanceDetail> {
    let crate::backend::Backend::DingTalk { client, .. } = &app.backend else {
        return Err(AppError::Internal(
            "a DingTalk event needs the DingTalk backend".into(),
        ));
    };
    crate::metrics::dingtalk_call("get").emit();
    client.get_instance(instance).await.map_err(|e| {
        tracing::warn!(instance_id = instance, error = %e, "instance read failed");
        AppError::BackendUnavailable(e.to_string())
    })
}

/// Folds the nodes as the instance shows them (approvers added, a send-back), with a timeline
/// `note`: for a push the ticket's plan cannot explain.
async fn fold_nodes_read(
    app: &App,
    ticket: &Ticket,
    event_id: &str,
    detail: &dingtalk::InstanceDetail,
    note: Option<String>,
    at: i64,
) -> AppResult<()> {
    let mut events = vec![ApprovalEvent::NodesRead {
        nodes: crate::backend::nodes_from_instance(detail, crate::http::now_ms()),
        note,
        at,
    }];
    name_people(app, ticket, &mut events).await?;
    fold(app, &ticket.id, Some(event_id), &events).await
}

/// Names the approvers a read found as Dataphin users: those the ticket already holds by the
/// person it holds (no lookup), the others (added, or joined by a transfer) through the mappings.
pub async fn name_people(
    app: &App,
    ticket: &Ticket,
    events: &mut [ApprovalEvent],
) -> AppResult<()> {
    let held = |backend_user_id: &str| {
        ticket
            .nodes
            .iter()
            .flat_map(|n| &n.approvers)
            .map(|a| &a.person)
            .find(|p| p.backend_user_id == backend_user_id)
            .cloned()
    };
    let tenant = &ticket.tenant_id;
    for ev in events {
        match ev {
            ApprovalEvent::TaskStarted {
                backend_user_id,
                person,
                ..
            } => *person = Some(person_for_backend_id(app, tenant, backend_user_id).await?),
            ApprovalEvent::NodesRead { nodes, .. } => {
                for a in nodes.iter_mut().flat_map(|n| n.approvers.iter_mut()) {
                    a.person = Some(match held(&a.backend_user_id) {
                        Some(p) => p,
                        None => person_for_backend_id(app, tenant, &a.backend_user_id).await?,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Who received a redirected task. DingTalk's redirect event names only the approver handing over
/// (the new approver's task start is a separate event that may come before, after, or never), so
/// the instance is read: the open task in the same activity held by someone not yet on the node.
/// `None` when DingTalk cannot say; the new approver's task start then completes the handover.
fn redirect_target(
    detail: &dingtalk::InstanceDetail,
    ticket: &Ticket,
    task_id: Option<&str>,
    from: &str,
) -> Option<String> {
    let node = ticket
        .nodes
        .iter()
        .find(|n| n.is_open() && n.approvers.iter().any(|a| a.person.backend_user_id == from));
    let on_node = |user: &str| {
        node.is_some_and(|n| n.approvers.iter().any(|a| a.person.backend_user_id == user))
    };
    let activity = task_id
        .and_then(|id| {
            detail
                .tasks
                .iter()
                .find(|t| t.task_id.as_deref() == Some(id))
        })
        .and_then(|t| t.activity_id.clone());
    detail
        .open_tasks()
        .filter(|t| activity.is_none() || t.activity_id == activity)
        .filter_map(|t| t.user_id.as_deref())
        .filter(|u| *u != from && !on_node(u))
        .last()
        .map(str::to_string)
}

/// Folds events into a ticket (retrying against concurrent writers) and reports the change.
pub async fn fold(
    app: &App,
    ticket_id: &str,
    event_id: Option<&str>,
    events: &[ApprovalEvent],
) -> AppResult<()> {
    let method = app.config.integration_method;
    let now = crate::http::now_ms();
    let mut changed = false;
    let mut claimed = false;
    let ticket = tickets::update(app, ticket_id, |t| {
        changed = false;
        for (i, ev) in events.iter().enumerate() {
            let id = event_id.map(|e| {
                if i == 0 {
                    e.to_string()
                } else {
                    format!("{e}#{i}")
                }
            });
            let outcome = t.apply(id.as_deref(), ev, method);
            changed |= outcome == Outcome::Changed;
        }
        // A result the change made due is claimed in the same write and sent from here: no
        // second write to claim it, and no stream record starts a second sender.
        claimed = changed && delivery::claim(t, now);
        Ok(true)
    })
    .await?;
    if claimed {
        delivery::send_claimed(app, ticket, now).await;
    }
    Ok(())
}

/// `POST /callback/webhook`: HMAC and skew checked before the body is read; the event is checked,
/// recorded and answered, and applied after the answer as a DingTalk event is.
pub async fn webhook_event(
    app: &App,
    headers: &lambda_http::http::HeaderMap,
    body: &[u8],
    now: i64,
) -> AppResult<Value> {
    let Some(settings) = app.config.backend.webhook() else {
        return Err(AppError::BackendNotConfigured("webhook"));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    crate::auth::checked(app, crate::secrets::Party::Webhook, || {
        // Without the secret (not given to this function) anyone could sign: refuse.
        if settings.secret.is_absent() {
            return Err(AppError::InvalidAccessToken);
        }
        crypto::verify_webhook(
            settings.secret.expose().as_bytes(),
            header(crypto::TIMESTAMP_HEADER),
            header(crypto::SIGNATURE_HEADER),
            body,
            now,
            app.config.timestamp_skew_secs,
        )
        .map_err(|e| match e {
            crypto::CryptoError::StaleTimestamp | crypto::CryptoError::BadTimestamp => {
                AppError::StaleTimestamp
            }
            _ => AppError::InvalidAccessToken,
        })
    })
    .await?;
    let e: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::InvalidJson(format!("body is not valid JSON: {e}")))?;
    let event_id =
        text(&e, "event_id").ok_or_else(|| AppError::InvalidField("event_id is missing".into()))?;
    let instance = text(&e, "instance_id")
        .ok_or_else(|| AppError::InvalidField("instance_id is missing".into()))?;
    check_webhook_statuses(&e)?;
    record(app, &instance, SOURCE_WEBHOOK, &event_id, &e).await?;
    Ok(json!({"success": true}))
}

/// The webhook's status fields, checked before the event is kept or applied.
fn check_webhook_statuses(e: &Value) -> AppResult<()> {
    match text(e, "node_status").as_deref() {
        None | Some("PENDING" | "APPROVED" | "REJECTED") => {}
        Some(s @ ("DELEGATED" | "TRANSFERRED")) => {
            if text(e, "to_user").is_none() {
                return Err(AppError::InvalidField(format!(
                    "to_user is required for {s}"
                )));
            }
        }
        Some(other) => {
            return Err(AppError::InvalidField(format!(
            "node_status {other} is not one of PENDING, APPROVED, REJECTED, DELEGATED, TRANSFERRED"
        )))
        }
    }
    match text(e, "final_status").as_deref() {
        None | Some("APPROVED" | "REJECTED") => Ok(()),
        Some(other) => Err(AppError::InvalidField(format!(
            "final_status {other} is not APPROVED or REJECTED"
        ))),
    }
}

/// Folds one BPM webhook event into its (linked) ticket.
async fn apply_webhook(app: &App, ticket_id: &str, e: &Value, now: i64) -> AppResult<()> {
    let event_id =
        text(e, "event_id").ok_or_else(|| AppError::InvalidField("event_id is missing".into()))?;
    let ticket = tickets::load(app, ticket_id).await?;
    let at = e.get("occurred_at").and_then(Value::as_i64).unwrap_or(now);
    let node_id = text(e, "node_id");
    let operator = e.get("operator").cloned().unwrap_or(Value::Null);
    let operator_id = text(&operator, "backend_user_id").unwrap_or_default();
    let reason = text(&operator, "reason");
    let mut events = Vec::new();
    match text(e, "node_status").as_deref() {
        Some("APPROVED") => events.push(ApprovalEvent::TaskDecided {
            node_id: node_id.clone(),
            backend_user_id: operator_id,
            verdict: Verdict::Agree,
            remark: reason.clone(),
            at,
        }),
        Some("REJECTED") => events.push(ApprovalEvent::TaskDecided {
            node_id: node_id.clone(),
            backend_user_id: operator_id,
            verdict: Verdict::Refuse,
            remark: reason.clone(),
            at,
        }),
        Some(s @ ("DELEGATED" | "TRANSFERRED")) => {
            let to_id = text(e, "to_user")
                .ok_or_else(|| AppError::InvalidField(format!("to_user is required for {s}")))?;
            let to = person_for_backend_id(app, &ticket.tenant_id, &to_id).await?;
            events.push(ApprovalEvent::TaskHandedOver {
                node_id: node_id.clone(),
                backend_user_id: operator_id,
                to: Some(to),
                delegated: s == "DELEGATED",
                remark: reason.clone(),
                at,
            });
        }
        Some("PENDING") | None => {}
        Some(other) => {
            return Err(AppError::InvalidField(format!(
            "node_status {other} is not one of PENDING, APPROVED, REJECTED, DELEGATED, TRANSFERRED"
        )))
        }
    }
    match text(e, "final_status").as_deref() {
        Some("APPROVED") => events.push(ApprovalEvent::InstanceFinished {
            verdict: Verdict::Agree,
            remark: reason,
            at,
        }),
        Some("REJECTED") => events.push(ApprovalEvent::InstanceFinished {
            verdict: Verdict::Refuse,
            remark: reason,
            at,
        }),
        None => {}
        Some(other) => {
            return Err(AppError::InvalidField(format!(
                "final_status {other} is not APPROVED or REJECTED"
            )))
        }
    }
    fold(app, ticket_id, Some(&webhook_seen_id(&event_id)), &events).await
}
