//! A ticket and its approval nodes: where every status changes.
//!
//! The backend (DingTalk or a company BPM) reports decisions as events; [`Ticket::apply`] folds one
//! event into the ticket. Folding is idempotent and monotonic: a repeated or late event never undoes
//! a decision, and a final ticket never changes again. Every visible change bumps `version`, the
//! number Dataphin deduplicates by.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::status::{DispatchStatus, NodeStatus, Relation, TicketStatus};

/// A user as the ticket knows them: Dataphin's identity and the backend's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub user_id: String,
    pub user_name: String,
    /// The backend (DingTalk / BPM) user id the mapping resolved to.
    #[serde(default)]
    pub backend_user_id: String,
}

/// Where an approver of a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApproverState {
    Pending,
    Approved,
    Rejected,
    /// Handed the task to someone else (transfer or delegation).
    HandedOver,
    /// The node was decided by someone else (an `or` node) or the ticket ended.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub person: Person,
    pub state: ApproverState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acted_at: Option<i64>,
}

/// Who put a node on the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOrigin {
    Submission,
    Rule,
}

/// One step of the approval flow, in `approveOrder`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub node_id: String,
    pub name: String,
    pub order: u32,
    pub relation: Relation,
    pub status: NodeStatus,
    pub origin: NodeOrigin,
    pub approvers: Vec<Approver>,
    /// The user a transfer or delegation handed the node to, for the display `Transfer ${user_name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_to: Option<Person>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<i64>,
}

impl Node {
    pub fn new(
        order: u32,
        name: String,
        relation: Relation,
        origin: NodeOrigin,
        people: Vec<Person>,
    ) -> Node {
        Node {
            node_id: format!("node-{order}"),
            name,
            order,
            relation,
            status: NodeStatus::Pending,
            origin,
            approvers: people
                .into_iter()
                .map(|person| Approver {
                    person,
                    state: ApproverState::Pending,
                    reason: None,
                    acted_at: None,
                })
                .collect(),
            handed_to: None,
            reason: None,
            decided_at: None,
        }
    }

    pub fn is_open(&self) -> bool {
        !self.status.is_decided()
    }

    fn approver_mut(&mut self, backend_user_id: &str) -> Option<&mut Approver> {
        self.approvers
            .iter_mut()
            .find(|a| a.person.backend_user_id == backend_user_id)
    }

    pub fn pending_approvers(&self) -> impl Iterator<Item = &Approver> {
        self.approvers
            .iter()
            .filter(|a| a.state == ApproverState::Pending)
    }

    pub fn approved_approvers(&self) -> impl Iterator<Item = &Approver> {
        self.approvers
            .iter()
            .filter(|a| a.state == ApproverState::Approved)
    }

    /// Approvers who acted (agreed, refused or handed over), in the order they acted.
    pub fn operators(&self) -> Vec<&Approver> {
        let mut acted: Vec<&Approver> = self
            .approvers
            .iter()
            .filter(|a| {
                matches!(
                    a.state,
                    ApproverState::Approved | ApproverState::Rejected | ApproverState::HandedOver
                )
            })
            .collect();
        acted.sort_by_key(|a| a.acted_at.unwrap_or(i64::MAX));
        acted
    }

    /// Seed 000's "External approval system parameters": what Dataphin shows for this node.
    pub fn display(&self) -> Display {
        let names = |it: &mut dyn Iterator<Item = &Approver>| {
            it.map(|a| a.person.user_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let handed_name = self
            .handed_to
            .as_ref()
            .map(|p| p.user_name.clone())
            .unwrap_or_default();
        let result = match self.status {
            NodeStatus::Pending => "Pending".to_string(),
            NodeStatus::Approved => "Approved".to_string(),
            NodeStatus::Rejected => "Rejected".to_string(),
            NodeStatus::Delegated => format!("Delegate {handed_name}"),
            NodeStatus::Transferred => format!("Transfer {handed_name}"),
        };
        let operators = self.operators();
        let (operator, description) = match (self.status, self.relation) {
            (NodeStatus::Pending, Relation::Or) => (
                names(&mut self.pending_approvers()),
                "The request is approved if any one approver agrees.".to_string(),
            ),
            (NodeStatus::Pending, Relation::And) => {
                let pending = names(&mut self.pending_approvers());
                let approved = names(&mut self.approved_approvers());
                let operator = if approved.is_empty() {
                    format!("Pending: {pending}")
                } else {
                    format!("Pending: {pending}; Approved: {approved}")
                };
                let description = if operators.is_empty() {
                    "Requires approval from all approvers.".to_string()
                } else {
                    let parts: Vec<String> = self
                        .approved_approvers()
                        .map(|a| {
                            format!(
                                "{} ({})",
                                a.person.user_name,
                                a.reason.as_deref().unwrap_or("Agreed")
                            )
                        })
                        .collect();
                    format!("Some approvers have approved: {}", parts.join(", "))
                };
                (operator, description)
            }
            _ => (
                operators
                    .iter()
                    .map(|a| a.person.user_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.reason
                    .clone()
                    .or_else(|| operators.last().and_then(|a| a.reason.clone()))
                    .unwrap_or_default(),
            ),
        };
        Display {
            operation: self.name.clone(),
            result,
            operator,
            description,
        }
    }
}

/// The four display values of seed 000's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Display {
    pub operation: String,
    pub result: String,
    pub operator: String,
    pub description: String,
}

/// What an approver did, as reported by the backend (already normalised by the adapter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Agree,
    Refuse,
}

/// One thing the backend told us, in the domain's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApprovalEvent {
    /// An approver's task became active; a user not yet on the open node joins it (the new
    /// approver of a transfer).
    TaskStarted {
        backend_user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<Person>,
        at: i64,
    },
    /// An approver agreed or refused. `node_id` is given by backends that know it (webhook).
    TaskDecided {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_id: Option<String>,
        backend_user_id: String,
        verdict: Verdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remark: Option<String>,
        at: i64,
    },
    /// An approver handed the task on (`delegated` false: transfer / DingTalk redirect).
    TaskHandedOver {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_id: Option<String>,
        backend_user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Person>,
        delegated: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remark: Option<String>,
        at: i64,
    },
    /// The backend instance ended with a result.
    InstanceFinished {
        verdict: Verdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remark: Option<String>,
        at: i64,
    },
    /// The backend instance was terminated (withdrawn) on the backend's side.
    InstanceTerminated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remark: Option<String>,
        at: i64,
    },
    /// Where each node stands, as read from the backend instance (DingTalk's `tasks` and
    /// `operationRecords`): what approvers really did beyond agree and refuse (approvers added,
    /// a send-back to an earlier node) becomes visible here. `nodes[i]` is the ticket's node i.
    NodesRead {
        nodes: Vec<NodeRead>,
        /// What happened, for the timeline (e.g. who sent the ticket back, and why).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        at: i64,
    },
    /// Someone commented on the instance (DingTalk `bpms_task_change` `comment`): a line of the
    /// history, nothing Dataphin is told.
    Commented {
        backend_user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remark: Option<String>,
        at: i64,
    },
}

