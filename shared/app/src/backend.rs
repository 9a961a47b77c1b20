//! The approval backend the bridge forwards tickets to: DingTalk OA or a company BPM (webhook).

use dingtalk::{
    ActionType, ApproverStep, CreateInstance, DingTalkClient, DingTalkConfig, DingTalkError,
    InstanceDetail, InstanceOutcome, OperationType, TaskResult, TaskStatus,
};
use models::content::calendar;
use models::render::FormField;
use models::ticket::{ApprovalEvent, ApproverState, NodeRead, ReadApprover, Ticket, Verdict};
use models::NodeStatus;
use models::Relation;
use serde_json::{json, Value};

use crate::config::{BackendConfig, BackendKind, Config, DingTalkSettings};

/// Why the backend did not do what was asked. The message is short and holds no secret: it is
/// stored as the ticket's dispatch error.
#[derive(Debug, Clone)]
pub struct BackendError {
    pub message: String,
    /// False when the backend refused for good (e.g. an invalid parameter).
    pub retryable: bool,
    /// A termination refused because the instance had already ended: what DingTalk says happened,
    /// so the ticket takes the real outcome.
    pub finished: Option<Vec<ApprovalEvent>>,
    /// A termination refused within DingTalk's grace after creation: when to repeat it (Unix ms).
    pub not_before: Option<i64>,
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A failed DingTalk call, counted by its code (throttles and quota refusals too).
fn dingtalk_failure(operation: &str, e: &dingtalk::DingTalkError) -> BackendError {
    let (status, code) = match e {
        dingtalk::DingTalkError::Api { status, code, .. } => (Some(*status), code.as_str()),
        dingtalk::DingTalkError::Transport(_) => (None, "transport"),
        dingtalk::DingTalkError::Timeout => (None, "timeout"),
        dingtalk::DingTalkError::Invalid(_) => (None, "invalid"),
        #[allow(unreachable_patterns)]
        _ => (None, "other"),
    };
    let class = crate::metrics::classify_dingtalk(status, code);
    crate::metrics::backend_error("dingtalk", operation, code, class).emit();
    BackendError {
        finished: None,
        not_before: None,
        retryable: e.is_retryable(),
        message: format!("DingTalk: {e}{}", setting_hint(code)),
    }
}

/// The setting to look at for a DingTalk refusal that a setting causes.
fn setting_hint(code: &str) -> &'static str {
    match code {
        "invalidAgentId" => {
            " (check DINGTALK_AGENT_ID: the AgentId of the app DINGTALK_APP_KEY belongs to)"
        }
        "processCodeError" => {
            " (check DINGTALK_PROCESS_CODE, or the processCode of the rule that routed the ticket)"
        }
        "invalidClientIdOrSecret" => " (check DINGTALK_APP_KEY and DINGTALK_APP_SECRET)",
        _ => "",
    }
}

/// A failed call to the company BPM.
fn webhook_failure(operation: &str, e: impl std::fmt::Display) -> BackendError {
    crate::metrics::backend_error(
        "webhook",
        operation,
        "webhook",
        crate::metrics::ErrorClass::Other,
    )
    .emit();
    BackendError {
        finished: None,
        not_before: None,
        retryable: true,
        message: format!("webhook: {e}"),
    }
}

#[derive(Clone)]
pub enum Backend {
    DingTalk {
        client: DingTalkClient,
        settings: DingTalkSettings,
    },
    Webhook(webhook::WebhookClient),
}

