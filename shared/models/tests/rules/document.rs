//! What a document must be to be stored: every refusal names rule and field, and stored
//! documents round-trip unchanged.

use super::*;

#[test]
fn every_validation_error_names_rule_and_field() {
    // (document, rule named, field named, words of the message)
    let cases: &[(&str, Option<&str>, &str, &str)] = &[
        (
            r#"{"securityLevels": [], "rules": []}"#,
            None,
            "securityLevels",
            "at least one",
        ),
        (
            r#"{"securityLevels": ["L1", "L1"]}"#,
            None,
            "securityLevels",
            "L1 appears more than once",
        ),
        (r#"{"rules": []}"#, None, "securityLevels", "missing"),
        (
            r#"{"securityLevels": ["L1"], "version": 3}"#,
            None,
            "version",
            "unknown key",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "", "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("rules[0]"),
            "id",
            "must not be empty",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("rules[0]"),
            "id",
            "missing",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [
                {"id": "a", "then": {"action": "AUTO_APPROVE"}},
                {"id": "a", "then": {"action": "AUTO_REJECT"}}]}"#,
            Some("a"),
            "id",
            "duplicate",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "priority": 1, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("r"),
            "priority",
            "unknown key",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "when": {"operation": ["SELECT"]}, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("r"),
            "when.operation",
            "unknown key",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "AUTO_APPROVE", "comment": "x"}}]}"#,
            Some("r"),
            "then.comment",
            "unknown key",
        ),
        (
            r#"{"securityLevels": ["L1", "L2"], "rules": [{"id": "low-read", "when": {"maxSecurityLevel": "L9"}, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("low-read"),
            "when.maxSecurityLevel",
            "L9 is not one of securityLevels",
        ),
        (
            r#"{"securityLevels": ["L1", "L2"], "rules": [{"id": "r", "when": {"minSecurityLevel": "X"}, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("r"),
            "when.minSecurityLevel",
            "X is not one of securityLevels",
        ),
        (
            r#"{"securityLevels": ["L1", "L2"], "rules": [{"id": "r", "when": {"minSecurityLevel": "L2", "maxSecurityLevel": "L1"}, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("r"),
            "when.minSecurityLevel",
            "above maxSecurityLevel L1",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "APPROVE"}}]}"#,
            Some("r"),
            "then.action",
            "APPROVE is not one of AUTO_APPROVE, AUTO_REJECT, ROUTE",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"reason": "x"}}]}"#,
            Some("r"),
            "then.action",
            "missing",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "when": {}}]}"#,
            Some("r"),
            "then",
            "missing",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "ROUTE"}}]}"#,
            Some("r"),
            "then",
            "ROUTE needs a processCode",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "ROUTE", "addNodes": []}}]}"#,
            Some("r"),
            "then",
            "ROUTE needs a processCode",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "ROUTE", "processCode": ""}}]}"#,
            Some("r"),
            "then.processCode",
            "must not be empty",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "ROUTE", "addNodes": [{"users": [], "relation": "or"}]}}]}"#,
            Some("r"),
            "then.addNodes[0].users",
            "at least one user",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "ROUTE", "addNodes": [{"users": ["1"], "relation": "xor"}]}}]}"#,
            Some("r"),
            "then.addNodes[0].relation",
            "xor is not or/and",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "ROUTE", "addNodes": [{"users": ["1"]}]}}]}"#,
            Some("r"),
            "then.addNodes[0].relation",
            "missing",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "ROUTE", "addNodes": [{"users": [1], "relation": "or"}]}}]}"#,
            Some("r"),
            "then.addNodes[0].users[0]",
            "must be a string",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "AUTO_APPROVE", "processCode": "P"}}]}"#,
            Some("r"),
            "then.processCode",
            "only ROUTE",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "then": {"action": "AUTO_REJECT", "addNodes": [{"users": ["1"], "relation": "or"}]}}]}"#,
            Some("r"),
            "then.addNodes",
            "only ROUTE",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "when": {"maxPeriodDays": 0}, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("r"),
            "when.maxPeriodDays",
            "at least 1",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "when": {"maxPeriodDays": -5}, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("r"),
            "when.maxPeriodDays",
            "at least 1",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "when": {"operations": []}, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("r"),
            "when.operations",
            "at least one value",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "when": {"env": "PROD"}, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("r"),
            "when.env",
            "list of strings",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "r", "when": {"type": ["AUTH", ""]}, "then": {"action": "AUTO_APPROVE"}}]}"#,
            Some("r"),
            "when.type[1]",
            "must not be empty",
        ),
        (
            r#"{"securityLevels": ["L1"], "rules": [{"id": "ok", "then": {"action": "AUTO_APPROVE"}}, "oops"]}"#,
            None,
            "rules[1]",
            "must be a JSON object",
        ),
    ];
    for (document, rule, field, words) in cases {
        let err = RulesDocument::parse(document.as_bytes())
            .expect_err(&format!("should be refused: {document}"));
        let text = err.to_string();
        assert_eq!(err.rule(), *rule, "{text}");
        assert_eq!(err.field(), Some(*field), "{text}");
        let expected_prefix = match rule {
            Some(rule) => format!("rule {rule}: {field}: "),
            None => format!("{field}: "),
        };
        assert!(
            text.starts_with(&expected_prefix),
            "{text} should start with {expected_prefix}"
        );
        assert!(text.contains(words), "{text} should say {words}");
    }
}

#[test]
fn validate_refuses_documents_built_in_code_too() {
    let mut doc = sample();
    doc.rules[1].when.max_security_level = Some("L9".into());
    let err = doc.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule low-read: when.maxSecurityLevel: L9 is not one of securityLevels (L1, L2, L3, L4)"
    );
}

#[test]
fn malformed_json_is_refused_as_such() {
    let err = RulesDocument::parse(b"{\"securityLevels\": [").unwrap_err();
    assert!(matches!(err, RulesError::NotJson(_)), "{err}");
}

#[test]
fn sample_file_validates_and_has_the_documented_rules() {
    let doc = sample();
    assert_eq!(doc.security_levels, ["L1", "L2", "L3", "L4"]);
    let ids: Vec<_> = doc.rules.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&"low-read") && ids.contains(&"pii") && ids.contains(&"prod-delete"));
    let actions: Vec<_> = doc.rules.iter().map(|r| r.then.action).collect();
    assert!(actions.contains(&ActionKind::AutoReject));
}

#[test]
fn the_spec_example_round_trips_unchanged() {
    let doc = RulesDocument::parse(SPEC_EXAMPLE.as_bytes()).expect("the SPEC example validates");
    let original: Value = serde_json::from_str(SPEC_EXAMPLE).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), original);

    // The derived serde form reads what it writes, and agrees with `parse`.
    let text = serde_json::to_string(&doc).unwrap();
    let again: RulesDocument = serde_json::from_str(&text).unwrap();
    assert_eq!(again, doc);
    assert_eq!(RulesDocument::parse(text.as_bytes()).unwrap(), doc);

    let pii = &doc.rules[1];
    assert_eq!(pii.then.action, ActionKind::Route);
    assert_eq!(pii.then.add_nodes[0].relation, Relation::And);
}

#[test]
fn the_sample_round_trips_unchanged() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/rules.sample.json");
    let original: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(serde_json::to_value(sample()).unwrap(), original);
}