/// One node as the backend instance shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRead {
    pub approvers: Vec<ReadApprover>,
    /// Someone on the node can act now.
    pub open: bool,
    /// How the node ended, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<NodeStatus>,
}

/// One approver of a node as the backend instance shows them (their latest task there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadApprover {
    pub backend_user_id: String,
    /// Filled by the adapter for users the ticket does not know yet (added approvers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
    pub state: ApproverState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acted_at: Option<i64>,
}

impl ApprovalEvent {
    pub fn at(&self) -> i64 {
        match self {
            ApprovalEvent::TaskStarted { at, .. }
            | ApprovalEvent::TaskDecided { at, .. }
            | ApprovalEvent::TaskHandedOver { at, .. }
            | ApprovalEvent::InstanceFinished { at, .. }
            | ApprovalEvent::InstanceTerminated { at, .. }
            | ApprovalEvent::NodesRead { at, .. }
            | ApprovalEvent::Commented { at, .. } => *at,
        }
    }
}

/// Forwarding of the ticket to the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    pub status: DispatchStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub attempts: u32,
    pub at: i64,
}

/// Reporting of the ticket's result to Dataphin (at least once, never lost).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The highest `version` Dataphin acknowledged with 2xx.
    pub delivered_version: u64,
    /// The highest `version` that must reach Dataphin (per the integration method).
    pub due_version: u64,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    /// When the currently due version first became due: retries stop after the retry window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_since: Option<i64>,
    /// Given up after the retry window: visible, re-drivable by the ops API.
    #[serde(default)]
    pub failed: bool,
    /// Until when one sender holds the right to call Dataphin for this ticket. Sends are serialised
    /// so that Dataphin never sees a version older than one it already has, nor one version twice
    /// from concurrent senders; a crashed sender's lease simply runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
}

impl Delivery {
    pub fn is_due(&self) -> bool {
        self.due_version > self.delivered_version && !self.failed
    }
}

/// A backend cancellation still owed after a forced withdrawal or an expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendCancel {
    pub reason: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub next_attempt_at: i64,
    #[serde(default)]
    pub done: bool,
}

/// A withdrawal asked for while the backend could not take it yet (DingTalk's 15 s grace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawRequest {
    pub reason: String,
    pub operator: String,
    pub requested_at: i64,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub next_attempt_at: i64,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// One line of the ticket's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: i64,
    pub kind: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

/// The rule decision recorded on a ticket (provenance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleProvenance {
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    pub rules_version: u64,
    pub facts: Value,
    pub reason: String,
}

/// Which events this ticket already folded, so a redelivered event changes nothing.
const SEEN_EVENTS_KEPT: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub tenant_id: String,
    pub apply_id: String,
    pub title: String,
    pub submission_type: String,
    pub reason_for_request: String,
    pub applicant: Person,
    pub status: TicketStatus,
    /// The decisive comment, or why the ticket was auto-decided, expired or withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    pub expire_at: i64,
    /// Visible version: grows with every change Dataphin may see.
    pub version: u64,
    /// Storage revision: grows with every write, the condition of optimistic concurrency.
    pub revision: u64,
    /// How many of the oldest history entries the store moved to their own items under the
    /// ticket's key (the item holds 400 KB); `history` holds the entries after them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_archived: u64,
    /// Storage: the status of the stored item at `revision` (none before the ticket is first
    /// written). A write that changes it moves the tenant's status counters in the same
    /// transaction; set by the store on every read and write, never serialized.
    #[serde(skip)]
    pub stored_status: Option<TicketStatus>,
    pub nodes: Vec<Node>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<RuleProvenance>,
    /// The backend approval template (DingTalk process code) used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_code: Option<String>,
    /// `dingtalk` or `webhook`; none for auto-decided tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<Dispatch>,
    /// Until when a dispatch in progress holds the right to call the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_lease_until: Option<i64>,
    #[serde(default)]
    pub delivery: Delivery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_cancel: Option<BackendCancel>,
    pub last_event_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciled_at: Option<i64>,
    /// Backend reads in a row that found nothing new since the last event: each doubles the wait
    /// before the next one (SPEC 2), an event starts over.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quiet_reads: u32,
    /// A withdrawal DingTalk could not take yet (it refuses within 15 s of creation): the
    /// dispatcher repeats it; the ticket stays PENDING until DingTalk confirms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_request: Option<WithdrawRequest>,
    #[serde(default)]
    pub seen_events: Vec<String>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// How Dataphin wants results (seed 000 "Integration Method").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IntegrationMethod {
    FinalResult,
    AllNodes,
}

