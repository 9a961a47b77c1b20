//! Reads a rules document from JSON by hand so that every shape error (unknown key, wrong
//! type, unknown action) names the rule and field, which serde's derived errors cannot do.
//! Semantics (references, emptiness, uniqueness) are left to `RulesDocument::validate`.

use serde_json::{Map, Value};

use super::document::{Action, ActionKind, Conditions, ExtraNode, Rule, RulesDocument};
use super::validate::RulesError;
use crate::status::Relation;

const DOCUMENT_KEYS: &str = "securityLevels, rules";
const RULE_KEYS: &str = "id, when, then";
const CONDITION_KEYS: &str =
    "type, resourceType, operations, minSecurityLevel, maxSecurityLevel, env, maxPeriodDays";
const ACTION_KEYS: &str = "action, processCode, addNodes, reason";
const NODE_KEYS: &str = "users, relation, name";

/// Where an error is: the rule it is in (if any) and the field path within it.
struct At<'a> {
    rule: Option<&'a str>,
}

impl At<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> RulesError {
        RulesError::invalid(self.rule, field, message)
    }

    fn object<'v>(
        &self,
        value: &'v Value,
        field: &str,
    ) -> Result<&'v Map<String, Value>, RulesError> {
        value
            .as_object()
            .ok_or_else(|| self.err(field, "must be a JSON object"))
    }

    fn string(&self, value: &Value, field: &str) -> Result<String, RulesError> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.err(field, "must be a string"))
    }

    fn strings(&self, value: &Value, field: &str) -> Result<Vec<String>, RulesError> {
        let items = value
            .as_array()
            .ok_or_else(|| self.err(field, "must be a list of strings"))?;
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.err(format!("{field}[{index}]"), "must be a string"))
            })
            .collect()
    }

    fn unknown(&self, field: String, expected: &str) -> RulesError {
        self.err(field, format!("unknown key (expected one of {expected})"))
    }
}

pub(super) fn document(value: &Value) -> Result<RulesDocument, RulesError> {
    let at = At { rule: None };
    let object = at.object(value, "document")?;
    let mut security_levels = None;
    let mut rules = Vec::new();
    for (key, value) in object {
        match key.as_str() {
            "securityLevels" => security_levels = Some(at.strings(value, key)?),
            "rules" => {
                let items = value
                    .as_array()
                    .ok_or_else(|| at.err(key.as_str(), "must be a list of rules"))?;
                rules = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| rule(index, item))
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(at.unknown(key.clone(), DOCUMENT_KEYS)),
        }
    }
    let security_levels = security_levels.ok_or_else(|| at.err("securityLevels", "missing"))?;
    Ok(RulesDocument {
        security_levels,
        rules,
    })
}

fn rule(index: usize, value: &Value) -> Result<Rule, RulesError> {
    let position = format!("rules[{index}]");
    let object = At { rule: None }.object(value, &position)?;
    // Name the rule by its id as soon as there is a usable one, by position otherwise.
    let name = object
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.trim().is_empty())
        .unwrap_or(&position);
    let at = At { rule: Some(name) };

    let mut id = None;
    let mut when = Conditions::default();
    let mut then = None;
    for (key, value) in object {
        match key.as_str() {
            "id" => id = Some(at.string(value, key)?),
            "when" => when = conditions(&at, value)?,
            "then" => then = Some(action(&at, value)?),
            _ => return Err(at.unknown(key.clone(), RULE_KEYS)),
        }
    }
    Ok(Rule {
        id: id.ok_or_else(|| at.err("id", "missing"))?,
        when,
        then: then.ok_or_else(|| at.err("then", "missing"))?,
    })
}

fn conditions(at: &At, value: &Value) -> Result<Conditions, RulesError> {
    let object = at.object(value, "when")?;
    let mut when = Conditions::default();
    for (key, value) in object {
        let field = format!("when.{key}");
        if value.is_null() {
            if CONDITION_KEYS.split(", ").any(|k| k == key) {
                continue;
            }
            return Err(at.unknown(field, CONDITION_KEYS));
        }
        match key.as_str() {
            "type" => when.type_ = Some(at.strings(value, &field)?),
            "resourceType" => when.resource_type = Some(at.strings(value, &field)?),
            "operations" => when.operations = Some(at.strings(value, &field)?),
            "env" => when.env = Some(at.strings(value, &field)?),
            "minSecurityLevel" => when.min_security_level = Some(at.string(value, &field)?),
            "maxSecurityLevel" => when.max_security_level = Some(at.string(value, &field)?),
            "maxPeriodDays" => {
                let days = value.as_u64().filter(|&days| days >= 1).ok_or_else(|| {
                    at.err(field.as_str(), "must be a whole number of days, at least 1")
                })?;
                let days = u32::try_from(days)
                    .map_err(|_| at.err(field.as_str(), format!("{days} is too large")))?;
                when.max_period_days = Some(days);
            }
            _ => return Err(at.unknown(field, CONDITION_KEYS)),
        }
    }
    Ok(when)
}

fn action(at: &At, value: &Value) -> Result<Action, RulesError> {
    let object = at.object(value, "then")?;
    let mut kind = None;
    let mut process_code = None;
    let mut add_nodes = Vec::new();
    let mut reason = None;
    for (key, value) in object {
        let field = format!("then.{key}");
        if value.is_null() && key != "action" && ACTION_KEYS.split(", ").any(|k| k == key) {
            continue;
        }
        match key.as_str() {
            "action" => {
                let name = at.string(value, &field)?;
                let parsed = ActionKind::parse(&name).ok_or_else(|| {
                    at.err(
                        field.as_str(),
                        format!("{name} is not one of AUTO_APPROVE, AUTO_REJECT, ROUTE"),
                    )
                })?;
                kind = Some(parsed);
            }
            "processCode" => process_code = Some(at.string(value, &field)?),
            "reason" => reason = Some(at.string(value, &field)?),
            "addNodes" => {
                let items = value
                    .as_array()
                    .ok_or_else(|| at.err(field.as_str(), "must be a list of nodes"))?;
                add_nodes = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| extra_node(at, &format!("{field}[{index}]"), item))
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(at.unknown(field, ACTION_KEYS)),
        }
    }
    Ok(Action {
        action: kind.ok_or_else(|| at.err("then.action", "missing"))?,
        process_code,
        add_nodes,
        reason,
    })
}

fn extra_node(at: &At, prefix: &str, value: &Value) -> Result<ExtraNode, RulesError> {
    let object = at.object(value, prefix)?;
    let mut users = None;
    let mut relation = None;
    let mut name = None;
    for (key, value) in object {
        let field = format!("{prefix}.{key}");
        match key.as_str() {
            "users" => users = Some(at.strings(value, &field)?),
            "relation" => {
                let text = at.string(value, &field)?;
                let parsed = Relation::parse(&text)
                    .ok_or_else(|| at.err(field.as_str(), format!("{text} is not or/and")))?;
                relation = Some(parsed);
            }
            "name" if value.is_null() => {}
            "name" => name = Some(at.string(value, &field)?),
            _ => return Err(at.unknown(field, NODE_KEYS)),
        }
    }
    Ok(ExtraNode {
        users: users.ok_or_else(|| at.err(format!("{prefix}.users"), "missing"))?,
        relation: relation
            .ok_or_else(|| at.err(format!("{prefix}.relation"), "missing (or/and)"))?,
        name,
    })
}
