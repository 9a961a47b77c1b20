//! A ticket and its approval nodes: where every status changes.
//!
//! The backend (DingTalk or a company BPM) reports decisions as events; [`Ticket::apply`] folds one
//! event into the ticket. Folding is idempotent and monotonic: a repeated or late event never undoes
//! a decision, and a final ticket never changes again. Every visible change bumps `version`, the
//! number Dataphin deduplicates by.
//!
//! This file holds the types and the few changes every path shares (`record`, `mark_due`,
//! `finish`); `fold` turns backend events into those changes, `document` shows the ticket
//! to Dataphin.

mod document;
mod fold;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}