impl IntegrationMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "FINAL_RESULT" => Some(IntegrationMethod::FinalResult),
            "ALL_NODES" => Some(IntegrationMethod::AllNodes),
            _ => None,
        }
    }
}

/// What folding an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing changed (duplicate, late, or about a final ticket).
    Unchanged,
    /// Something visible changed; `version` was bumped.
    Changed,
}

impl Ticket {
    /// The Dataphin name of a backend user on the ticket (an approver or the applicant), else
    /// the backend id itself: how the timeline names who did something.
    pub fn name_of(&self, backend_user_id: &str) -> String {
        self.nodes
            .iter()
            .flat_map(|n| n.approvers.iter())
            .map(|a| &a.person)
            .chain(std::iter::once(&self.applicant))
            .find(|p| p.backend_user_id == backend_user_id)
            .map_or_else(|| backend_user_id.to_owned(), |p| p.user_name.clone())
    }

    /// Records an entry in the timeline.
    pub fn record(&mut self, at: i64, kind: &str, summary: impl Into<String>, details: Value) {
        self.history.push(HistoryEntry {
            at,
            kind: kind.to_string(),
            summary: summary.into(),
            details,
        });
    }

    /// The node currently awaiting decisions: the first open node in order.
    pub fn current_node(&self) -> Option<&Node> {
        if self.status.is_final() {
            return None;
        }
        self.nodes.iter().find(|n| n.is_open())
    }

    /// Users who can act now (the pending approvers of the current node).
    pub fn current_handlers(&self) -> Vec<&Person> {
        self.current_node()
            .map(|n| n.pending_approvers().map(|a| &a.person).collect())
            .unwrap_or_default()
    }

    fn bump(&mut self, method: IntegrationMethod) {
        self.version += 1;
        let report = match method {
            IntegrationMethod::AllNodes => true,
            IntegrationMethod::FinalResult => self.status.is_final(),
        };
        if report {
            self.mark_due(self.version);
        }
    }

    /// Makes `version` due for delivery to Dataphin.
    pub fn mark_due(&mut self, version: u64) {
        if version > self.delivery.due_version {
            self.delivery.due_version = version;
        }
        if self.delivery.is_due() || self.delivery.failed {
            self.delivery.failed = false;
            if self.delivery.due_since.is_none() {
                self.delivery.due_since = Some(self.last_change_at());
            }
            self.delivery.next_attempt_at = Some(self.last_change_at());
        }
    }

    fn last_change_at(&self) -> i64 {
        self.history.last().map(|h| h.at).unwrap_or(self.created_at)
    }

    /// Ends the ticket (the single place a ticket status changes). Returns false if it was final.
    pub fn finish(
        &mut self,
        status: TicketStatus,
        reason: Option<String>,
        at: i64,
        method: IntegrationMethod,
    ) -> bool {
        if !self.status.can_become(status) {
            return false;
        }
        self.status = status;
        self.reason = reason.clone();
        self.finished_at = Some(at);
        for node in &mut self.nodes {
            for a in &mut node.approvers {
                if a.state == ApproverState::Pending {
                    a.state = ApproverState::Cancelled;
                }
            }
        }
        self.record(
            at,
            "status",
            format!(
                "{} {}",
                status.as_str(),
                reason.as_deref().unwrap_or_default()
            )
            .trim_end()
            .to_string(),
            Value::Null,
        );
        self.bump(method);
        true
    }

    /// Folds one backend event into the ticket. `event_id` deduplicates redeliveries.
    pub fn apply(
        &mut self,
        event_id: Option<&str>,
        event: &ApprovalEvent,
        method: IntegrationMethod,
    ) -> Outcome {
        if let Some(id) = event_id {
            if self.seen_events.iter().any(|e| e == id) {
                return Outcome::Unchanged;
            }
        }
        let at = event.at();
        let changed = if self.status.is_final() {
            false
        } else {
            self.fold(event, at, method)
        };
        if let Some(id) = event_id {
            self.seen_events.push(id.to_string());
            if self.seen_events.len() > SEEN_EVENTS_KEPT {
                let excess = self.seen_events.len() - SEEN_EVENTS_KEPT;
                self.seen_events.drain(..excess);
            }
        }
        if at > self.last_event_at {
            self.last_event_at = at;
        }
        if event_id.is_some() || changed {
            // The backend spoke (a pushed event, or a read that found news): reconciliation
            // starts over from its shortest wait.
            self.quiet_reads = 0;
        }
        if changed {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        }
    }

