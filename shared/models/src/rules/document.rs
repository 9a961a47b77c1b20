//! The rules document administrators store, as its types: levels, rules, conditions and actions.

use serde::{Deserialize, Serialize};

use crate::status::Relation;

/// The stored rules document, in its camelCase wire form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesDocument {
    /// Security levels from lowest to highest; conditions compare levels by position here.
    pub security_levels: Vec<String>,
    /// Evaluated in order; the first rule whose conditions all hold decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    /// No conditions at all matches every submission.
    #[serde(default)]
    pub when: Conditions,
    pub then: Action,
}

/// Every present condition must hold for the rule to match; absent ones are not tested.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conditions {
    /// Dataphin submission `type` (`AUTH`, `CODE_REVIEW`, ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<Vec<String>>,
    /// Every requested operation must be listed; a request without operations fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_security_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_security_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Every grantee period must be known and at most this long; `LONG_TERM` fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_period_days: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionKind {
    AutoApprove,
    AutoReject,
    /// Forward to another process code and/or with extra approver nodes.
    Route,
}

impl ActionKind {
    pub const ALL: [ActionKind; 3] = [
        ActionKind::AutoApprove,
        ActionKind::AutoReject,
        ActionKind::Route,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::AutoApprove => "AUTO_APPROVE",
            ActionKind::AutoReject => "AUTO_REJECT",
            ActionKind::Route => "ROUTE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Actions that decide the ticket without a person; unparsed content never gets one.
    pub fn is_auto(self) -> bool {
        matches!(self, ActionKind::AutoApprove | ActionKind::AutoReject)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    pub action: ActionKind,
    /// `ROUTE` only: the backend process to use instead of the configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_code: Option<String>,
    /// `ROUTE` only: approver nodes appended after the submitted ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_nodes: Vec<ExtraNode>,
    /// Shown in the ticket history; for `AUTO_REJECT` it is what the applicant reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An approver node a `ROUTE` rule adds to the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraNode {
    /// Dataphin user ids, mapped to backend users like any submitted approver.
    pub users: Vec<String>,
    pub relation: Relation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What applies when nothing is stored and no `RULES_FILE` is configured: levels `L1`..`L4`
/// and no rules, so every ticket is forwarded.
pub fn default_rules_document() -> RulesDocument {
    RulesDocument {
        security_levels: ["L1", "L2", "L3", "L4"].map(String::from).to_vec(),
        rules: Vec::new(),
    }
}
