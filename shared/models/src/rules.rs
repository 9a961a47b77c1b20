//! Auto-approval rules (SPEC 6): the document administrators store, its validation, and the
//! first-match evaluation of a submission's facts into a decision.
//!
//! The engine is deliberately conservative: anything it cannot prove (a level outside the list,
//! a column without a level, an unknown period length, content that did not parse) counts
//! against an automatic decision, never for it.

mod wire;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::facts::Facts;
use crate::status::{Relation, TicketStatus};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionKind {
    AutoApprove,
    AutoReject,
    Route,
    /// No rule matched: the ticket goes to the backend as submitted.
    Forward,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::AutoApprove => "AUTO_APPROVE",
            DecisionKind::AutoReject => "AUTO_REJECT",
            DecisionKind::Route => "ROUTE",
            DecisionKind::Forward => "FORWARD",
        }
    }
}

impl From<ActionKind> for DecisionKind {
    fn from(action: ActionKind) -> Self {
        match action {
            ActionKind::AutoApprove => DecisionKind::AutoApprove,
            ActionKind::AutoReject => DecisionKind::AutoReject,
            ActionKind::Route => DecisionKind::Route,
        }
    }
}

/// What the rules made of a submission, with its provenance. Serialises (snake_case) as the
/// `POST /rules/evaluate` reply and as stored on the ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(rename = "decision")]
    pub kind: DecisionKind,
    pub rule_id: Option<String>,
    pub rules_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_code: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_nodes: Vec<ExtraNode>,
    /// The values the conditions were tested on: `type`, `resourceType`, `operations`, `env`,
    /// `securityLevel` (highest touched, `"unknown"` if outside the list, null if none),
    /// `periodDays` (days, or the period type where the length is unknown), `parsed`.
    pub facts: Value,
    /// Human readable, for the ticket history, e.g. `auto-approved by rule low-read (rules v3)`.
    pub reason: String,
}

impl Decision {
    /// The final status an automatic decision gives the ticket; `None` when a person decides.
    pub fn final_status(&self) -> Option<TicketStatus> {
        match self.kind {
            DecisionKind::AutoApprove => Some(TicketStatus::Approved),
            DecisionKind::AutoReject => Some(TicketStatus::Rejected),
            DecisionKind::Route | DecisionKind::Forward => None,
        }
    }
}

/// Why a rules document was refused. `Invalid` names the rule (its id, or `rules[i]` where
/// it has none) and the field, so `PUT /rules` and the CLI can point at the mistake.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RulesError {
    #[error("rules document is not valid JSON: {0}")]
    NotJson(String),
    #[error("{}", describe_invalid(.rule.as_deref(), .field, .message))]
    Invalid {
        rule: Option<String>,
        field: String,
        message: String,
    },
}

fn describe_invalid(rule: Option<&str>, field: &str, message: &str) -> String {
    match rule {
        Some(rule) => format!("rule {rule}: {field}: {message}"),
        None => format!("{field}: {message}"),
    }
}

impl RulesError {
    fn invalid(rule: Option<&str>, field: impl Into<String>, message: impl Into<String>) -> Self {
        RulesError::Invalid {
            rule: rule.map(str::to_owned),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The rule at fault (id or `rules[i]`), if the fault is inside one.
    pub fn rule(&self) -> Option<&str> {
        match self {
            RulesError::Invalid { rule, .. } => rule.as_deref(),
            RulesError::NotJson(_) => None,
        }
    }

    /// The field at fault, relative to the rule (`when.maxSecurityLevel`) or the document.
    pub fn field(&self) -> Option<&str> {
        match self {
            RulesError::Invalid { field, .. } => Some(field),
            RulesError::NotJson(_) => None,
        }
    }
}

/// What applies when nothing is stored and no `RULES_FILE` is configured: levels `L1`..`L4`
/// and no rules, so every ticket is forwarded.
pub fn default_rules_document() -> RulesDocument {
    RulesDocument {
        security_levels: ["L1", "L2", "L3", "L4"].map(String::from).to_vec(),
        rules: Vec::new(),
    }
}

/// The rank of the highest security level a request touches, by position in `order`.
///
/// This is the only place that computes it. A level not in `order`, or a column without a
/// level (`None`), ranks `order.len()`: above every listed level, since nobody vouched for it.
/// `None` means the request touches no column at all.
pub fn highest_level_rank(levels: &[Option<String>], order: &[String]) -> Option<usize> {
    levels
        .iter()
        .map(|level| {
            level
                .as_deref()
                .and_then(|name| order.iter().position(|listed| listed == name))
                .unwrap_or(order.len())
        })
        .max()
}

impl RulesDocument {
    /// Parses and validates a document; shape errors name the rule and key like semantic ones.
    pub fn parse(json: &[u8]) -> Result<RulesDocument, RulesError> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| RulesError::NotJson(e.to_string()))?;
        Self::from_value(&value)
    }

