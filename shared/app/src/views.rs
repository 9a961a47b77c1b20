//! What the ops API shows of a ticket: seed 001's list row and seed 002's detail.

use models::ticket::{ApproverState, Ticket};
use serde_json::{json, Value};

/// Seed 001's `PermissionApprovalOpenapiDTO` fields, where they apply. Stored with the ticket so the
/// list indexes can answer without reading whole tickets.
pub fn list_row(t: &Ticket) -> Value {
    let current = t.current_node();
    json!({
        "id": t.id,
        "title": t.title,
        "apply_id": t.apply_id,
        "approval_type": t.submission_type,
        "approve_reason": t.reason_for_request,
        "proposer_id": t.applicant.user_id,
        "proposer_name": t.applicant.user_name,
        "start_time": t.created_at,
        "end_time": t.finished_at,
        "expire_time": t.expire_at,
        "status": t.status.list_status(),
        "reason": t.reason,
        "current_node_id": current.map(|n| n.node_id.clone()),
        "current_node_name": current.map(|n| n.name.clone()),
        "approval_dispatch_status": t.dispatch.as_ref().map(|d| d.status.code()),
        "approval_dispatch_error_msg": t.dispatch.as_ref().and_then(|d| d.error.clone()),
        "instance_id": t.instance_id,
        "workspace_id": t.tenant_id,
    })
}

/// Seed 002's detail: nodes, handlers, content, decision, delivery state and the whole history.
pub fn detail(t: &Ticket, content: Value, form: Value) -> Value {
    let mut row = list_row(t);
    let workflow_nodes: Vec<Value> = t
        .nodes
        .iter()
        .map(|n| {
            let last_operator = n.operators().into_iter().last();
            json!({
                "node_id": n.node_id,
                "node_name": n.name,
                "node_status": n.status.as_str(),
                "approver_relation": n.relation.as_str(),
                "operator_id": last_operator.map(|a| a.person.user_id.clone()),
                "operate_time": last_operator.and_then(|a| a.acted_at).or(n.decided_at),
                "operate_comment": last_operator.and_then(|a| a.reason.clone()).or_else(|| n.reason.clone()),
                "audit_user_id_list": n.approvers.iter().filter(|a| a.state != ApproverState::HandedOver)
                    .map(|a| a.person.user_id.clone()).collect::<Vec<_>>(),
                // A node still open when the ticket ended ends with it (CANCEL when withdrawn,
                // REJECT when rejected elsewhere or expired), never AUDITING.
                "workflow_ins_code": if t.status.is_final() && n.is_open() { t.status.workflow_ins_code() } else { n.status.workflow_ins_code() },
                "display": n.display(),
            })
        })
        .collect();
    let handlers: Vec<Value> = t
        .current_handlers()
        .into_iter()
        .map(|p| json!({"id": p.user_id, "nick_name": p.user_name, "backend_user_id": p.backend_user_id}))
        .collect();
    let d = &t.delivery;
    let obj = row.as_object_mut().expect("list row is an object");
    obj.insert("tenant_id".into(), json!(t.tenant_id));
    obj.insert(
        "workflow_ins_code".into(),
        json!(t.status.workflow_ins_code()),
    );
    obj.insert("canonical_status".into(), json!(t.status.as_str()));
    obj.insert("version".into(), json!(t.version));
    obj.insert("workflow_nodes".into(), json!(workflow_nodes));
    obj.insert("current_handlers".into(), json!(handlers));
    obj.insert("content".into(), content);
    obj.insert("form".into(), form);
    obj.insert("process_code".into(), json!(t.process_code));
    obj.insert("backend".into(), json!(t.backend));
    obj.insert("rule_decision".into(), json!(t.decision));
    obj.insert(
        "delivery".into(),
        json!({
            "state": if d.failed { "FAILED" } else if d.is_due() { "DUE" } else if d.delivered_version > 0 { "DELIVERED" } else { "NONE" },
            "delivered_version": d.delivered_version,
            "due_version": d.due_version,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "last_attempt_at": d.last_attempt_at,
            "next_attempt_at": if d.is_due() { d.next_attempt_at } else { None },
        }),
    );
    obj.insert("backend_cancel".into(), json!(t.backend_cancel));
    // A withdrawal DingTalk could not take yet (its 15 s grace), repeated by the dispatcher.
    obj.insert(
        "withdraw_request".into(),
        json!(t.withdraw_request.as_ref().filter(|_| !t.status.is_final())),
    );
    obj.insert("history".into(), json!(t.history));
    row
}
