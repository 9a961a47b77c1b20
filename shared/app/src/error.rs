//! The one place errors become the SPEC's error bodies.

use lambda_http::{Body, Response};
use serde_json::{json, Value};
use thiserror::Error;

use models::ModelError;
use store::StoreError;

#[derive(Debug, Error)]
pub enum AppError {
    #[error("access token is not valid")]
    InvalidAccessToken,
    #[error("timestamp is missing or outside the accepted window")]
    StaleTimestamp,
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("users not mapped to the approval system: {}", .0.join(", "))]
    UnmappedUser(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    /// A backend's route was called while the bridge runs the other backend.
    #[error("the {0} backend is not configured")]
    BackendNotConfigured(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("approval backend unavailable: {0}")]
    BackendUnavailable(String),
    #[error("admin token missing or not valid")]
    Unauthorized,
    /// The bridge's own settings are wrong (a `RULES_FILE` that does not validate): a 500 whose
    /// message is shown, since it names a setting and a rule, never a secret or an AWS detail.
    #[error("{0}")]
    Misconfigured(String),
    #[error("{0}")]
    Internal(String),
    /// DynamoDB failed; the cause (the SDK's error) is kept for the log, never shown.
    #[error("storage: {0}")]
    Storage(#[source] StoreError),
}

impl From<ModelError> for AppError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::InvalidJson(m) => {
                AppError::InvalidJson(format!("body is not valid JSON: {m}"))
            }
            other => AppError::InvalidField(other.to_string()),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooLarge(limit) => AppError::PayloadTooLarge(limit),
            other => AppError::Storage(other),
        }
    }
}

impl AppError {
    pub fn status(&self) -> u16 {
        match self {
            AppError::InvalidAccessToken | AppError::StaleTimestamp | AppError::Unauthorized => 401,
            AppError::InvalidJson(_) | AppError::InvalidField(_) => 400,
            AppError::UnmappedUser(_) => 422,
            AppError::NotFound(_) | AppError::BackendNotConfigured(_) => 404,
            AppError::Conflict(_) => 409,
            AppError::PayloadTooLarge(_) => 413,
            AppError::BackendUnavailable(_) => 502,
            AppError::Internal(_) | AppError::Storage(_) | AppError::Misconfigured(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidAccessToken => "InvalidAccessToken",
            AppError::StaleTimestamp => "StaleTimestamp",
            AppError::InvalidJson(_) => "InvalidJson",
            AppError::InvalidField(_) => "InvalidField",
            AppError::UnmappedUser(_) => "UnmappedUser",
            AppError::NotFound(_) | AppError::BackendNotConfigured(_) => "NotFound",
            AppError::Conflict(_) => "Conflict",
            AppError::PayloadTooLarge(_) => "PayloadTooLarge",
            AppError::BackendUnavailable(_) => "BackendUnavailable",
            AppError::Unauthorized => "Unauthorized",
            AppError::Internal(_) | AppError::Storage(_) | AppError::Misconfigured(_) => "Internal",
        }
    }

    /// Logs the error; for an `Internal` one returns the correlation id its log line carries. The
    /// detail (storage and SDK errors, which may name roles, accounts and tables) is only logged;
    /// secrets never reach an `AppError` message.
    fn log(&self) -> Option<String> {
        if self.is_hidden() {
            let id = correlation_id();
            let detail = with_causes(self);
            tracing::error!(error_code = self.code(), correlation_id = %id, error = %detail, "request failed");
            return Some(id);
        }
        if self.status() >= 500 {
            tracing::error!(error_code = self.code(), error = %self, "request failed");
        } else {
            tracing::info!(error_code = self.code(), error = %self, "request refused");
        }
        None
    }

    /// What callers are told: the message, except for `Internal` errors, which answer a generic
    /// text with the correlation id of the logged detail.
    fn public_message(&self, correlation: Option<&str>) -> String {
        match (self.is_hidden(), correlation) {
            (true, Some(id)) => format!("internal error (correlation id {id})"),
            (true, None) => "internal error".into(),
            (false, _) => self.to_string(),
        }
    }

    /// Errors whose detail (storage and SDK errors, which may name roles, accounts and tables)
    /// is logged but never shown.
    fn is_hidden(&self) -> bool {
        matches!(self, AppError::Internal(_) | AppError::Storage(_))
    }

    /// Dataphin-facing body (SPEC 4): camelCase.
    pub fn dataphin_body(&self) -> Value {
        self.dataphin_body_with(None)
    }

    fn dataphin_body_with(&self, correlation: Option<&str>) -> Value {
        let mut body = json!({"success": false, "errorCode": self.code(),
            "errorMessage": self.public_message(correlation)});
        if let AppError::UnmappedUser(users) = self {
            body["unmappedUsers"] = json!(users);
        }
        if let Some(id) = correlation {
            body["correlationId"] = json!(id);
        }
        body
    }

    /// Ops-facing body (SPEC 8): snake_case.
    pub fn ops_body(&self) -> Value {
        self.ops_body_with(None)
    }

    fn ops_body_with(&self, correlation: Option<&str>) -> Value {
        let mut body =
            json!({"error_code": self.code(), "error_msg": self.public_message(correlation)});
        if let Some(id) = correlation {
            body["correlation_id"] = json!(id);
        }
        body
    }

    /// Logs the error and returns the status and Dataphin-facing body (with the correlation id of
    /// an `Internal` error), for callers that add fields to it.
    pub fn into_dataphin_parts(self) -> (u16, Value) {
        let id = self.log();
        (self.status(), self.dataphin_body_with(id.as_deref()))
    }

    pub fn into_dataphin_response(self) -> Response<Body> {
        let (status, body) = self.into_dataphin_parts();
        crate::http::json_response(status, &body)
    }

    pub fn into_ops_response(self) -> Response<Body> {
        let id = self.log();
        crate::http::json_response(self.status(), &self.ops_body_with(id.as_deref()))
    }
}

/// An error and every cause under it, outermost first (`storage: DynamoDB: ...: ...`).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        // A message that already quotes its cause (`storage: DynamoDB: ...`) says it once.
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

/// 16 random hex characters naming one failure in the logs.
fn correlation_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_failure_keeps_its_cause_for_the_log_and_shows_none_of_it() {
        let cause = std::io::Error::other("connection reset by 10.0.0.7 (arn:aws:iam::123:role/x)");
        let e = AppError::from(StoreError::Dynamo {
            message: "InternalServerError: try again".into(),
            source: Some(Box::new(cause)),
        });
        assert_eq!((e.status(), e.code()), (500, "Internal"));
        let logged = with_causes(&e);
        assert!(
            logged
                .starts_with("storage: DynamoDB: InternalServerError: try again: connection reset"),
            "{logged}"
        );
        assert_eq!(logged.matches("InternalServerError").count(), 1, "{logged}");
        let body = e.dataphin_body_with(Some("c0ffee"));
        assert_eq!(
            body["errorMessage"],
            "internal error (correlation id c0ffee)"
        );
        assert!(!body.to_string().contains("arn:aws"), "{body}");
    }

    #[test]
    fn a_route_of_the_other_backend_is_not_found_by_name() {
        let e = AppError::BackendNotConfigured("webhook");
        assert_eq!((e.status(), e.code()), (404, "NotFound"));
        assert_eq!(
            e.ops_body()["error_msg"],
            "the webhook backend is not configured"
        );
    }
}