    /// As [`RulesDocument::parse`], for a document already read as JSON (e.g. a request body).
    pub fn from_value(value: &Value) -> Result<RulesDocument, RulesError> {
        let document = wire::document(value)?;
        document.validate()?;
        Ok(document)
    }

    /// Checks what the types cannot: references between fields, emptiness, uniqueness.
    pub fn validate(&self) -> Result<(), RulesError> {
        self.validate_levels()?;
        for (index, rule) in self.rules.iter().enumerate() {
            let name = rule_name(rule, index);
            self.validate_rule(rule, index, &name)?;
        }
        Ok(())
    }

    fn validate_levels(&self) -> Result<(), RulesError> {
        const FIELD: &str = "securityLevels";
        if self.security_levels.is_empty() {
            return Err(RulesError::invalid(
                None,
                FIELD,
                "must list at least one level",
            ));
        }
        for (index, level) in self.security_levels.iter().enumerate() {
            if level.trim().is_empty() {
                return Err(RulesError::invalid(
                    None,
                    format!("{FIELD}[{index}]"),
                    "must not be empty",
                ));
            }
            if self.security_levels[..index].contains(level) {
                return Err(RulesError::invalid(
                    None,
                    FIELD,
                    format!("{level} appears more than once"),
                ));
            }
        }
        Ok(())
    }

    fn validate_rule(&self, rule: &Rule, index: usize, name: &str) -> Result<(), RulesError> {
        let name = Some(name);
        if rule.id.trim().is_empty() {
            return Err(RulesError::invalid(name, "id", "must not be empty"));
        }
        if let Some(first) = self.rules[..index].iter().position(|r| r.id == rule.id) {
            return Err(RulesError::invalid(
                name,
                "id",
                format!("duplicate rule id (also rules[{first}])"),
            ));
        }

        let when = &rule.when;
        for (field, list) in [
            ("when.type", &when.type_),
            ("when.resourceType", &when.resource_type),
            ("when.operations", &when.operations),
            ("when.env", &when.env),
        ] {
            if let Some(list) = list {
                validate_list(name, field, list)?;
            }
        }
        let min = self.level_position(name, "when.minSecurityLevel", &when.min_security_level)?;
        let max = self.level_position(name, "when.maxSecurityLevel", &when.max_security_level)?;
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                return Err(RulesError::invalid(
                    name,
                    "when.minSecurityLevel",
                    format!(
                        "{} is above maxSecurityLevel {}",
                        self.security_levels[min], self.security_levels[max]
                    ),
                ));
            }
        }
        if when.max_period_days == Some(0) {
            return Err(RulesError::invalid(
                name,
                "when.maxPeriodDays",
                "must be at least 1",
            ));
        }

        validate_action(name, &rule.then)
    }

    fn level_position(
        &self,
        rule: Option<&str>,
        field: &str,
        level: &Option<String>,
    ) -> Result<Option<usize>, RulesError> {
        let Some(level) = level else { return Ok(None) };
        match self.security_levels.iter().position(|l| l == level) {
            Some(position) => Ok(Some(position)),
            None => Err(RulesError::invalid(
                rule,
                field,
                format!(
                    "{level} is not one of securityLevels ({})",
                    self.security_levels.join(", ")
                ),
            )),
        }
    }

    /// First matching rule wins; no match forwards. Content that did not parse skips
    /// `AUTO_*` rules (it can still be routed), since nobody could check what it asks for.
    pub fn evaluate(&self, facts: &Facts, rules_version: u64) -> Decision {
        let rank = highest_level_rank(&facts.security_levels, &self.security_levels);
        let tested = self.tested_facts(facts, rank);
        let mut skipped: Option<&Rule> = None;

        for rule in &self.rules {
            if !self.conditions_hold(&rule.when, facts, rank) {
                continue;
            }
            if !facts.parsed && rule.then.action.is_auto() {
                skipped.get_or_insert(rule);
                continue;
            }
            let mut reason = describe_match(rule, rules_version);
            note_skipped(&mut reason, skipped);
            return Decision {
                kind: rule.then.action.into(),
                rule_id: Some(rule.id.clone()),
                rules_version,
                process_code: rule.then.process_code.clone(),
                add_nodes: rule.then.add_nodes.clone(),
                facts: tested,
                reason,
            };
        }

        let mut reason =
            format!("no rule matched (rules v{rules_version}); forwarded as submitted");
        note_skipped(&mut reason, skipped);
        Decision {
            kind: DecisionKind::Forward,
            rule_id: None,
            rules_version,
            process_code: None,
            add_nodes: Vec::new(),
            facts: tested,
            reason,
        }
    }

    fn conditions_hold(&self, when: &Conditions, facts: &Facts, rank: Option<usize>) -> bool {
        let listed = |list: &Option<Vec<String>>, value: Option<&str>| match list {
            None => true,
            Some(list) => value.is_some_and(|value| contains(list, value)),
        };
        if !listed(&when.type_, Some(&facts.submission_type))
            || !listed(&when.resource_type, facts.resource_type.as_deref())
            || !listed(&when.env, facts.env.as_deref())
        {
            return false;
        }
        if let Some(allowed) = &when.operations {
            if facts.operations.is_empty()
                || !facts.operations.iter().all(|op| contains(allowed, op))
            {
                return false;
            }
        }
        // A bound outside the list (only in an unvalidated document) never holds.
        let position = |level: &String| self.security_levels.iter().position(|l| l == level);
        if let Some(max) = &when.max_security_level {
            match (position(max), rank) {
                (Some(_), None) => {}
                (Some(max), Some(rank)) if rank <= max => {}
                _ => return false,
            }
        }
        if let Some(min) = &when.min_security_level {
            match (position(min), rank) {
                (Some(min), Some(rank)) if rank >= min => {}
                _ => return false,
            }
        }
        if let Some(max_days) = when.max_period_days {
            let provable = |p: &crate::facts::Period| {
                !p.is_long_term() && p.days.is_some_and(|days| days <= max_days)
            };
            if !facts.periods.iter().all(provable) {
                return false;
            }
        }
        true
    }

    fn tested_facts(&self, facts: &Facts, rank: Option<usize>) -> Value {
        let security_level = match rank {
            None => Value::Null,
            Some(rank) => match self.security_levels.get(rank) {
                Some(name) => Value::from(name.as_str()),
                None => Value::from("unknown"),
            },
        };
        let period_days: Vec<Value> = facts
            .periods
            .iter()
            .map(|p| match p.days {
                Some(days) if !p.is_long_term() => Value::from(days),
                _ => Value::from(p.period_type.as_str()),
            })
            .collect();
        json!({
            "type": facts.submission_type,
            "resourceType": facts.resource_type,
            "operations": facts.operations,
            "env": facts.env,
            "securityLevel": security_level,
            "periodDays": period_days,
            "parsed": facts.parsed,
        })
    }
}