    fn node_for(&mut self, node_id: Option<&str>, backend_user_id: &str) -> Option<usize> {
        if let Some(id) = node_id {
            return self
                .nodes
                .iter()
                .position(|n| n.node_id == id && n.is_open());
        }
        // The open node that has this approver pending; else the current node.
        let first_open = self.nodes.iter().position(|n| n.is_open())?;
        self.nodes[first_open..]
            .iter()
            .position(|n| {
                n.is_open()
                    && n.approvers.iter().any(|a| {
                        a.person.backend_user_id == backend_user_id
                            && a.state == ApproverState::Pending
                    })
            })
            .map(|i| i + first_open)
            .or(Some(first_open))
    }

    fn fold(&mut self, event: &ApprovalEvent, at: i64, method: IntegrationMethod) -> bool {
        match event {
            ApprovalEvent::TaskStarted {
                backend_user_id,
                person,
                ..
            } => {
                let Some(i) = self.nodes.iter().position(|n| n.is_open()) else {
                    return false;
                };
                let node = &mut self.nodes[i];
                if node
                    .approvers
                    .iter()
                    .any(|a| &a.person.backend_user_id == backend_user_id)
                {
                    return false;
                }
                // Only a handed-over node takes new approvers: DingTalk announces the new
                // approver of a redirect with a task start.
                if !matches!(node.status, NodeStatus::Transferred | NodeStatus::Delegated) {
                    return false;
                }
                let person = person.clone().unwrap_or(Person {
                    user_id: backend_user_id.clone(),
                    user_name: backend_user_id.clone(),
                    backend_user_id: backend_user_id.clone(),
                });
                node.handed_to = Some(person.clone());
                node.approvers.push(Approver {
                    person: person.clone(),
                    state: ApproverState::Pending,
                    reason: None,
                    acted_at: None,
                });
                let summary = format!("{} joined {}", person.user_name, node.name);
                self.record(at, "node", summary, Value::Null);
                self.bump(method);
                true
            }
            ApprovalEvent::TaskDecided {
                node_id,
                backend_user_id,
                verdict,
                remark,
                ..
            } => {
                let Some(i) = self.node_for(node_id.as_deref(), backend_user_id) else {
                    return false;
                };
                let node = &mut self.nodes[i];
                let Some(approver) = node.approver_mut(backend_user_id) else {
                    return false;
                };
                if approver.state != ApproverState::Pending {
                    return false;
                }
                let default_reason = match verdict {
                    Verdict::Agree => "Agreed",
                    Verdict::Refuse => "Refused",
                };
                approver.state = match verdict {
                    Verdict::Agree => ApproverState::Approved,
                    Verdict::Refuse => ApproverState::Rejected,
                };
                approver.reason = Some(
                    remark
                        .clone()
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| default_reason.to_string()),
                );
                approver.acted_at = Some(at);
                let who = approver.person.user_name.clone();
                let reason = approver.reason.clone();
                let decided = match (verdict, node.relation) {
                    (Verdict::Refuse, _) => Some(NodeStatus::Rejected),
                    (Verdict::Agree, Relation::Or) => Some(NodeStatus::Approved),
                    (Verdict::Agree, Relation::And) => {
                        let all = node.approvers.iter().all(|a| {
                            matches!(a.state, ApproverState::Approved | ApproverState::HandedOver)
                        });
                        all.then_some(NodeStatus::Approved)
                    }
                };
                if let Some(status) = decided {
                    node.status = status;
                    node.reason = reason.clone();
                    node.decided_at = Some(at);
                    for a in &mut node.approvers {
                        if a.state == ApproverState::Pending {
                            a.state = ApproverState::Cancelled;
                        }
                    }
                }
                let node_name = node.name.clone();
                self.record(
                    at,
                    "decision",
                    format!(
                        "{who} {} at {node_name}: {}",
                        match verdict {
                            Verdict::Agree => "agreed",
                            Verdict::Refuse => "refused",
                        },
                        reason.as_deref().unwrap_or_default()
                    ),
                    Value::Null,
                );
                // DingTalk decides when its instance ends (approvers can add approvers or send
                // the instance back after the last node agreed): its end event or a read of it
                // finishes the ticket. A refusal always ends a DingTalk instance.
                let ends_by_instance = self.backend.as_deref() == Some("dingtalk");
                match decided {
                    Some(NodeStatus::Rejected) => {
                        self.finish(TicketStatus::Rejected, reason, at, method);
                    }
                    Some(NodeStatus::Approved) if self.nodes.iter().all(|n| !n.is_open()) => {
                        if ends_by_instance {
                            // Shown in the detail at once; Dataphin hears it with the instance's
                            // end, as one version, like any other backend's last decision.
                        } else {
                            self.finish(TicketStatus::Approved, reason, at, method);
                        }
                    }
                    _ => self.bump(method),
                }
                true
            }
            ApprovalEvent::TaskHandedOver {
                node_id,
                backend_user_id,
                to,
                delegated,
                remark,
                ..
            } => {
                let Some(i) = self.node_for(node_id.as_deref(), backend_user_id) else {
                    return false;
                };
                let node = &mut self.nodes[i];
                let Some(approver) = node.approver_mut(backend_user_id) else {
                    return false;
                };
                if approver.state != ApproverState::Pending {
                    return false;
                }
                approver.state = ApproverState::HandedOver;
                approver.reason = remark.clone().filter(|r| !r.trim().is_empty());
                approver.acted_at = Some(at);
                let from = approver.person.user_name.clone();
                node.status = if *delegated {
                    NodeStatus::Delegated
                } else {
                    NodeStatus::Transferred
                };
                node.reason = remark.clone();
                if let Some(to) = to {
                    node.handed_to = Some(to.clone());
                    if !node
                        .approvers
                        .iter()
                        .any(|a| a.person.backend_user_id == to.backend_user_id)
                    {
                        node.approvers.push(Approver {
                            person: to.clone(),
                            state: ApproverState::Pending,
                            reason: None,
                            acted_at: None,
                        });
                    }
                }
                let target = node
                    .handed_to
                    .as_ref()
                    .map(|p| p.user_name.clone())
                    .unwrap_or_else(|| "another approver".into());
                let verb = if *delegated {
                    "delegated"
                } else {
                    "transferred"
                };
                let name = node.name.clone();
                self.record(
                    at,
                    "node",
                    format!("{from} {verb} {name} to {target}"),
                    Value::Null,
                );
                self.bump(method);
                true
            }
            ApprovalEvent::InstanceFinished {
                verdict, remark, ..
            } => {
                let status = match verdict {
                    Verdict::Agree => TicketStatus::Approved,
                    Verdict::Refuse => TicketStatus::Rejected,
                };
                let node_status = match verdict {
                    Verdict::Agree => NodeStatus::Approved,
                    Verdict::Refuse => NodeStatus::Rejected,
                };
                let reason = remark.clone().or_else(|| self.last_operator_reason());
                for node in &mut self.nodes {
                    if node.is_open() {
                        node.status = node_status;
                        node.decided_at = Some(at);
                        if node_status == NodeStatus::Rejected {
                            break;
                        }
                    }
                }
                self.finish(status, reason, at, method)
            }
            ApprovalEvent::NodesRead { nodes, note, .. } => self.fold_read(nodes, note, at, method),
            ApprovalEvent::Commented {
                backend_user_id,
                remark,
                ..
            } => {
                let who = self.name_of(backend_user_id);
                self.record(
                    at,
                    "comment",
                    format!("{who} commented: {}", remark.as_deref().unwrap_or_default()),
                    Value::Null,
                );
                // A comment decides nothing: the timeline shows it, the version stays.
                false
            }
            ApprovalEvent::InstanceTerminated { remark, .. } => self.finish(
                TicketStatus::Withdrawn,
                Some(
                    remark
                        .clone()
                        .unwrap_or_else(|| "terminated in the approval system".into()),
                ),
                at,
                method,
            ),
        }
    }

    /// Folds node states read from the backend: approvers the ticket does not know join their
    /// node, a decided node that has open tasks again is reopened (a send-back), decisions the
    /// events missed are taken. The ticket's status is left to the instance's own end.
    fn fold_read(
        &mut self,
        nodes: &[NodeRead],
        note: &Option<String>,
        at: i64,
        method: IntegrationMethod,
    ) -> bool {
        let mut changed = false;
        for (node, read) in self.nodes.iter_mut().zip(nodes) {
            let known: Vec<String> = node
                .approvers
                .iter()
                .map(|a| a.person.backend_user_id.clone())
                .collect();
            for ra in &read.approvers {
                match node.approver_mut(&ra.backend_user_id) {
                    None => {
                        let person = ra.person.clone().unwrap_or_else(|| Person {
                            user_id: ra.backend_user_id.clone(),
                            user_name: ra.backend_user_id.clone(),
                            backend_user_id: ra.backend_user_id.clone(),
                        });
                        node.approvers.push(Approver {
                            person,
                            state: ra.state,
                            reason: ra.reason.clone(),
                            acted_at: ra.acted_at,
                        });
                        if ra.state == ApproverState::Pending
                            && node.status != NodeStatus::Transferred
                        {
                            // Added approvers (加签) all decide, whatever the node was.
                            node.relation = Relation::And;
                        }
                        changed = true;
                    }
                    Some(a)
                        if ra.state == ApproverState::Pending
                            && a.state != ApproverState::Pending =>
                    {
                        a.state = ApproverState::Pending;
                        a.reason = None;
                        a.acted_at = None;
                        changed = true;
                    }
                    Some(a)
                        if a.state == ApproverState::Pending
                            && matches!(
                                ra.state,
                                ApproverState::Approved | ApproverState::Rejected
                            ) =>
                    {
                        a.state = ra.state;
                        a.reason = ra.reason.clone();
                        a.acted_at = ra.acted_at;
                        changed = true;
                    }
                    Some(a)
                        if a.state == ApproverState::Pending
                            && ra.state == ApproverState::HandedOver =>
                    {
                        // A transfer whose push has not arrived (or was lost): the new
                        // approver is the one the node did not have.
                        a.state = ApproverState::HandedOver;
                        a.acted_at = ra.acted_at;
                        a.reason = ra.reason.clone();
                        node.status = NodeStatus::Transferred;
                        node.handed_to = read
                            .approvers
                            .iter()
                            .filter(|r| {
                                r.state == ApproverState::Pending
                                    && !known.contains(&r.backend_user_id)
                            })
                            .filter_map(|r| r.person.clone())
                            .next_back()
                            .or(node.handed_to.clone());
                        changed = true;
                    }
                    Some(_) => {}
                }
            }
            if read.open && node.status.is_decided() {
                node.status = NodeStatus::Pending;
                node.decided_at = None;
                node.reason = None;
                changed = true;
            } else if let (false, Some(status), true) = (read.open, read.decided, node.is_open()) {
                node.status = status;
                node.decided_at = Some(at);
                node.reason = node.operators().last().and_then(|a| a.reason.clone());
                changed = true;
            }
        }
        if changed {
            let summary = note
                .clone()
                .unwrap_or_else(|| "node states read from the approval system".into());
            self.record(at, "node", summary, Value::Null);
            self.bump(method);
        }
        changed
    }

    fn last_operator_reason(&self) -> Option<String> {
        self.nodes
            .iter()
            .flat_map(|n| n.approvers.iter())
            .filter(|a| a.acted_at.is_some())
            .max_by_key(|a| a.acted_at)
            .and_then(|a| a.reason.clone())
    }

    /// The document the Dataphin callback carries (and `processinstance/get` replies).
    pub fn dataphin_document(&self, method: IntegrationMethod) -> Value {
        let nodes: Vec<Value> = match method {
            IntegrationMethod::AllNodes => self.nodes.iter().map(node_document).collect(),
            IntegrationMethod::FinalResult => self.start_and_end_nodes(),
        };
        json!({
            "applyId": self.apply_id,
            "tenantId": self.tenant_id,
            "processInstanceId": self.id,
            "status": self.status.dataphin_status(),
            "reason": self.reason.clone().unwrap_or_default(),
            "finishTime": self.finished_at,
            "version": self.version,
            "nodes": nodes,
        })
    }

    fn start_and_end_nodes(&self) -> Vec<Value> {
        let applicant =
            json!({"user_id": self.applicant.user_id, "user_name": self.applicant.user_name});
        let start = json!({
            "node_id": "start",
            "node_name": "Submit",
            "node_status": "APPROVED",
            "approverRelation": "or",
            "pending_approvers": [],
            "approved_approvers": [applicant],
            "operator": [{"user_id": self.applicant.user_id, "user_name": self.applicant.user_name,
                          "reason": self.reason_for_request, "operate_time": self.created_at}],
            "reason": self.reason_for_request,
            "display": {"operation": "Submit", "result": "Approved",
                        "operator": self.applicant.user_name, "description": self.reason_for_request},
        });
        let (status, result) = match self.status {
            TicketStatus::Pending => (NodeStatus::Pending, "Pending"),
            TicketStatus::Approved => (NodeStatus::Approved, "Approved"),
            _ => (NodeStatus::Rejected, "Rejected"),
        };
        let operators: Vec<Value> = self
            .nodes
            .iter()
            .flat_map(|n| n.operators())
            .filter(|a| a.state != ApproverState::HandedOver)
            .map(operator_document)
            .collect();
        let pending: Vec<Value> = self
            .current_handlers()
            .into_iter()
            .map(person_document)
            .collect();
        let approved: Vec<Value> = self
            .nodes
            .iter()
            .flat_map(|n| n.approved_approvers())
            .map(|a| person_document(&a.person))
            .collect();
        let operator_names = operators
            .iter()
            .filter_map(|o| o["user_name"].as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let reason = self.reason.clone().unwrap_or_default();
        let end = json!({
            "node_id": "end",
            "node_name": "Approval result",
            "node_status": status.as_str(),
            "approverRelation": "or",
            "pending_approvers": pending,
            "approved_approvers": approved,
            "operator": operators,
            "reason": reason,
            "display": {"operation": "Approval result", "result": result,
                        "operator": operator_names, "description": reason},
        });
        vec![start, end]
    }
}

