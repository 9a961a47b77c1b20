//! Dataphin's connect and create (SPEC 4): auth, validation, idempotency, mapping, rules, dispatch.

use std::collections::HashMap;

use models::rules::{Decision, DecisionKind};
use models::submission::Submission;
use models::ticket::{
    ApproverState, Delivery, Dispatch, Node, NodeOrigin, Person, RuleProvenance, Ticket,
};
use models::{DispatchStatus, NodeStatus, Relation, TicketStatus};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::mapping::{self, DataphinUser};
use crate::tickets::{self, ticket_id};
use crate::{rules, views, App, AppError, AppResult};

/// How long a create that is calling the backend holds the right to do so; a crashed one frees it.
const DISPATCH_LEASE_MS: i64 = 30_000;

/// Test Connection: the token is right and the table answers.
pub async fn connect(app: &App, query: &HashMap<String, String>, now: i64) -> AppResult<Value> {
    crate::auth::dataphin(app, query, now).await?;
    app.store.ping().await?;
    Ok(json!({"success": true, "checkResult": "success"}))
}

/// The reply Dataphin gets for a ticket, identical for every repeat of the same create.
fn reply(t: &Ticket) -> Value {
    json!({"success": true, "processInstanceId": t.id, "status": t.status.dataphin_status()})
}

/// Hash of the submission's JSON with keys sorted: repeats that differ only in layout are the same.
pub fn body_hash(value: &Value) -> String {
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), canonical(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    hex::encode(Sha256::digest(canonical(value).to_string().as_bytes()))
}

/// Create: checks run before anything is stored or sent; the ticket id derives from
/// (tenantId, applyId) so the conditional create is the idempotency check.
pub async fn create(
    app: &App,
    query: &HashMap<String, String>,
    body: &[u8],
    now: i64,
) -> AppResult<Value> {
    crate::auth::dataphin(app, query, now).await?;
    let submission = Submission::parse(body)?;
    let id = ticket_id(&submission.tenant_id, &submission.apply_id);
    let span = tracing::info_span!("create", ticket_id = %id, apply_id = %submission.apply_id);
    async move {
        let hash = body_hash(&submission.to_value());
        // Rules first (cached per container), so that the one batch read can fetch the ticket
        // (the idempotency check) and every mapping the decision needs together.
        let (rules_doc, rules_version) = rules::current_cached(app).await?;
        let decision = rules_doc.evaluate(&submission.facts(), rules_version);
        let users = users_to_resolve(&submission, &decision);
        let user_ids: Vec<String> = users.iter().map(|u| u.user_id.clone()).collect();
        let reads = app
            .store
            .read_for_create(&id, &submission.tenant_id, &user_ids)
            .await?;
        if let Some(existing) = reads.ticket {
            return Box::pin(resume(
                app,
                existing.ticket,
                &existing.body_hash,
                &hash,
                now,
            ))
            .await;
        }
        let resolved =
            mapping::resolve_all_prefetched(app, &submission.tenant_id, &users, &reads.mappings)
                .await?;
        let dept = resolved.first().and_then(|r| r.dept_id.clone());
        let mut ticket = build_ticket(app, &id, &submission, &decision, resolved, now)?;
        let raw = String::from_utf8_lossy(body);
        let summary = views::list_row(&ticket);
        let due = tickets::next_due(app, &ticket);
        match app
            .store
            .create_ticket(&mut ticket, &summary, &raw, &hash, due)
            .await?
        {
            store::CreateOutcome::Exists => {
                let existing = app
                    .store
                    .get_ticket(&id, false)
                    .await?
                    .ok_or_else(|| AppError::Internal("ticket vanished".into()))?;
                return Box::pin(resume(
                    app,
                    existing.ticket,
                    &existing.body_hash,
                    &hash,
                    now,
                ))
                .await;
            }
            store::CreateOutcome::Created => crate::metrics::ticket::created(&ticket),
        }
        tracing::info!(
            status = ticket.status.as_str(),
            decision = decision.kind.as_str(),
            "ticket created"
        );
        if ticket.status.is_final() {
            // Decided at once: the create's write is the stream record that delivers the result.
            return Ok(reply(&ticket));
        }
        ticket = Box::pin(dispatch(app, ticket, dept, &submission, now, false)).await?;
        Ok(reply(&ticket))
    }
    .instrument(span)
    .await
}