/// Dataphin spells its enumerations in upper case, but a lower-case rule means the same.
fn contains(list: &[String], value: &str) -> bool {
    list.iter().any(|item| item.eq_ignore_ascii_case(value))
}

fn rule_name(rule: &Rule, index: usize) -> String {
    if rule.id.trim().is_empty() {
        format!("rules[{index}]")
    } else {
        rule.id.clone()
    }
}

fn validate_list(rule: Option<&str>, field: &str, list: &[String]) -> Result<(), RulesError> {
    if list.is_empty() {
        return Err(RulesError::invalid(
            rule,
            field,
            "must list at least one value (leave the condition out to match any)",
        ));
    }
    if let Some(index) = list.iter().position(|v| v.trim().is_empty()) {
        return Err(RulesError::invalid(
            rule,
            format!("{field}[{index}]"),
            "must not be empty",
        ));
    }
    Ok(())
}

fn validate_action(rule: Option<&str>, then: &Action) -> Result<(), RulesError> {
    if then.action.is_auto() {
        if then.process_code.is_some() {
            return Err(RulesError::invalid(
                rule,
                "then.processCode",
                format!(
                    "only ROUTE may name a process code, not {}",
                    then.action.as_str()
                ),
            ));
        }
        if !then.add_nodes.is_empty() {
            return Err(RulesError::invalid(
                rule,
                "then.addNodes",
                format!("only ROUTE may add nodes, not {}", then.action.as_str()),
            ));
        }
        return Ok(());
    }

    if then
        .process_code
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        return Err(RulesError::invalid(
            rule,
            "then.processCode",
            "must not be empty",
        ));
    }
    if then.process_code.is_none() && then.add_nodes.is_empty() {
        return Err(RulesError::invalid(
            rule,
            "then",
            "ROUTE needs a processCode or at least one of addNodes",
        ));
    }
    for (index, node) in then.add_nodes.iter().enumerate() {
        let field = format!("then.addNodes[{index}].users");
        if node.users.is_empty() {
            return Err(RulesError::invalid(
                rule,
                field,
                "must list at least one user id",
            ));
        }
        if let Some(at) = node.users.iter().position(|u| u.trim().is_empty()) {
            return Err(RulesError::invalid(
                rule,
                format!("{field}[{at}]"),
                "must not be empty",
            ));
        }
        if let Some(at) =
            (1..node.users.len()).find(|&at| node.users[..at].contains(&node.users[at]))
        {
            return Err(RulesError::invalid(
                rule,
                format!("{field}[{at}]"),
                format!("{} appears more than once", node.users[at]),
            ));
        }
    }
    Ok(())
}

