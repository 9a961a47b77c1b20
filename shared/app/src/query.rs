//! Reading tickets: Dataphin's get, the ops detail, and the ops list (seed 001) served by index
//! queries only.

use std::collections::HashMap;

use models::submission::Submission;
use models::TicketStatus;
use serde_json::{json, Value};
use store::list::{ListOrder, ListRequest};

use models::bounds::{check_id, check_len, MAX_LIST_OFFSET, MAX_NAME_CHARS};

use crate::{tickets, views, App, AppError, AppResult};

/// `GET /dataphin/bpms/processinstance/get`: the document the callback carries.
pub async fn dataphin_get(app: &App, q: &HashMap<String, String>, now: i64) -> AppResult<Value> {
    crate::auth::dataphin(app, q, now).await?;
    let id = match (
        q.get("processInstanceId"),
        q.get("tenantId"),
        q.get("applyId"),
    ) {
        (Some(id), _, _) if !id.is_empty() => {
            check_id("processInstanceId", id)?;
            id.clone()
        }
        (_, Some(t), Some(a)) if !t.is_empty() && !a.is_empty() => {
            check_id("tenantId", t)?;
            check_id("applyId", a)?;
            tickets::ticket_id(t, a)
        }
        _ => {
            return Err(AppError::InvalidField(
                "tenantId and applyId (or processInstanceId) are required".into(),
            ))
        }
    };
    let t = tickets::load(app, &id).await?;
    if let Some(tenant) = q.get("tenantId") {
        if tenant != &t.tenant_id {
            return Err(AppError::NotFound(format!("ticket {id} not found")));
        }
    }
    let mut doc = t.dataphin_document(app.config.integration_method);
    doc["success"] = json!(true);
    Ok(doc)
}

/// `GET /approvals/{id}`. The history is paged once a ticket's oldest entries live in their own
/// items (the item budget, `store::history`): without `history_token` the reply holds the first
/// archived entries, with `history_next_token` to the next page; the entries still in the ticket
/// item close the last page. `history_total` counts them all.
pub async fn detail(app: &App, id: &str, q: &HashMap<String, String>) -> AppResult<Value> {
    check_id("id", id)?;
    let token = q.get("history_token").filter(|t| !t.is_empty());
    if token.is_some_and(|t| !store::history::is_valid_history_token(t)) {
        return Err(AppError::InvalidField(
            "history_token is not a token this detail returned".into(),
        ));
    }
    let stored = app
        .store
        .get_ticket(id, true)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("approval {id} not found")))?;
    let (content, form) = match stored
        .submission
        .as_deref()
        .map(|s| Submission::parse(s.as_bytes()))
    {
        Some(Ok(s)) => (s.content.to_value(), json!(s.form())),
        _ => (Value::Null, json!([])),
    };
    let t = &stored.ticket;
    let mut reply = views::detail(t, content, form);
    let total = t.history_archived + t.history.len() as u64;
    let (history, next) = if t.history_archived == 0 {
        (t.history.clone(), None)
    } else {
        let page = app
            .store
            .archived_history(id, token.map(String::as_str))
            .await?;
        let mut entries = page.entries;
        if page.next_token.is_none() {
            entries.extend(t.history.iter().cloned());
        }
        (entries, page.next_token)
    };
    reply["history"] = json!(history);
    reply["history_total"] = json!(total);
    reply["history_next_token"] = json!(next);
    Ok(reply)
}

fn param_i64(q: &HashMap<String, String>, key: &str) -> AppResult<Option<i64>> {
    q.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| AppError::InvalidField(format!("{key} must be an integer")))
        })
        .transpose()
}

/// `GET /approvals` with seed 001's parameters plus `next_token`.
pub async fn list(app: &App, q: &HashMap<String, String>) -> AppResult<Value> {
    let limit = param_i64(q, "limit")?.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(AppError::InvalidField(
            "limit must be between 1 and 100".into(),
        ));
    }
    let offset = param_i64(q, "offset")?.unwrap_or(0);
    if offset < 0 {
        return Err(AppError::InvalidField("offset must be >= 0".into()));
    }
    if offset > MAX_LIST_OFFSET as i64 {
        return Err(AppError::InvalidField(format!(
            "offset must be at most {MAX_LIST_OFFSET}; page further with next_token"
        )));
    }
    for key in ["workspace_id", "approval_id"] {
        if let Some(v) = q.get(key) {
            check_id(key, v)?;
        }
    }
    if let Some(name) = q.get("proposer_name") {
        check_len("proposer_name", name, MAX_NAME_CHARS)?;
    }
    let mut statuses: Vec<&'static str> = Vec::new();
    if let Some(list) = q.get("status_list").filter(|s| !s.is_empty()) {
        for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let canon = TicketStatus::from_list_status(s).ok_or_else(|| {
                AppError::InvalidField(format!(
                    "status_list: {s} is not one of WAITING_APPROVE, APPROVED, REJECT, REVOKE"
                ))
            })?;
            let list_status = canon[0].list_status();
            if !statuses.contains(&list_status) {
                statuses.push(list_status);
            }
        }
    }
    let order = match q.get("order_by").map(String::as_str) {
        None | Some("") | Some("START_TIME") => ListOrder::StartTime,
        Some("END_TIME") => ListOrder::EndTime,
        Some(other) => {
            return Err(AppError::InvalidField(format!(
                "order_by: {other} is not START_TIME or END_TIME"
            )))
        }
    };
    let descending = match q.get("order_by_desc").map(String::as_str) {
        None | Some("") | Some("true") => true,
        Some("false") => false,
        Some(_) => {
            return Err(AppError::InvalidField(
                "order_by_desc must be true or false".into(),
            ))
        }
    };
    let next_token = q.get("next_token").filter(|s| !s.is_empty()).cloned();
    if next_token
        .as_deref()
        .is_some_and(|t| !store::list::is_valid_cursor(t))
    {
        return Err(AppError::InvalidField(
            "next_token is not a token this list returned".into(),
        ));
    }
    let request = ListRequest {
        tenant_id: q.get("workspace_id").filter(|s| !s.is_empty()).cloned(),
        statuses: statuses.iter().map(|s| s.to_string()).collect(),
        proposer_name: q.get("proposer_name").filter(|s| !s.is_empty()).cloned(),
        start_from: param_i64(q, "application_start_time")?,
        start_to: param_i64(q, "application_end_time")?,
        order,
        descending,
        limit: limit as usize,
        offset: offset as usize,
        next_token,
    };
    if let Some(id) = q.get("approval_id").filter(|s| !s.is_empty()) {
        // One ticket by id: a single read, the other filters applied to it.
        let row = match app.store.get_ticket(id, false).await? {
            Some(s) => Some(views::list_row(&s.ticket)),
            None => None,
        };
        let rows: Vec<Value> = row.into_iter().filter(|r| request.matches(r)).collect();
        let total = rows.len();
        return Ok(
            json!({"approvals": rows.into_iter().skip(request.offset).collect::<Vec<_>>(), "total": total, "next_token": null}),
        );
    }
    let page = app.store.list_tickets(&request).await?;
    Ok(json!({"approvals": page.rows, "total": page.total, "next_token": page.next_token}))
}