/// A repeated create: the same body gets the first reply (retrying a failed dispatch first);
/// another body under the same applyId is a conflict.
async fn resume(
    app: &App,
    ticket: Ticket,
    stored_hash: &str,
    hash: &str,
    now: i64,
) -> AppResult<Value> {
    if stored_hash != hash {
        return Err(AppError::Conflict(format!(
            "applyId {} of tenant {} was submitted before with a different body",
            ticket.apply_id, ticket.tenant_id
        )));
    }
    let needs_dispatch = ticket.status == TicketStatus::Pending
        && ticket.instance_id.is_none()
        && ticket.dispatch_lease_until.is_none_or(|until| until < now);
    if !needs_dispatch {
        return Ok(reply(&ticket));
    }
    let stored = app
        .store
        .get_ticket(&ticket.id, true)
        .await?
        .ok_or_else(|| AppError::Internal("ticket vanished".into()))?;
    let submission = Submission::parse(stored.submission.unwrap_or_default().as_bytes())?;
    // Claim the lease so that concurrent repeats do not all call the backend.
    let mut claimed = false;
    let leased = tickets::update(app, &ticket.id, |t| {
        claimed = t.instance_id.is_none() && t.dispatch_lease_until.is_none_or(|until| until < now);
        if claimed {
            t.dispatch_lease_until = Some(now + DISPATCH_LEASE_MS);
        }
        Ok(claimed)
    })
    .await?;
    if !claimed {
        return Ok(reply(&ticket));
    }
    let dept = applicant_department(app, &leased, &submission).await?;
    let t = dispatch(app, leased, dept, &submission, now, true).await?;
    Ok(reply(&t))
}

/// Everyone a create must resolve, applicant first: the submission's approvers and the rule's
/// added ones, or only the applicant when the rules decide at once (no approver is asked).
fn users_to_resolve(s: &Submission, decision: &Decision) -> Vec<DataphinUser> {
    let mut users: Vec<DataphinUser> = s.users().into_iter().map(DataphinUser::from).collect();
    let rule_users: Vec<&String> = decision
        .add_nodes
        .iter()
        .flat_map(|n| n.users.iter())
        .collect();
    for u in &rule_users {
        users.push(DataphinUser {
            user_id: (*u).clone(),
            user_source_id: String::new(),
            user_name: String::new(),
        });
    }
    let auto = matches!(
        decision.kind,
        DecisionKind::AutoApprove | DecisionKind::AutoReject
    );
    // Auto-decided tickets go to no approver, so their approvers need no mapping; the applicant
    // still must resolve (SPEC 7), whichever rule decides.
    if auto {
        users.truncate(1);
    }
    users
}

/// The ticket of a new create, from the users [`users_to_resolve`] named, resolved in that order.
fn build_ticket(
    app: &App,
    id: &str,
    s: &Submission,
    decision: &Decision,
    resolved: Vec<mapping::Resolved>,
    now: i64,
) -> AppResult<Ticket> {
    let auto = matches!(
        decision.kind,
        DecisionKind::AutoApprove | DecisionKind::AutoReject
    );
    let mut people = resolved.into_iter();
    let applicant = people.next().expect("applicant resolved first");
    let mut nodes: Vec<Node> = Vec::new();
    if auto {
        nodes.push(rule_node(decision, now));
    } else {
        for (i, n) in s.approve_nodes.iter().enumerate() {
            let persons: Vec<Person> = n
                .users
                .iter()
                .map(|_| people.next().expect("approver resolved").person)
                .collect();
            let name = format!("Approval {}", i + 1);
            nodes.push(Node::new(
                i as u32 + 1,
                name,
                n.relation,
                NodeOrigin::Submission,
                persons,
            ));
        }
        for extra in &decision.add_nodes {
            let order = nodes.len() as u32 + 1;
            let persons: Vec<Person> = extra
                .users
                .iter()
                .map(|_| people.next().expect("rule approver resolved").person)
                .collect();
            let name = extra
                .name
                .clone()
                .unwrap_or_else(|| format!("Approval {order}"));
            nodes.push(Node::new(
                order,
                name,
                extra.relation,
                NodeOrigin::Rule,
                persons,
            ));
        }
    }
    let reason_for_request = request_reason(s);
    let mut ticket = Ticket {
        id: id.to_string(),
        tenant_id: s.tenant_id.clone(),
        apply_id: s.apply_id.clone(),
        title: s.title.clone(),
        submission_type: s.submission_type.clone(),
        reason_for_request,
        applicant: applicant.person,
        status: TicketStatus::Pending,
        reason: None,
        created_at: now,
        finished_at: None,
        expire_at: now + app.config.ticket_timeout_hours * 3_600_000,
        version: 1,
        revision: 0,
        history_archived: 0,
        stored_status: None,
        nodes,
        decision: Some(RuleProvenance {
            decision: decision.kind.as_str().to_string(),
            rule_id: decision.rule_id.clone(),
            rules_version: decision.rules_version,
            facts: decision.facts.clone(),
            reason: decision.reason.clone(),
        }),
        process_code: decision
            .process_code
            .clone()
            .or_else(|| app.backend.default_process_code()),
        backend: (!auto).then(|| app.backend.kind().as_str().to_string()),
        instance_id: None,
        dispatch: None,
        dispatch_lease_until: (!auto).then_some(now + DISPATCH_LEASE_MS),
        delivery: Delivery::default(),
        backend_cancel: None,
        last_event_at: now,
        last_reconciled_at: None,
        quiet_reads: 0,
        withdraw_request: None,
        seen_events: Vec::new(),
        history: Vec::new(),
    };
    ticket.record(
        now,
        "submitted",
        format!("submitted by {}", ticket.applicant.user_name),
        json!({"apply_id": s.apply_id}),
    );
    ticket.record(now, "rules", decision.reason.clone(), json!({"decision": decision.kind.as_str(), "rule_id": decision.rule_id, "rules_version": decision.rules_version}));
    if let Some(status) = decision.final_status() {
        ticket.finish(
            status,
            Some(decision.reason.clone()),
            now,
            app.config.integration_method,
        );
    }
    Ok(ticket)
}