impl Backend {
    pub fn from_config(config: &Config) -> Result<Backend, lambda_http::Error> {
        Ok(match &config.backend {
            BackendConfig::DingTalk(settings) => {
                let settings = settings.clone();
                let client = DingTalkClient::new(
                    DingTalkConfig {
                        api_base: settings.api_base.clone(),
                        app_key: settings.app_key.clone(),
                        app_secret: settings.app_secret.expose().to_string(),
                        agent_id: settings.agent_id,
                    },
                    dingtalk::http_client()?,
                )
                // Read at each token request: a re-read after a rotation is used at once.
                .with_secret_source({
                    let cell = settings.app_secret.clone();
                    std::sync::Arc::new(move || cell.expose().to_owned())
                });
                Backend::DingTalk { client, settings }
            }
            BackendConfig::Webhook(w) => {
                let cell = w.secret.clone();
                Backend::Webhook(
                    webhook::WebhookClient::new(&w.url, "")?
                        .with_secret_source(std::sync::Arc::new(move || cell.expose().to_owned())),
                )
            }
        })
    }

    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::DingTalk { .. } => BackendKind::DingTalk,
            Backend::Webhook(_) => BackendKind::Webhook,
        }
    }

    /// The DingTalk template used when no rule picks another.
    pub fn default_process_code(&self) -> Option<String> {
        match self {
            Backend::DingTalk { settings, .. } => Some(settings.process_code.clone()),
            Backend::Webhook(_) => None,
        }
    }

    /// Creates the backend instance for a ticket; returns its id.
    pub async fn create(
        &self,
        ticket: &Ticket,
        dept_id: Option<&str>,
        form: &[FormField],
        content: &Value,
        retaken: bool,
    ) -> Result<String, BackendError> {
        match self {
            Backend::DingTalk { client, settings } => {
                let approvers = ticket
                    .nodes
                    .iter()
                    .map(|n| ApproverStep {
                        action_type: match (n.approvers.len(), n.relation) {
                            (1, _) => ActionType::None,
                            (_, Relation::And) => ActionType::And,
                            (_, Relation::Or) => ActionType::Or,
                        },
                        user_ids: n
                            .approvers
                            .iter()
                            .map(|a| a.person.backend_user_id.clone())
                            .collect(),
                    })
                    .collect();
                let process_code = ticket
                    .process_code
                    .clone()
                    .unwrap_or_else(|| settings.process_code.clone());
                // The template is the contract: only its labels are sent, and a required
                // component the bridge cannot fill stops here, before any instance exists.
                let schema = client
                    .form_schema(&process_code)
                    .await
                    .map_err(|e| dingtalk_failure("schema", &e))?;
                let fields: Vec<(String, String)> = form
                    .iter()
                    .map(|f| (f.name.clone(), f.value.clone()))
                    .collect();
                let values =
                    dingtalk::form::fill(&schema, &ticket.id, &fields, &settings.form_labels)
                        .map_err(|e| BackendError {
                            finished: None,
                            not_before: None,
                            retryable: false,
                            message: format!("DingTalk template {process_code}: {e}"),
                        })?;
                let req = CreateInstance {
                    originator_user_id: ticket.applicant.backend_user_id.clone(),
                    process_code: process_code.clone(),
                    dept_id: dept_id.and_then(|d| d.parse().ok()).unwrap_or(-1),
                    approvers,
                    form: values.into_iter().take(dingtalk::MAX_FORM_VALUES).collect(),
                };
                // Create has no idempotency key: before any repeat, look for the instance an
                // earlier attempt may have made (its reply lost, or its outcome never written:
                // then only the lease it held says it ran) and adopt it.
                if retaken || ticket.dispatch.is_some() {
                    if let Some(id) = find_instance(client, &req, ticket).await? {
                        tracing::warn!(instance_id = %id, "adopted the instance an earlier create made");
                        return Ok(id);
                    }
                }
                crate::metrics::dingtalk_call("create").emit();
                match client.create_instance(&req).await {
                    Ok(id) => Ok(id),
                    Err(e @ (DingTalkError::Timeout | DingTalkError::Transport(_))) => {
                        // The instance may exist though the reply was lost.
                        match find_instance(client, &req, ticket).await {
                            Ok(Some(id)) => {
                                tracing::warn!(instance_id = %id, error = %e,
                                    "create reply lost; adopted the instance DingTalk made");
                                Ok(id)
                            }
                            Ok(None) => Err(dingtalk_failure("create", &e)),
                            Err(lookup) => Err(BackendError {
                                finished: None,
                                not_before: None,
                                retryable: true,
                                message: format!(
                                    "DingTalk: {e}; looking for its instance: {lookup}"
                                ),
                            }),
                        }
                    }
                    Err(e) => {
                        let mut failure = dingtalk_failure("create", &e);
                        if e.code() == Some("formConverterError") {
                            // The template changed under the cache: read it again next time.
                            client.forget_form_schema(&process_code);
                            failure.retryable = true;
                        }
                        Err(failure)
                    }
                }
            }
            Backend::Webhook(client) => {
                let event = json!({
                    "event": "ticket.created",
                    "ticket_id": ticket.id,
                    "apply_id": ticket.apply_id,
                    "tenant_id": ticket.tenant_id,
                    "type": ticket.submission_type,
                    "title": ticket.title,
                    "applicant": {
                        "user_id": ticket.applicant.user_id,
                        "user_name": ticket.applicant.user_name,
                        "backend_user_id": ticket.applicant.backend_user_id,
                    },
                    "nodes": ticket.nodes.iter().map(|n| json!({
                        "node_id": n.node_id,
                        "order": n.order,
                        "relation": n.relation.as_str(),
                        "approvers": n.approvers.iter().map(|a| json!({
                            "backend_user_id": a.person.backend_user_id,
                            "user_name": a.person.user_name,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "form": form,
                    "content": content,
                    "expire_time": ticket.expire_at,
                });
                let reply = client
                    .send(&ticket.id, &event)
                    .await
                    .map_err(|e| webhook_failure("create", e))?;
                reply
                    .get("instance_id")
                    .and_then(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .or_else(|| v.as_i64().map(|n| n.to_string()))
                    })
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| BackendError {
                        finished: None,
                        not_before: None,
                        retryable: true,
                        message: "webhook: reply has no instance_id".into(),
                    })
            }
        }
    }

    /// Cancels the backend instance of a ticket.
    pub async fn terminate(&self, ticket: &Ticket, reason: &str) -> Result<(), BackendError> {
        let Some(instance) = ticket.instance_id.as_deref() else {
            return Ok(());
        };
        match self {
            Backend::DingTalk { client, .. } => {
                crate::metrics::dingtalk_call("terminate").emit();
                let mut result = client
                    .terminate_instance(instance, reason, &ticket.applicant.backend_user_id, true)
                    .await;
                if matches!(&result, Err(e) if e.code() == Some("userNotExist")) {
                    // The originator has left: a system termination needs no operator.
                    crate::metrics::dingtalk_call("terminate").emit();
                    result = client.terminate_instance(instance, reason, "", true).await;
                }
                match result {
                    Ok(()) => Ok(()),
                    Err(e) if e.code() == Some("aflowProcessInstStatusException") => {
                        // Refused for an instance no longer running, or within DingTalk's 15 s
                        // of its creation: the instance says which.
                        let mut failure = dingtalk_failure("terminate", &e);
                        crate::metrics::dingtalk_call("get").emit();
                        if let Ok(detail) = client.get_instance(instance).await {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as i64);
                            if detail.outcome().is_some() {
                                failure.retryable = false;
                                failure.finished = Some(events_from_instance(&detail, now));
                            } else {
                                failure.retryable = true;
                                // Still running: refused within DingTalk's grace after creation
                                // (DingTalk's createTime has minutes only; the dispatch time is
                                // when the bridge made the instance).
                                let created = ticket.dispatch.as_ref().map(|d| d.at);
                                failure.not_before = created
                                    .map(|at| at + TERMINATE_GRACE_MS + GRACE_MARGIN_MS)
                                    .filter(|end| *end > now);
                            }
                        }
                        Err(failure)
                    }
                    Err(e) => Err(dingtalk_failure("terminate", &e)),
                }
            }
            Backend::Webhook(client) => {
                let event = json!({"event": "ticket.withdrawn", "ticket_id": ticket.id, "instance_id": instance, "reason": reason});
                client
                    .send(&ticket.id, &event)
                    .await
                    .map(|_| ())
                    .map_err(|e| webhook_failure("terminate", e))
            }
        }
    }

    /// Asks the backend where an instance stands (reconciliation of lost events). Only DingTalk can
    /// be asked; a webhook BPM reports by itself.
    pub async fn poll(
        &self,
        ticket: &Ticket,
        now: i64,
    ) -> Result<Vec<ApprovalEvent>, BackendError> {
        let (Backend::DingTalk { client, .. }, Some(instance)) =
            (self, ticket.instance_id.as_deref())
        else {
            return Ok(Vec::new());
        };
        crate::metrics::dingtalk_call("get").emit();
        let detail = client
            .get_instance(instance)
            .await
            .map_err(|e| dingtalk_failure("get", &e))?;
        Ok(events_from_instance(&detail, now))
    }
}

/// DingTalk refuses to terminate an instance within 15 s of its creation.
pub const TERMINATE_GRACE_MS: i64 = 15_000;
/// Kept beyond the grace, for clocks that differ and the time the create took.
const GRACE_MARGIN_MS: i64 = 2_000;

/// How far around the ticket's creation its instance is looked for.
const FIND_WINDOW_MS: i64 = 10 * 60 * 1000;

/// The instance an earlier create made for `ticket`, if any: the originator's instances of the
/// template since the ticket was created, each read until one's form names the ticket.
async fn find_instance(
    client: &DingTalkClient,
    req: &CreateInstance,
    ticket: &Ticket,
) -> Result<Option<String>, BackendError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    crate::metrics::dingtalk_call("instance_ids").emit();
    let ids = client
        .instance_ids(
            &req.process_code,
            &req.originator_user_id,
            ticket.created_at - FIND_WINDOW_MS,
            now + FIND_WINDOW_MS,
        )
        .await
        .map_err(|e| dingtalk_failure("instance_ids", &e))?;
    for id in ids {
        crate::metrics::dingtalk_call("get").emit();
        let detail = client
            .get_instance(&id)
            .await
            .map_err(|e| dingtalk_failure("get", &e))?;
        let values = detail
            .form_component_values
            .iter()
            .filter_map(|v| v.value.as_deref());
        if dingtalk::form::form_names_ticket(values, &ticket.id) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// What a DingTalk instance says happened, as events in time order: decisions with their remarks
/// and times, transfers, the approvers now pending, and the instance's end.
pub fn events_from_instance(detail: &InstanceDetail, now: i64) -> Vec<ApprovalEvent> {
    let time = |t: &Option<String>| {
        t.as_deref()
            .and_then(calendar::parse_datetime_ms)
            .unwrap_or(now)
    };
    let remark_of = |user: &str, activity: &Option<String>| {
        detail
            .operation_records
            .iter()
            .filter(|r| {
                r.user_id.as_deref() == Some(user)
                    && (activity.is_none() || r.activity_id == *activity)
            })
            .filter(|r| {
                matches!(
                    r.operation_type,
                    Some(
                        OperationType::ExecuteTaskNormal
                            | OperationType::ExecuteTaskAgent
                            | OperationType::RedirectTask
                    )
                )
            })
            .filter_map(|r| r.remark.clone())
            .next_back()
    };
    let mut events: Vec<ApprovalEvent> = Vec::new();
    for task in &detail.tasks {
        let Some(user) = task.user_id.clone() else {
            continue;
        };
        match task.result.as_ref() {
            Some(TaskResult::Agree | TaskResult::Refuse) => {
                events.push(ApprovalEvent::TaskDecided {
                    node_id: None,
                    verdict: if task.result == Some(TaskResult::Agree) {
                        Verdict::Agree
                    } else {
                        Verdict::Refuse
                    },
                    remark: remark_of(&user, &task.activity_id),
                    backend_user_id: user,
                    at: time(&task.finish_time),
                })
            }
            Some(TaskResult::Redirected) => events.push(ApprovalEvent::TaskHandedOver {
                node_id: None,
                remark: remark_of(&user, &task.activity_id),
                backend_user_id: user,
                to: None,
                delegated: false,
                at: time(&task.finish_time),
            }),
            _ if matches!(task.status, Some(TaskStatus::Running | TaskStatus::New)) => {
                events.push(ApprovalEvent::TaskStarted {
                    backend_user_id: user,
                    person: None,
                    at: time(&task.create_time),
                })
            }
            _ => {}
        }
    }
    events.sort_by_key(ApprovalEvent::at);
    // Then the nodes as the instance shows them: added approvers, a send-back.
    events.push(ApprovalEvent::NodesRead {
        nodes: nodes_from_instance(detail, now),
        note: None,
        at: now,
    });
    let end = time(&detail.finish_time);
    let closing = detail
        .operation_records
        .iter()
        .rev()
        .find_map(|r| r.remark.clone());
    match detail.outcome() {
        Some(InstanceOutcome::Approved) => events.push(ApprovalEvent::InstanceFinished {
            verdict: Verdict::Agree,
            remark: None,
            at: end,
        }),
        Some(InstanceOutcome::Rejected) => events.push(ApprovalEvent::InstanceFinished {
            verdict: Verdict::Refuse,
            remark: closing,
            at: end,
        }),
        Some(InstanceOutcome::Terminated) => events.push(ApprovalEvent::InstanceTerminated {
            remark: closing,
            at: end,
        }),
        None => {}
    }
    events
}

/// The ticket's nodes as a DingTalk instance shows them: the instance's activities in the order
/// they first appear are the ticket's nodes in order (one approver step each, as the create sent
/// them; a send-back starts an earlier activity again). Each approver's latest task there says
/// where they stand; `person` is left for the caller to fill.
pub fn nodes_from_instance(detail: &InstanceDetail, now: i64) -> Vec<NodeRead> {
    let time = |t: &Option<String>| t.as_deref().and_then(calendar::parse_datetime_ms);
    let mut activities: Vec<&str> = Vec::new();
    let mut tasks: Vec<&dingtalk::Task> = detail.tasks.iter().collect();
    tasks.sort_by_key(|t| time(&t.create_time).unwrap_or(now));
    for t in &tasks {
        if let Some(a) = t.activity_id.as_deref() {
            if !activities.contains(&a) {
                activities.push(a);
            }
        }
    }
    activities
        .iter()
        .map(|activity| {
            let mut approvers: Vec<ReadApprover> = Vec::new();
            for t in tasks
                .iter()
                .filter(|t| t.activity_id.as_deref() == Some(activity))
            {
                let Some(user) = t.user_id.clone() else {
                    continue;
                };
                let state = match (t.status.as_ref(), t.result.as_ref()) {
                    (Some(TaskStatus::Running | TaskStatus::New | TaskStatus::Paused), _) => {
                        ApproverState::Pending
                    }
                    (_, Some(TaskResult::Agree)) => ApproverState::Approved,
                    (_, Some(TaskResult::Refuse)) => ApproverState::Rejected,
                    (_, Some(TaskResult::Redirected)) => ApproverState::HandedOver,
                    _ => ApproverState::Cancelled,
                };
                let reason = detail
                    .operation_records
                    .iter()
                    .filter(|r| {
                        r.user_id.as_deref() == Some(&user)
                            && r.activity_id.as_deref() == Some(activity)
                    })
                    .filter_map(|r| r.remark.clone())
                    .next_back();
                let read = ReadApprover {
                    backend_user_id: user.clone(),
                    person: None,
                    state,
                    reason: reason.filter(|_| state != ApproverState::Pending),
                    acted_at: time(&t.finish_time).filter(|_| state != ApproverState::Pending),
                };
                // The latest task of a user is where they stand now.
                match approvers.iter_mut().find(|a| a.backend_user_id == user) {
                    Some(a) => *a = read,
                    None => approvers.push(read),
                }
            }
            let open = approvers.iter().any(|a| a.state == ApproverState::Pending);
            let decided = if open {
                None
            } else if approvers.iter().any(|a| a.state == ApproverState::Rejected) {
                Some(NodeStatus::Rejected)
            } else if approvers.iter().any(|a| a.state == ApproverState::Approved) {
                Some(NodeStatus::Approved)
            } else {
                None
            };
            NodeRead {
                approvers,
                open,
                decided,
            }
        })
        .collect()
}

/// Whether a DingTalk `redirect` push by `user` was a send-back to an earlier node (退回,
/// `REDIRECT_PROCESS`) rather than a transfer: their latest record in the instance says.
pub fn was_sent_back(detail: &InstanceDetail, user: &str) -> Option<Option<String>> {
    detail
        .operation_records
        .iter()
        .rev()
        .find(|r| {
            r.user_id.as_deref() == Some(user)
                && matches!(
                    r.operation_type,
                    Some(OperationType::RedirectProcess | OperationType::RedirectTask)
                )
        })
        .filter(|r| r.operation_type == Some(OperationType::RedirectProcess))
        .map(|r| r.remark.clone())
}
