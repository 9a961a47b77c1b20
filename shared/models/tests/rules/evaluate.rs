//! The decisions submissions' facts get from a document: matching, levels, periods, order.

use super::*;

#[test]
fn low_sensitivity_select_is_auto_approved() {
    let decision = sample().evaluate(&table_read(), 3);
    assert_eq!(decision.kind, DecisionKind::AutoApprove);
    assert_eq!(decision.rule_id.as_deref(), Some("low-read"));
    assert_eq!(decision.rules_version, 3);
    assert_eq!(decision.final_status(), Some(TicketStatus::Approved));
    assert!(decision.process_code.is_none() && decision.add_nodes.is_empty());
    assert!(
        decision
            .reason
            .starts_with("auto-approved by rule low-read (rules v3)"),
        "{}",
        decision.reason
    );
    assert_eq!(
        decision.facts,
        json!({
            "type": "AUTH",
            "resourceType": "PHYSICAL_TABLE",
            "operations": ["SELECT"],
            "env": "PROD",
            "securityLevel": "L2",
            "periodDays": [30],
            "parsed": true,
        })
    );
}

#[test]
fn views_are_covered_by_the_sample_low_read_rule() {
    let view = Facts {
        resource_type: Some("LOGICAL_VIEW".into()),
        env: Some("DEV".into()),
        ..table_read()
    };
    assert_eq!(sample().evaluate(&view, 1).kind, DecisionKind::AutoApprove);
}

#[test]
fn l4_is_routed_with_the_security_officer_node() {
    let decision = sample().evaluate(&with_levels(&[Some("L1"), Some("L4")]), 5);
    assert_eq!(decision.kind, DecisionKind::Route);
    assert_eq!(decision.rule_id.as_deref(), Some("pii"));
    assert_eq!(decision.process_code.as_deref(), Some("PROC-PII"));
    assert_eq!(decision.add_nodes.len(), 1);
    let node = &decision.add_nodes[0];
    assert_eq!(node.users, vec!["300000930".to_owned()]);
    assert_eq!(node.relation, Relation::And);
    assert_eq!(node.name.as_deref(), Some("Security officer"));
    assert_eq!(decision.final_status(), None);
    assert_eq!(decision.facts["securityLevel"], "L4");
    assert!(decision
        .reason
        .contains("routed by rule pii (rules v5) to process PROC-PII"));
}

#[test]
fn update_is_not_approved_by_a_select_only_rule() {
    let update = Facts {
        operations: vec!["SELECT".into(), "UPDATE".into()],
        ..table_read()
    };
    let decision = sample().evaluate(&update, 1);
    assert_eq!(decision.kind, DecisionKind::Forward);
    assert_eq!(decision.rule_id, None);
}

#[test]
fn a_request_without_operations_fails_an_operations_condition() {
    let none = Facts {
        operations: vec![],
        ..table_read()
    };
    assert_eq!(sample().evaluate(&none, 1).kind, DecisionKind::Forward);
}

#[test]
fn long_term_and_too_long_periods_fail_max_period_days() {
    let long = Facts {
        periods: vec![days(30), long_term()],
        ..table_read()
    };
    let decision = sample().evaluate(&long, 1);
    assert_eq!(decision.kind, DecisionKind::Forward);
    assert_eq!(decision.facts["periodDays"], json!([30, "LONG_TERM"]));

    let too_long = Facts {
        periods: vec![days(180)],
        ..table_read()
    };
    assert_eq!(sample().evaluate(&too_long, 1).kind, DecisionKind::Forward);

    let unknown_length = Facts {
        periods: vec![Period {
            period_type: "SHORT_TIME".into(),
            start: Some("2026-01-01".into()),
            end: None,
            days: None,
        }],
        ..table_read()
    };
    assert_eq!(
        sample().evaluate(&unknown_length, 1).kind,
        DecisionKind::Forward
    );

    let exactly = Facts {
        periods: vec![days(90)],
        ..table_read()
    };
    assert_eq!(
        sample().evaluate(&exactly, 1).kind,
        DecisionKind::AutoApprove
    );

    let no_period = Facts {
        periods: vec![],
        ..table_read()
    };
    assert_eq!(
        sample().evaluate(&no_period, 1).kind,
        DecisionKind::AutoApprove
    );
}

#[test]
fn an_unlisted_level_counts_as_the_highest() {
    let secret = with_levels(&[Some("L1"), Some("SECRET")]);
    let decision = sample().evaluate(&secret, 1);
    assert_eq!(
        decision.kind,
        DecisionKind::Route,
        "matched minSecurityLevel L4"
    );
    assert_eq!(decision.rule_id.as_deref(), Some("pii"));
    assert_eq!(decision.facts["securityLevel"], "unknown");
}

#[test]
fn a_column_without_a_level_counts_as_the_highest() {
    let unlabelled = with_levels(&[Some("L1"), None]);
    let decision = sample().evaluate(&unlabelled, 1);
    assert_eq!(decision.kind, DecisionKind::Route);
    assert_eq!(decision.rule_id.as_deref(), Some("pii"));
    assert_eq!(decision.facts["securityLevel"], "unknown");
}

#[test]
fn no_columns_satisfy_max_but_not_min_security_level() {
    let doc = RulesDocument::parse(
        br#"{"securityLevels": ["L1", "L2"], "rules": [
            {"id": "min", "when": {"minSecurityLevel": "L1"}, "then": {"action": "AUTO_REJECT"}},
            {"id": "max", "when": {"maxSecurityLevel": "L1"}, "then": {"action": "AUTO_APPROVE"}}]}"#,
    )
    .unwrap();
    let decision = doc.evaluate(&with_levels(&[]), 1);
    assert_eq!(decision.rule_id.as_deref(), Some("max"));
    assert_eq!(decision.facts["securityLevel"], Value::Null);
}

