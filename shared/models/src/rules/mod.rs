//! Auto-approval rules (SPEC 6): the document administrators store, its validation, and the
//! first-match evaluation of a submission's facts into a decision.
//!
//! The engine is deliberately conservative: anything it cannot prove (a level outside the list,
//! a column without a level, an unknown period length, content that did not parse) counts
//! against an automatic decision, never for it.
//!
//! `document` holds the types, `validate` the checks and their error, `evaluate` the decision;
//! `wire` reads the JSON. This file only ties reading and checking together.

mod document;
mod evaluate;
mod validate;
mod wire;

pub use document::{
    default_rules_document, Action, ActionKind, Conditions, ExtraNode, Rule, RulesDocument,
};
pub use evaluate::{highest_level_rank, Decision, DecisionKind};
pub use validate::RulesError;

use serde_json::Value;

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
}
