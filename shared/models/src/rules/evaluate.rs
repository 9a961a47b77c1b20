//! First-match evaluation of a submission's facts into a decision, and the decision itself.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::document::{ActionKind, Conditions, ExtraNode, Rule, RulesDocument};
use crate::facts::Facts;
use crate::status::TicketStatus;

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
    use super::super::document::default_rules_document;
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
