//! Folding backend events into a ticket: one function per kind of [`ApprovalEvent`], each the
//! only place that kind changes the ticket, behind [`Ticket::apply`]'s deduplication.

use serde_json::Value;

use super::{
    ApprovalEvent, Approver, ApproverState, IntegrationMethod, NodeRead, Outcome, Person, Ticket,
    Verdict,
};
use crate::status::{NodeStatus, Relation, TicketStatus};

/// Which events this ticket already folded, so a redelivered event changes nothing.
const SEEN_EVENTS_KEPT: usize = 200;

impl Ticket {
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

    /// The node on which `backend_user_id` is still to act: only a pending approver's decision or
    /// handover changes anything.
    fn node_awaiting(&mut self, node_id: Option<&str>, backend_user_id: &str) -> Option<usize> {
        let i = self.node_for(node_id, backend_user_id)?;
        self.nodes[i]
            .approvers
            .iter()
            .find(|a| a.person.backend_user_id == backend_user_id)
            .is_some_and(|a| a.state == ApproverState::Pending)
            .then_some(i)
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

    /// Hands each kind of event to the one function that folds it.
    fn fold(&mut self, event: &ApprovalEvent, at: i64, method: IntegrationMethod) -> bool {
        match event {
            ApprovalEvent::TaskStarted {
                backend_user_id,
                person,
                ..
            } => self.task_started(backend_user_id, person.as_ref(), at, method),
            ApprovalEvent::TaskDecided {
                node_id,
                backend_user_id,
                verdict,
                remark,
                ..
            } => self.task_decided(
                node_id.as_deref(),
                backend_user_id,
                *verdict,
                remark,
                at,
                method,
            ),
            ApprovalEvent::TaskHandedOver {
                node_id,
                backend_user_id,
                to,
                delegated,
                remark,
                ..
            } => self.task_handed_over(
                node_id.as_deref(),
                backend_user_id,
                to.as_ref(),
                *delegated,
                remark,
                at,
                method,
            ),
            ApprovalEvent::InstanceFinished {
                verdict, remark, ..
            } => self.instance_finished(*verdict, remark, at, method),
            ApprovalEvent::InstanceTerminated { remark, .. } => {
                self.instance_terminated(remark, at, method)
            }
            ApprovalEvent::NodesRead { nodes, note, .. } => {
                self.nodes_read(nodes, note, at, method)
            }
            ApprovalEvent::Commented {
                backend_user_id,
                remark,
                ..
            } => self.commented(backend_user_id, remark, at),
        }
    }

    /// An approver's task started: a user the open node lacks joins it.
    fn task_started(
        &mut self,
        backend_user_id: &str,
        person: Option<&Person>,
        at: i64,
        method: IntegrationMethod,
    ) -> bool {
        let Some(i) = self.nodes.iter().position(|n| n.is_open()) else {
            return false;
        };
        let node = &mut self.nodes[i];
        if node
            .approvers
            .iter()
            .any(|a| a.person.backend_user_id == backend_user_id)
        {
            return false;
        }
        // Only a handed-over node takes new approvers: DingTalk announces the new
        // approver of a redirect with a task start.
        if !matches!(node.status, NodeStatus::Transferred | NodeStatus::Delegated) {
            return false;
        }
        let person = person.cloned().unwrap_or(Person {
            user_id: backend_user_id.to_owned(),
            user_name: backend_user_id.to_owned(),
            backend_user_id: backend_user_id.to_owned(),
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

    /// An approver agreed or refused: decides the node when its relation says so, and the ticket
    /// on a refusal or the last node's approval (except where the instance's end decides).
    fn task_decided(
        &mut self,
        node_id: Option<&str>,
        backend_user_id: &str,
        verdict: Verdict,
        remark: &Option<String>,
        at: i64,
        method: IntegrationMethod,
    ) -> bool {
        let Some(i) = self.node_awaiting(node_id, backend_user_id) else {
            return false;
        };
        let node = &mut self.nodes[i];
        let approver = node
            .approver_mut(backend_user_id)
            .expect("node_awaiting found this approver");
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

    /// An approver handed the task on: the node is transferred or delegated to its new approver.
    #[allow(clippy::too_many_arguments)] // the event's fields, as the other kinds get theirs
    fn task_handed_over(
        &mut self,
        node_id: Option<&str>,
        backend_user_id: &str,
        to: Option<&Person>,
        delegated: bool,
        remark: &Option<String>,
        at: i64,
        method: IntegrationMethod,
    ) -> bool {
        let Some(i) = self.node_awaiting(node_id, backend_user_id) else {
            return false;
        };
        let node = &mut self.nodes[i];
        let approver = node
            .approver_mut(backend_user_id)
            .expect("node_awaiting found this approver");
        approver.state = ApproverState::HandedOver;
        approver.reason = remark.clone().filter(|r| !r.trim().is_empty());
        approver.acted_at = Some(at);
        let from = approver.person.user_name.clone();
        node.status = if delegated {
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
        let verb = if delegated {
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

    /// The backend instance ended: its verdict decides the open nodes and the ticket.
    fn instance_finished(
        &mut self,
        verdict: Verdict,
        remark: &Option<String>,
        at: i64,
        method: IntegrationMethod,
    ) -> bool {
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

    /// The backend instance was terminated on the backend's side: the ticket is withdrawn.
    fn instance_terminated(
        &mut self,
        remark: &Option<String>,
        at: i64,
        method: IntegrationMethod,
    ) -> bool {
        self.finish(
            TicketStatus::Withdrawn,
            Some(
                remark
                    .clone()
                    .unwrap_or_else(|| "terminated in the approval system".into()),
            ),
            at,
            method,
        )
    }

    /// Someone commented: a line of the timeline, nothing Dataphin is told.
    fn commented(&mut self, backend_user_id: &str, remark: &Option<String>, at: i64) -> bool {
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

    /// Folds node states read from the backend: approvers the ticket does not know join their
    /// node, a decided node that has open tasks again is reopened (a send-back), decisions the
    /// events missed are taken. The ticket's status is left to the instance's own end.
    fn nodes_read(
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
}
