//! A Dataphin approval submission (seed 004 body), validated and parsed.
//!
//! Validation refuses what the bridge cannot act on (no applicant, no approvers, an unknown
//! node relation, content that claims to be JSON and is not) and names the field at fault;
//! everything else is taken leniently, and the body is kept as received so that unknown
//! fields reach the backend and the ticket unchanged.

use serde_json::{Map, Value};

use crate::bounds::{
    check_id, check_len, MAX_DISTINCT_USERS, MAX_NAME_CHARS, MAX_NODES, MAX_TITLE_CHARS,
    MAX_USERS_PER_NODE,
};
use crate::content::Content;
use crate::error::ModelError;
use crate::facts::Facts;
use crate::status::Relation;

/// The `type` values Dataphin documents; anything else is handled as `DEFAULT`.
pub const SUBMISSION_TYPES: [&str; 6] = [
    "AUTH",
    "CODE_REVIEW",
    "PUBLISH",
    "BIZ_PLANNING",
    "DEFAULT",
    "STANDARD_APPROVAL",
];

/// A Dataphin user: applicant or approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    /// Id in Dataphin.
    pub user_id: String,
    /// Id in the source account system (what user mappings are keyed on).
    pub user_source_id: String,
    pub user_name: String,
}

impl UserRef {
    /// `userName (userId)`, or the id alone when there is no name.
    pub fn label(&self) -> String {
        if self.user_name.trim().is_empty() {
            self.user_id.clone()
        } else {
            format!("{} ({})", self.user_name, self.user_id)
        }
    }
}

/// One approval node of the submitted flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproveNode {
    pub order: u32,
    pub users: Vec<UserRef>,
    pub relation: Relation,
}

/// A validated submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub apply_id: String,
    /// `applyUser`: the applicant's source-system id as sent (may be empty).
    pub apply_user: String,
    pub applicant: UserRef,
    pub title: String,
    pub content: Content,
    pub tenant_id: String,
    /// `AUTH`, `CODE_REVIEW`, `PUBLISH`, `BIZ_PLANNING`, `DEFAULT` or `STANDARD_APPROVAL`.
    pub submission_type: String,
    pub template_code: String,
    /// Sorted by `order`.
    pub approve_nodes: Vec<ApproveNode>,
    raw: Map<String, Value>,
}

impl Submission {
    /// Parses and validates a create body.
    pub fn parse(body: &[u8]) -> Result<Submission, ModelError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ModelError::InvalidJson(e.to_string()))?;
        Submission::from_value(value)
    }

    /// Validates an already-decoded body.
    pub fn from_value(value: Value) -> Result<Submission, ModelError> {
        let Value::Object(raw) = value else {
            return Err(ModelError::field(
                "body",
                format!("must be a JSON object, found {}", kind(&value)),
            ));
        };
        let apply_id = required_id(&raw, "applyId")?;
        check_id("applyId", &apply_id)?;
        let tenant_id = required_id(&raw, "tenantId")?;
        check_id("tenantId", &tenant_id)?;
        let apply_user = optional_text(&raw, "applyUser")?;
        let applicant = applicant(&raw, &apply_user)?;
        let title = optional_text(&raw, "title")?;
        check_len("title", &title, MAX_TITLE_CHARS)?;
        let template_code = optional_text(&raw, "templateCode")?;
        let submission_type = normalize_type(&optional_text(&raw, "type")?);
        let approve_nodes = approve_nodes(&raw)?;
        check_distinct_users(&applicant, &approve_nodes)?;
        let content = match raw.get("content") {
            None | Some(Value::Null) => Content::FreeText(String::new()),
            Some(Value::String(text)) => Content::from_text(text, &submission_type)?,
            Some(v @ (Value::Object(_) | Value::Array(_))) => {
                Content::from_json(v.clone(), &submission_type)
            }
            Some(other) => {
                return Err(ModelError::field(
                    "content",
                    format!("must be a string or a JSON object, found {}", kind(other)),
                ))
            }
        };
        Ok(Submission {
            apply_id,
            apply_user,
            applicant,
            title,
            content,
            tenant_id,
            submission_type,
            template_code,
            approve_nodes,
            raw,
        })
    }

    /// The submission as received: unknown fields kept, `content` in its original form.
    pub fn to_value(&self) -> Value {
        Value::Object(self.raw.clone())
    }

    /// The values auto-approval rules are tested on.
    pub fn facts(&self) -> Facts {
        let content = &self.content;
        Facts {
            scenario: content.scenario(),
            submission_type: self.submission_type.clone(),
            resource_type: content.resource_type().map(str::to_owned),
            operations: content.operations(),
            env: content.env().map(str::to_owned),
            project: content.project().map(str::to_owned),
            security_levels: content.security_levels(),
            periods: content.periods(),
            parsed: content.is_parsed(),
        }
    }

    /// The applicant first, then every approver in node order (as listed, repeats included).
    pub fn users(&self) -> Vec<&UserRef> {
        std::iter::once(&self.applicant)
            .chain(self.approve_nodes.iter().flat_map(|n| n.users.iter()))
            .collect()
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// An id that must be present and non-empty; Dataphin ids are strings, numbers are accepted.
fn required_id(object: &Map<String, Value>, field: &str) -> Result<String, ModelError> {
    let text = match object.get(field) {
        None | Some(Value::Null) => return Err(ModelError::field(field, "is required")),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(ModelError::field(
                field,
                format!("must be a string, found {}", kind(other)),
            ))
        }
    };
    if text.is_empty() {
        return Err(ModelError::field(field, "must not be empty"));
    }
    Ok(text)
}