/// The applicant's backend department, found the way create resolves them (a retry's lookup).
async fn applicant_department(
    app: &App,
    ticket: &Ticket,
    submission: &Submission,
) -> AppResult<Option<String>> {
    if ticket.applicant.backend_user_id.is_empty() {
        return Ok(None);
    }
    mapping::department(
        app,
        &ticket.tenant_id,
        &DataphinUser::from(&submission.applicant),
    )
    .await
}

/// Records a successful forward on the ticket.
fn record_forwarded(app: &App, t: &mut Ticket, instance_id: &str, now: i64) {
    let attempts = t.dispatch.as_ref().map_or(0, |d| d.attempts) + 1;
    t.dispatch = Some(Dispatch {
        status: DispatchStatus::Forwarded,
        error: None,
        attempts,
        at: now,
    });
    t.instance_id = Some(instance_id.to_string());
    t.dispatch_lease_until = None;
    t.last_event_at = now;
    if t.status.is_final() && t.backend_cancel.is_none() {
        // Withdrawn or expired while the backend was creating: that instance is owed a
        // cancellation, or approvers could still act on it.
        let reason = t.reason.clone().unwrap_or_else(|| "withdrawn".into());
        crate::withdraw::owe_cancellation(t, &reason, None, now);
    }
    t.record(
        now,
        "dispatch",
        format!(
            "forwarded to {} as {instance_id}",
            app.backend.kind().as_str()
        ),
        Value::Null,
    );
}

/// Forwards a stored ticket (as the caller last read or wrote it, with the applicant's
/// department) to the backend and records the outcome (dispatch status 0 or 1). The outcome is
/// written on the carried revision, together with the instance link (one `TransactWriteItems`);
/// only when someone wrote the ticket meanwhile is it read again.
///
/// `retaken`: the lease was taken over from an earlier attempt (a repeated create, the
/// dispatcher), which may have made the instance and died before recording it.
pub async fn dispatch(
    app: &App,
    ticket: Ticket,
    dept: Option<String>,
    submission: &Submission,
    now: i64,
    retaken: bool,
) -> AppResult<Ticket> {
    let id = ticket.id.clone();
    let form = submission.form();
    let content = submission.content.to_value();
    let result = app
        .backend
        .create(&ticket, dept.as_deref(), &form, &content, retaken)
        .await;
    match result {
        Ok(instance_id) => {
            let mut carried = ticket;
            let before = carried.status;
            record_forwarded(app, &mut carried, &instance_id, now);
            let summary = views::list_row(&carried);
            let due = tickets::next_due(app, &carried);
            // The outcome and the instance link in one transaction: a ticket that knows its
            // instance is always findable from it.
            let saved = app
                .store
                .save_ticket_linking(&mut carried, &summary, due, &instance_id)
                .await;
            let t = match saved {
                Ok(()) => {
                    crate::metrics::ticket::written(before, &carried);
                    carried
                }
                Err(store::StoreError::Conflict | store::StoreError::Throttled(_)) => {
                    // Changed meanwhile (a withdrawal, an early event): link first, then read
                    // and fold again.
                    app.store.link_instance(&instance_id, &id).await?;
                    tickets::update(app, &id, |t| {
                        record_forwarded(app, t, &instance_id, now);
                        Ok(true)
                    })
                    .await?
                }
                Err(e) => return Err(e.into()),
            };
            tracing::info!(instance_id = %instance_id, "forwarded to backend");
            // Events the backend pushed before this reply arrived were recorded: the link's
            // write is the stream record that applies them (`callback::apply_waiting`).
            Ok(t)
        }
        Err(e) => {
            tracing::warn!(error = %e, "backend refused or unreachable");
            tickets::update(app, &id, |t| {
                let attempts = t.dispatch.as_ref().map_or(0, |d| d.attempts) + 1;
                t.dispatch = Some(Dispatch {
                    status: DispatchStatus::Failed,
                    error: Some(e.message.clone()),
                    attempts,
                    at: now,
                });
                t.dispatch_lease_until = None;
                t.record(
                    now,
                    "dispatch",
                    format!("forwarding failed: {}", e.message),
                    Value::Null,
                );
                Ok(true)
            })
            .await?;
            Err(AppError::BackendUnavailable(e.message))
        }
    }
}

