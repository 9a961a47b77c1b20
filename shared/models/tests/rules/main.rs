//! The rules engine as administrators meet it: documents they write, submissions' facts,
//! and the decisions (or refusals) they get back.
//!
//! `evaluate` holds the decisions submissions get, `document` what a document must be to be
//! stored (refusals, round trips); the documents and facts both use are here.

mod document;
mod evaluate;

use models::rules::{default_rules_document, ActionKind, DecisionKind, RulesDocument, RulesError};
use models::{Facts, Period, Relation, Scenario, TicketStatus};
use serde_json::{json, Value};

/// The example of SPEC section 6, verbatim.
const SPEC_EXAMPLE: &str = r#"
{ "securityLevels": ["L1", "L2", "L3", "L4"],
  "rules": [
    { "id": "low-read", "when": { "type": ["AUTH"], "resourceType": ["PHYSICAL_TABLE", "LOGICAL_TABLE"],
        "operations": ["SELECT"], "maxSecurityLevel": "L2", "env": ["PROD", "DEV"], "maxPeriodDays": 90 },
      "then": { "action": "AUTO_APPROVE" } },
    { "id": "pii", "when": { "minSecurityLevel": "L4" },
      "then": { "action": "ROUTE", "processCode": "PROC-PII", "addNodes": [ { "users": ["sec-officer"], "relation": "and" } ] } } ] }
"#;

fn sample() -> RulesDocument {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/rules.sample.json");
    let bytes = std::fs::read(path).expect("infra/rules.sample.json is shipped");
    RulesDocument::parse(&bytes).expect("the sample validates")
}

fn days(n: u32) -> Period {
    Period {
        period_type: format!("DAYS_{n}"),
        start: None,
        end: None,
        days: Some(n),
    }
}

fn long_term() -> Period {
    Period {
        period_type: "LONG_TERM".into(),
        start: None,
        end: None,
        days: None,
    }
}

/// A table permission request: SELECT on a PROD physical table with L1 columns for 30 days.
fn table_read() -> Facts {
    Facts {
        scenario: Scenario::TablePermission,
        submission_type: "AUTH".into(),
        resource_type: Some("PHYSICAL_TABLE".into()),
        operations: vec!["SELECT".into()],
        env: Some("PROD".into()),
        project: Some("sales_dw".into()),
        security_levels: vec![Some("L1".into()), Some("L2".into()), Some("L1".into())],
        periods: vec![days(30)],
        parsed: true,
    }
}

fn with_levels(levels: &[Option<&str>]) -> Facts {
    Facts {
        security_levels: levels.iter().map(|l| l.map(String::from)).collect(),
        ..table_read()
    }
}
