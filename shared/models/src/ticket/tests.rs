//! How a ticket folds events, told through [`Ticket::apply`] (the per-kind functions are
//! private), and the tickets and events the document tests share.

use serde_json::json;

use super::{
    ApprovalEvent, Delivery, IntegrationMethod, Node, NodeOrigin, Outcome, Person, Ticket, Verdict,
};
use crate::status::{NodeStatus, Relation, TicketStatus};

pub(super) fn person(id: &str) -> Person {
    Person {
        user_id: format!("dp-{id}"),
        user_name: id.to_string(),
        backend_user_id: format!("be-{id}"),
    }
}

pub(super) fn ticket(nodes: Vec<Node>) -> Ticket {
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
        // ticket waits for its instance's end: see the first test).
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

pub(super) fn decide(user: &str, verdict: Verdict, at: i64) -> ApprovalEvent {
    ApprovalEvent::TaskDecided {
        node_id: None,
        backend_user_id: format!("be-{user}"),
        verdict,
        remark: None,
        at,
    }
}

pub(super) const ALL: IntegrationMethod = IntegrationMethod::AllNodes;

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
