//! Why a rules document is refused: every check the types cannot make (references between
//! fields, emptiness, uniqueness), each naming the rule and field at fault.

use thiserror::Error;

use super::document::{Action, Rule, RulesDocument};

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
    pub(super) fn invalid(
        rule: Option<&str>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
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

impl RulesDocument {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