fn describe_match(rule: &Rule, rules_version: u64) -> String {
    let then = &rule.then;
    let mut text = match then.action {
        ActionKind::AutoApprove => "auto-approved".to_owned(),
        ActionKind::AutoReject => "auto-rejected".to_owned(),
        ActionKind::Route => "routed".to_owned(),
    };
    text.push_str(&format!(" by rule {} (rules v{rules_version})", rule.id));
    if let Some(code) = &then.process_code {
        text.push_str(&format!(" to process {code}"));
    }
    match then.add_nodes.len() {
        0 => {}
        1 => text.push_str(" with 1 extra node"),
        n => text.push_str(&format!(" with {n} extra nodes")),
    }
    if let Some(reason) = then.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        text.push_str(": ");
        text.push_str(reason);
    }
    text
}

fn note_skipped(reason: &mut String, skipped: Option<&Rule>) {
    if let Some(rule) = skipped {
        reason.push_str(&format!(
            "; content did not parse, so {} rule {} was not applied",
            rule.then.action.as_str(),
            rule.id
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Vec<String> {
        default_rules_document().security_levels
    }

    #[test]
    fn highest_level_is_the_highest_listed_position() {
        let levels = [
            Some("L1".to_owned()),
            Some("L3".to_owned()),
            Some("L2".to_owned()),
        ];
        assert_eq!(highest_level_rank(&levels, &order()), Some(2));
    }

    #[test]
    fn unlisted_and_missing_levels_rank_above_every_listed_one() {
        let unlisted = [Some("L1".to_owned()), Some("SECRET".to_owned())];
        assert_eq!(highest_level_rank(&unlisted, &order()), Some(4));
        let missing = [Some("L1".to_owned()), None];
        assert_eq!(highest_level_rank(&missing, &order()), Some(4));
        // Level names are matched exactly: a stray spelling is not trusted as low.
        let spelled = [Some("l1".to_owned())];
        assert_eq!(highest_level_rank(&spelled, &order()), Some(4));
    }

    #[test]
    fn no_columns_means_no_level() {
        assert_eq!(highest_level_rank(&[], &order()), None);
    }

    #[test]
    fn errors_display_rule_and_field() {
        let err = RulesError::invalid(
            Some("low-read"),
            "when.maxSecurityLevel",
            "L9 is not one of securityLevels",
        );
        assert_eq!(
            err.to_string(),
            "rule low-read: when.maxSecurityLevel: L9 is not one of securityLevels"
        );
        assert_eq!(err.rule(), Some("low-read"));
        assert_eq!(err.field(), Some("when.maxSecurityLevel"));
        let top = RulesError::invalid(None, "securityLevels", "must list at least one level");
        assert_eq!(
            top.to_string(),
            "securityLevels: must list at least one level"
        );
    }

    #[test]
    fn decisions_serialise_as_the_evaluate_reply() {
        let decision = default_rules_document().evaluate(
            &Facts {
                scenario: crate::facts::Scenario::CodeReview,
                submission_type: "CODE_REVIEW".into(),
                resource_type: None,
                operations: vec![],
                env: None,
                project: None,
                security_levels: vec![],
                periods: vec![],
                parsed: true,
            },
            7,
        );
        let wire = serde_json::to_value(&decision).unwrap();
        assert_eq!(wire["decision"], "FORWARD");
        assert_eq!(wire["rule_id"], Value::Null);
        assert_eq!(wire["rules_version"], 7);
        assert_eq!(wire["facts"]["type"], "CODE_REVIEW");
        assert_eq!(wire["facts"]["securityLevel"], Value::Null);
        let back: Decision = serde_json::from_value(wire).unwrap();
        assert_eq!(back, decision);
    }
}