/// The longest request reason kept on the ticket, in characters.
const MAX_REASON_CHARS: usize = 1000;

/// The applicant's stated reason, wherever the scenario keeps it. Free text is the reason itself; it
/// is cut to a summary because the ticket repeats it (list row, start node, Dataphin's document) and
/// a long text would otherwise push the ticket past DynamoDB's item size.
fn request_reason(s: &Submission) -> String {
    let content = s.content.to_value();
    let reason = match &content {
        Value::String(text) => text.as_str(),
        _ => ["reason", "applyReason", "approvalReason", "description"]
            .iter()
            .find_map(|k| {
                content
                    .get(*k)
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_default(),
    };
    if reason.chars().count() <= MAX_REASON_CHARS {
        return reason.to_string();
    }
    let mut cut: String = reason.chars().take(MAX_REASON_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The one node of an auto-decided ticket: the rule is its operator, the reason names the rule
/// and the rules version.
fn rule_node(decision: &Decision, now: i64) -> Node {
    let rule = decision.rule_id.clone().unwrap_or_default();
    let operator = Person {
        user_id: format!("rule:{rule}"),
        user_name: format!("rule {rule} (rules v{})", decision.rules_version),
        backend_user_id: String::new(),
    };
    let mut node = Node::new(
        1,
        "Auto-approval rules".into(),
        Relation::Or,
        NodeOrigin::Rule,
        vec![operator],
    );
    let (node_status, approver_state) = match decision.kind {
        DecisionKind::AutoApprove => (NodeStatus::Approved, ApproverState::Approved),
        _ => (NodeStatus::Rejected, ApproverState::Rejected),
    };
    node.status = node_status;
    node.reason = Some(decision.reason.clone());
    node.decided_at = Some(now);
    if let Some(a) = node.approvers.first_mut() {
        a.state = approver_state;
        a.reason = Some(decision.reason.clone());
        a.acted_at = Some(now);
    }
    node
}

/// The dispatcher's retry of a ticket that never reached its backend (a create that crashed, or
/// whose backend call failed and was not repeated by Dataphin). Claims the dispatch lease first so
/// a concurrent repeated create does not call the backend too.
pub async fn redispatch(app: &App, id: &str, now: i64) -> AppResult<()> {
    let mut claimed = false;
    tickets::update(app, id, |t| {
        claimed = t.status == TicketStatus::Pending
            && t.instance_id.is_none()
            && t.dispatch_lease_until.is_none_or(|until| until <= now);
        if claimed {
            t.dispatch_lease_until = Some(now + DISPATCH_LEASE_MS);
        }
        Ok(claimed)
    })
    .await?;
    if !claimed {
        return Ok(());
    }
    let stored = app
        .store
        .get_ticket(id, true)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("ticket {id} not found")))?;
    let submission = Submission::parse(stored.submission.unwrap_or_default().as_bytes())?;
    let dept = applicant_department(app, &stored.ticket, &submission).await?;
    match dispatch(app, stored.ticket, dept, &submission, now, true).await {
        Ok(_) | Err(AppError::BackendUnavailable(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
