//! The ticket as Dataphin sees it: the result document its callback carries (and
//! `processinstance/get` replies), and each node's display values.

use serde_json::{json, Value};

use super::{Approver, ApproverState, Display, IntegrationMethod, Node, Person, Ticket};
use crate::status::{NodeStatus, Relation, TicketStatus};

impl Node {
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

impl Ticket {
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
    use super::super::tests::{decide, person, ticket};
    use super::super::{IntegrationMethod, Node, NodeOrigin, Verdict};
    use crate::status::Relation;

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