/// A string that may be absent or null (read as empty) but not of another type.
fn optional_text(object: &Map<String, Value>, field: &str) -> Result<String, ModelError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if field != "title" => Ok(n.to_string()),
        Some(other) => Err(ModelError::field(
            field,
            format!("must be a string, found {}", kind(other)),
        )),
    }
}

fn normalize_type(given: &str) -> String {
    let upper = given.trim().to_ascii_uppercase();
    if SUBMISSION_TYPES.contains(&upper.as_str()) {
        upper
    } else {
        "DEFAULT".to_owned()
    }
}

fn applicant(raw: &Map<String, Value>, apply_user: &str) -> Result<UserRef, ModelError> {
    let info = match raw.get("applyUserInfo") {
        Some(Value::Object(info)) => info,
        None | Some(Value::Null) => {
            return Err(ModelError::field(
                "applyUserInfo",
                "the applicant is required",
            ))
        }
        Some(other) => {
            return Err(ModelError::field(
                "applyUserInfo",
                format!("must be an object, found {}", kind(other)),
            ))
        }
    };
    let mut user = user_ref(info, "applyUserInfo")?;
    if user.user_source_id.is_empty() {
        user.user_source_id = apply_user.trim().to_owned();
        check_id("applyUser", &user.user_source_id)?;
    }
    Ok(user)
}

fn user_ref(object: &Map<String, Value>, path: &str) -> Result<UserRef, ModelError> {
    let user_id = required_id(object, "userId").map_err(|e| prefixed(e, path))?;
    let user_source_id = optional_text(object, "userSourceId").map_err(|e| prefixed(e, path))?;
    let user_name = optional_text(object, "userName").map_err(|e| prefixed(e, path))?;
    let user_source_id = user_source_id.trim().to_owned();
    check_id("userId", &user_id).map_err(|e| prefixed(e, path))?;
    check_id("userSourceId", &user_source_id).map_err(|e| prefixed(e, path))?;
    check_len("userName", &user_name, MAX_NAME_CHARS).map_err(|e| prefixed(e, path))?;
    Ok(UserRef {
        user_id,
        user_source_id,
        user_name,
    })
}

fn prefixed(error: ModelError, path: &str) -> ModelError {
    match error {
        ModelError::InvalidField { field, message } => ModelError::InvalidField {
            field: format!("{path}.{field}"),
            message,
        },
        other => other,
    }
}