#[test]
fn free_text_is_never_auto_approved_but_can_be_routed() {
    let doc = RulesDocument::parse(
        br#"{"securityLevels": ["L1"], "rules": [
            {"id": "everything", "then": {"action": "AUTO_APPROVE"}},
            {"id": "no-reject", "when": {}, "then": {"action": "AUTO_REJECT"}},
            {"id": "to-review", "when": {"type": ["AUTH"]}, "then": {"action": "ROUTE", "processCode": "PROC-REVIEW"}}]}"#,
    )
    .unwrap();
    let free_text = Facts {
        scenario: Scenario::FreeText,
        submission_type: "AUTH".into(),
        resource_type: None,
        operations: vec![],
        env: None,
        project: None,
        security_levels: vec![],
        periods: vec![],
        parsed: false,
    };
    let decision = doc.evaluate(&free_text, 2);
    assert_eq!(decision.kind, DecisionKind::Route);
    assert_eq!(decision.rule_id.as_deref(), Some("to-review"));
    assert_eq!(decision.facts["parsed"], false);
    assert!(
        decision.reason.contains("content did not parse"),
        "{}",
        decision.reason
    );

    let only_auto = RulesDocument::parse(
        br#"{"securityLevels": ["L1"], "rules": [{"id": "everything", "then": {"action": "AUTO_APPROVE"}}]}"#,
    )
    .unwrap();
    let decision = only_auto.evaluate(&free_text, 2);
    assert_eq!(decision.kind, DecisionKind::Forward);
    assert_eq!(decision.rule_id, None);

    // The same rule approves parsed content, so it is the parse state that held it back.
    let parsed = Facts {
        parsed: true,
        ..free_text
    };
    assert_eq!(
        only_auto.evaluate(&parsed, 2).kind,
        DecisionKind::AutoApprove
    );
}

#[test]
fn first_match_wins() {
    let doc = RulesDocument::parse(
        br#"{"securityLevels": ["L1", "L2"], "rules": [
            {"id": "first", "when": {"type": ["AUTH"]}, "then": {"action": "ROUTE", "processCode": "PROC-A"}},
            {"id": "second", "when": {"type": ["AUTH"], "operations": ["SELECT"]}, "then": {"action": "AUTO_APPROVE"}}]}"#,
    )
    .unwrap();
    let decision = doc.evaluate(&table_read(), 1);
    assert_eq!(decision.rule_id.as_deref(), Some("first"));
    assert_eq!(decision.process_code.as_deref(), Some("PROC-A"));
}

#[test]
fn no_match_forwards_as_submitted() {
    let code_review = Facts {
        scenario: Scenario::CodeReview,
        submission_type: "CODE_REVIEW".into(),
        resource_type: None,
        operations: vec![],
        env: Some("DEV".into()),
        project: None,
        security_levels: vec![],
        periods: vec![],
        parsed: true,
    };
    let decision = sample().evaluate(&code_review, 4);
    assert_eq!(decision.kind, DecisionKind::Forward);
    assert_eq!(decision.rule_id, None);
    assert_eq!(decision.rules_version, 4);
    assert!(decision.process_code.is_none() && decision.add_nodes.is_empty());
    assert_eq!(
        decision.reason,
        "no rule matched (rules v4); forwarded as submitted"
    );

    let decision = default_rules_document().evaluate(&table_read(), 0);
    assert_eq!(decision.kind, DecisionKind::Forward);
}

#[test]
fn delete_on_prod_tables_is_auto_rejected_with_the_reason() {
    let delete = Facts {
        operations: vec!["DELETE".into()],
        ..table_read()
    };
    let decision = sample().evaluate(&delete, 9);
    assert_eq!(decision.kind, DecisionKind::AutoReject);
    assert_eq!(decision.rule_id.as_deref(), Some("prod-delete"));
    assert_eq!(decision.final_status(), Some(TicketStatus::Rejected));
    assert!(decision
        .reason
        .starts_with("auto-rejected by rule prod-delete (rules v9): "));
    assert!(decision.reason.contains("DELETE on production tables"));

    let dev = Facts {
        env: Some("DEV".into()),
        ..delete
    };
    assert_eq!(sample().evaluate(&dev, 9).kind, DecisionKind::Forward);
}

#[test]
fn absent_resource_type_or_env_fails_their_conditions() {
    let no_type = Facts {
        resource_type: None,
        ..table_read()
    };
    assert_eq!(sample().evaluate(&no_type, 1).kind, DecisionKind::Forward);
    let no_env = Facts {
        env: None,
        ..table_read()
    };
    assert_eq!(sample().evaluate(&no_env, 1).kind, DecisionKind::Forward);
}

#[test]
fn matching_ignores_the_case_of_enumerations() {
    let doc = RulesDocument::parse(
        br#"{"securityLevels": ["L1"], "rules": [
            {"id": "r", "when": {"type": ["auth"], "operations": ["select"], "env": ["prod"]},
             "then": {"action": "ROUTE", "addNodes": [{"users": ["1"], "relation": "OR"}]}}]}"#,
    )
    .unwrap();
    let decision = doc.evaluate(&with_levels(&[Some("L1")]), 1);
    assert_eq!(decision.rule_id.as_deref(), Some("r"));
    assert_eq!(decision.add_nodes[0].relation, Relation::Or);
}