fn person_document(p: &Person) -> Value {
    json!({"user_id": p.user_id, "user_name": p.user_name})
}

fn operator_document(a: &Approver) -> Value {
    json!({
        "user_id": a.person.user_id,
        "user_name": a.person.user_name,
        "reason": a.reason.clone().unwrap_or_default(),
        "operate_time": a.acted_at,
    })
}

fn node_document(n: &Node) -> Value {
    json!({
        "node_id": n.node_id,
        "node_name": n.name,
        "node_status": n.status.as_str(),
        "approverRelation": n.relation.as_str(),
        "pending_approvers": n.pending_approvers().map(|a| person_document(&a.person)).collect::<Vec<_>>(),
        "approved_approvers": n.approved_approvers().map(|a| person_document(&a.person)).collect::<Vec<_>>(),
        "operator": n.operators().into_iter().map(operator_document).collect::<Vec<_>>(),
        "reason": n.reason.clone().unwrap_or_default(),
        "display": n.display(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str) -> Person {
        Person {
            user_id: format!("dp-{id}"),
            user_name: id.to_string(),
            backend_user_id: format!("be-{id}"),
        }
    }

    fn ticket(nodes: Vec<Node>) -> Ticket {
        Ticket {
            id: "t1".into(),
            tenant_id: "300073302".into(),
            apply_id: "a1".into(),
            title: "t".into(),
            submission_type: "AUTH".into(),
            reason_for_request: "because".into(),
            applicant: person("alice"),
            status: TicketStatus::Pending,
            reason: None,
            created_at: 1_000,
            finished_at: None,
            expire_at: 10_000_000,
            version: 1,
            revision: 1,
            history_archived: 0,
            stored_status: None,
            nodes,
            decision: None,
            process_code: None,
            // The node model: a backend whose last node's decision ends the ticket (a DingTalk
            // ticket waits for its instance's end: see the test below).
            backend: Some("webhook".into()),
            instance_id: Some("inst".into()),
            dispatch: None,
            dispatch_lease_until: None,
            delivery: Delivery::default(),
            backend_cancel: None,
            last_event_at: 1_000,
            last_reconciled_at: None,
            quiet_reads: 0,
            withdraw_request: None,
            seen_events: vec![],
            history: vec![],
        }
    }

    fn decide(user: &str, verdict: Verdict, at: i64) -> ApprovalEvent {
        ApprovalEvent::TaskDecided {
            node_id: None,
            backend_user_id: format!("be-{user}"),
            verdict,
            remark: None,
            at,
        }
    }

    const ALL: IntegrationMethod = IntegrationMethod::AllNodes;

    #[test]
    fn a_dingtalk_ticket_ends_with_its_instance_not_with_its_last_node() {
        let mut t = ticket(vec![Node::new(
            1,
            "Owner".into(),
            Relation::Or,
            NodeOrigin::Submission,
            vec![person("bob")],
        )]);
        t.backend = Some("dingtalk".into());
        assert_eq!(
            t.apply(None, &decide("bob", Verdict::Agree, 2_000), ALL),
            Outcome::Changed
        );
        assert_eq!(t.nodes[0].status, NodeStatus::Approved);
        assert_eq!(
            t.status,
            TicketStatus::Pending,
            "bob may still add approvers"
        );
        let finished = ApprovalEvent::InstanceFinished {
            verdict: Verdict::Agree,
            remark: None,
            at: 3_000,
        };
        assert_eq!(t.apply(None, &finished, ALL), Outcome::Changed);
        assert_eq!(t.status, TicketStatus::Approved);
    }

    #[test]
    fn a_comment_is_a_history_line_and_changes_nothing_dataphin_sees() {
        let mut t = ticket(vec![Node::new(
            1,
            "Owner".into(),
            Relation::Or,
            NodeOrigin::Submission,
            vec![person("bob")],
        )]);
        let before = (t.version, t.status, t.nodes.clone(), t.delivery.clone());
        let comment = ApprovalEvent::Commented {
            backend_user_id: "be-bob".into(),
            remark: Some("which columns exactly?".into()),
            at: 1_500,
        };
        assert_eq!(t.apply(Some("c1"), &comment, ALL), Outcome::Unchanged);
        assert_eq!(
            (t.version, t.status, t.nodes.clone(), t.delivery.clone()),
            before
        );
        let last = t.history.last().unwrap();
        assert_eq!(
            (last.kind.as_str(), last.summary.as_str()),
            ("comment", "bob commented: which columns exactly?")
        );
        // A re-sent comment is recorded once.
        let lines = t.history.len();
        t.apply(Some("c1"), &comment, ALL);
        assert_eq!(t.history.len(), lines);
    }

    #[test]
    fn or_node_is_decided_by_the_first_agree() {
        let mut t = ticket(vec![Node::new(
            1,
            "Owner".into(),
            Relation::Or,
            NodeOrigin::Submission,
            vec![person("bob"), person("carol")],
        )]);
        assert_eq!(
            t.apply(None, &decide("carol", Verdict::Agree, 2_000), ALL),
            Outcome::Changed
        );
        assert_eq!(t.status, TicketStatus::Approved);
        assert_eq!(t.nodes[0].status, NodeStatus::Approved);
        // bob's late refusal changes nothing
        assert_eq!(
            t.apply(None, &decide("bob", Verdict::Refuse, 3_000), ALL),
            Outcome::Unchanged
        );
        assert_eq!(t.status, TicketStatus::Approved);
    }

    #[test]
    fn and_node_needs_everyone_and_one_refusal_rejects() {
        let and = || {
            ticket(vec![
                Node::new(
                    1,
                    "Owners".into(),
                    Relation::And,
                    NodeOrigin::Submission,
                    vec![person("bob"), person("carol")],
                ),
                Node::new(
                    2,
                    "Security".into(),
                    Relation::Or,
                    NodeOrigin::Submission,
                    vec![person("dave")],
                ),
            ])
        };
        let mut t = and();
        t.apply(None, &decide("bob", Verdict::Agree, 2_000), ALL);
        assert_eq!(t.nodes[0].status, NodeStatus::Pending);
        let d = t.nodes[0].display();
        assert_eq!(d.operator, "Pending: carol; Approved: bob");
        assert_eq!(d.description, "Some approvers have approved: bob (Agreed)");
        t.apply(None, &decide("carol", Verdict::Agree, 3_000), ALL);
        assert_eq!(t.nodes[0].status, NodeStatus::Approved);
        assert_eq!(t.current_node().unwrap().name, "Security");
        assert_eq!(t.status, TicketStatus::Pending);
        t.apply(None, &decide("dave", Verdict::Agree, 4_000), ALL);
        assert_eq!(t.status, TicketStatus::Approved);

        let mut t = and();
        t.apply(None, &decide("carol", Verdict::Refuse, 2_000), ALL);
        assert_eq!(t.nodes[0].status, NodeStatus::Rejected);
        assert_eq!(t.status, TicketStatus::Rejected);
        assert_eq!(t.reason.as_deref(), Some("Refused"));
    }

    #[test]
    fn transfer_makes_the_new_approver_pending_and_is_displayed() {
        let mut t = ticket(vec![Node::new(
            1,
            "Owner".into(),
            Relation::Or,
            NodeOrigin::Submission,
            vec![person("bob")],
        )]);
        let ev = ApprovalEvent::TaskHandedOver {
            node_id: None,
            backend_user_id: "be-bob".into(),
            to: Some(person("carol")),
            delegated: false,
            remark: Some("on leave".into()),
            at: 2_000,
        };
        assert_eq!(t.apply(Some("e1"), &ev, ALL), Outcome::Changed);
        assert_eq!(t.nodes[0].status, NodeStatus::Transferred);
        assert_eq!(t.nodes[0].display().result, "Transfer carol");
        assert_eq!(t.current_handlers()[0].user_name, "carol");
        // the same event again is a duplicate
        let v = t.version;
        assert_eq!(t.apply(Some("e1"), &ev, ALL), Outcome::Unchanged);
        assert_eq!(t.version, v);
        t.apply(None, &decide("carol", Verdict::Agree, 3_000), ALL);
        assert_eq!(t.status, TicketStatus::Approved);
    }

    #[test]
    fn final_ticket_never_regresses_and_versions_grow() {
        let mut t = ticket(vec![Node::new(
            1,
            "Owner".into(),
            Relation::Or,
            NodeOrigin::Submission,
            vec![person("bob")],
        )]);
        let v0 = t.version;
        t.apply(
            None,
            &ApprovalEvent::InstanceFinished {
                verdict: Verdict::Refuse,
                remark: Some("no".into()),
                at: 5,
            },
            ALL,
        );
        assert_eq!(t.status, TicketStatus::Rejected);
        assert!(t.version > v0);
        assert!(t.delivery.is_due());
        let v1 = t.version;
        t.apply(
            None,
            &ApprovalEvent::InstanceFinished {
                verdict: Verdict::Agree,
                remark: None,
                at: 6,
            },
            ALL,
        );
        t.apply(None, &decide("bob", Verdict::Agree, 7), ALL);
        assert_eq!(t.status, TicketStatus::Rejected);
        assert_eq!(t.version, v1);
    }

    #[test]
    fn final_result_method_reports_only_final_changes_with_start_and_end_nodes() {
        let mut t = ticket(vec![
            Node::new(
                1,
                "A".into(),
                Relation::Or,
                NodeOrigin::Submission,
                vec![person("bob")],
            ),
            Node::new(
                2,
                "B".into(),
                Relation::Or,
                NodeOrigin::Submission,
                vec![person("dave")],
            ),
        ]);
        let m = IntegrationMethod::FinalResult;
        t.apply(None, &decide("bob", Verdict::Agree, 2), m);
        assert!(
            !t.delivery.is_due(),
            "a node change is not reported with FINAL_RESULT"
        );
        t.apply(None, &decide("dave", Verdict::Agree, 3), m);
        assert!(t.delivery.is_due());
        let doc = t.dataphin_document(m);
        assert_eq!(doc["status"], "APPROVED");
        let nodes = doc["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1]["node_status"], "APPROVED");
        assert_eq!(nodes[1]["operator"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn redirect_with_a_known_target_is_one_change_whatever_the_order_of_the_start_event() {
        let node = || {
            Node::new(
                1,
                "Owner".into(),
                Relation::Or,
                NodeOrigin::Submission,
                vec![person("bob")],
            )
        };
        let start = ApprovalEvent::TaskStarted {
            backend_user_id: "be-erin".into(),
            person: Some(person("erin")),
            at: 2_000,
        };
        let redirect = ApprovalEvent::TaskHandedOver {
            node_id: None,
            backend_user_id: "be-bob".into(),
            to: Some(person("erin")),
            delegated: false,
            remark: None,
            at: 2_000,
        };
        for order in [[&redirect, &start], [&start, &redirect]] {
            let mut t = ticket(vec![node()]);
            for ev in order {
                t.apply(None, ev, ALL);
            }
            assert_eq!(t.version, 2, "one visible change");
            assert_eq!(t.nodes[0].display().result, "Transfer erin");
            let handlers: Vec<&str> = t
                .current_handlers()
                .iter()
                .map(|p| p.user_name.as_str())
                .collect();
            assert_eq!(handlers, vec!["erin"]);
            assert_eq!(t.delivery.due_version, 2);
        }
    }

    #[test]
    fn stored_deliveries_without_a_lease_still_read() {
        let d: Delivery = serde_json::from_value(json!({
            "delivered_version": 1, "due_version": 2, "attempts": 3
        }))
        .unwrap();
        assert_eq!(d.lease_until, None);
        assert!(d.is_due());
        let written = serde_json::to_value(&d).unwrap();
        assert!(written.get("lease_until").is_none());
    }

    #[test]
    fn pending_or_display_lists_pending_approvers() {
        let n = Node::new(
            1,
            "Owner".into(),
            Relation::Or,
            NodeOrigin::Submission,
            vec![person("bob"), person("carol")],
        );
        let d = n.display();
        assert_eq!(d.operation, "Owner");
        assert_eq!(d.result, "Pending");
        assert_eq!(d.operator, "bob, carol");
        assert_eq!(
            d.description,
            "The request is approved if any one approver agrees."
        );
        let n = Node::new(
            1,
            "Owner".into(),
            Relation::And,
            NodeOrigin::Submission,
            vec![person("bob")],
        );
        assert_eq!(
            n.display().description,
            "Requires approval from all approvers."
        );
    }
}