fn approve_nodes(raw: &Map<String, Value>) -> Result<Vec<ApproveNode>, ModelError> {
    let nodes = match raw.get("approveNodes") {
        Some(Value::Array(nodes)) => nodes,
        None | Some(Value::Null) => {
            return Err(ModelError::field(
                "approveNodes",
                "at least one approval node is required",
            ))
        }
        Some(other) => {
            return Err(ModelError::field(
                "approveNodes",
                format!("must be a list of approval nodes, found {}", kind(other)),
            ))
        }
    };
    if nodes.is_empty() {
        return Err(ModelError::field(
            "approveNodes",
            "at least one approval node is required",
        ));
    }
    if nodes.len() > MAX_NODES {
        return Err(ModelError::field(
            "approveNodes",
            format!(
                "has {} approval nodes; at most {MAX_NODES} are allowed",
                nodes.len()
            ),
        ));
    }
    let mut parsed = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| approve_node(i, node))
        .collect::<Result<Vec<_>, _>>()?;
    // Stable: nodes with equal orders keep the order Dataphin listed them in.
    parsed.sort_by_key(|n| n.order);
    Ok(parsed)
}

fn approve_node(index: usize, node: &Value) -> Result<ApproveNode, ModelError> {
    let path = format!("approveNodes[{index}]");
    let Value::Object(node) = node else {
        return Err(ModelError::field(
            path,
            format!("must be an object, found {}", kind(node)),
        ));
    };
    let users_path = format!("{path}.approveUsers");
    let users = match node.get("approveUsers") {
        Some(Value::Array(users)) if !users.is_empty() => users,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err(ModelError::field(
                users_path,
                "at least one approver is required",
            ))
        }
        Some(other) => {
            return Err(ModelError::field(
                users_path,
                format!("must be a list of approvers, found {}", kind(other)),
            ))
        }
    };
    if users.len() > MAX_USERS_PER_NODE {
        return Err(ModelError::field(
            users_path,
            format!(
                "has {} approvers; at most {MAX_USERS_PER_NODE} are allowed in a node",
                users.len()
            ),
        ));
    }
    let users = users
        .iter()
        .enumerate()
        .map(|(j, user)| {
            let user_path = format!("{users_path}[{j}]");
            match user {
                Value::Object(user) => user_ref(user, &user_path),
                other => Err(ModelError::field(
                    user_path,
                    format!("must be an object, found {}", kind(other)),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;

    let order_path = format!("{path}.approveOrder");
    let order = match node.get("approveOrder") {
        // Dataphin always sends it; without one the node keeps its place in the list.
        None | Some(Value::Null) => u32::try_from(index + 1).unwrap_or(u32::MAX),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| {
            ModelError::field(&order_path, format!("must be a number, found \"{s}\""))
        })?,
        Some(Value::Number(n)) => {
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ModelError::field(&order_path, format!("must be a whole number, found {n}"))
                })?
        }
        Some(other) => {
            return Err(ModelError::field(
                order_path,
                format!("must be a number, found {}", kind(other)),
            ))
        }
    };

    let operator_path = format!("{path}.approveOperator");
    let relation = match node.get("approveOperator") {
        Some(Value::String(op)) => Relation::from_dataphin(op.trim()).ok_or_else(|| {
            ModelError::field(
                &operator_path,
                format!("unknown approveOperator \"{op}\", expected OR or AND"),
            )
        })?,
        // With one approver OR and AND mean the same; with several the relation matters.
        None | Some(Value::Null) if users.len() == 1 => Relation::Or,
        None | Some(Value::Null) => {
            return Err(ModelError::field(
                operator_path,
                "is required (OR or AND) for a node with several approvers",
            ))
        }
        Some(other) => {
            return Err(ModelError::field(
                operator_path,
                format!("must be OR or AND, found {}", kind(other)),
            ))
        }
    };
    Ok(ApproveNode {
        order,
        users,
        relation,
    })
}

/// At most [`MAX_DISTINCT_USERS`] different users (by `userId`) in one submission, applicant included:
/// each is a mapping to resolve and a person on the ticket.
fn check_distinct_users(applicant: &UserRef, nodes: &[ApproveNode]) -> Result<(), ModelError> {
    let distinct: std::collections::HashSet<&str> = std::iter::once(applicant)
        .chain(nodes.iter().flat_map(|n| n.users.iter()))
        .map(|u| u.user_id.as_str())
        .collect();
    if distinct.len() > MAX_DISTINCT_USERS {
        return Err(ModelError::field(
            "approveNodes",
            format!(
                "names {} distinct users (applicant included); at most {MAX_DISTINCT_USERS} are allowed",
                distinct.len()
            ),
        ));
    }
    Ok(())
}
