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
        if let StoreError::TooLarge(limit) = e {
            return AppError::PayloadTooLarge(limit);
        }
        AppError::Internal(format!("storage: {e}"))
    }
}

impl AppError {
    pub fn status(&self) -> u16 {
        match self {
            AppError::InvalidAccessToken | AppError::StaleTimestamp | AppError::Unauthorized => 401,
            AppError::InvalidJson(_) | AppError::InvalidField(_) => 400,
            AppError::UnmappedUser(_) => 422,
            AppError::NotFound(_) => 404,
            AppError::Conflict(_) => 409,
            AppError::PayloadTooLarge(_) => 413,
            AppError::BackendUnavailable(_) => 502,
            AppError::Internal(_) | AppError::Misconfigured(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidAccessToken => "InvalidAccessToken",
            AppError::StaleTimestamp => "StaleTimestamp",
            AppError::InvalidJson(_) => "InvalidJson",
            AppError::InvalidField(_) => "InvalidField",
            AppError::UnmappedUser(_) => "UnmappedUser",
            AppError::NotFound(_) => "NotFound",
            AppError::Conflict(_) => "Conflict",
            AppError::PayloadTooLarge(_) => "PayloadTooLarge",
            AppError::BackendUnavailable(_) => "BackendUnavailable",
            AppError::Unauthorized => "Unauthorized",
            AppError::Internal(_) | AppError::Misconfigured(_) => "Internal",
        }
    }

    /// Logs the error; for an `Internal` one returns the correlation id its log line carries. The
    /// detail (storage and SDK errors, which may name roles, accounts and tables) is only logged;
    /// secrets never reach an `AppError` message.
    fn log(&self) -> Option<String> {
        if let AppError::Internal(detail) = self {
            let id = correlation_id();
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
        match (self, correlation) {
            (AppError::Internal(_), Some(id)) => {
                format!("internal error (correlation id {id})")
            }
            (AppError::Internal(_), None) => "internal error".into(),
            _ => self.to_string(),
        }
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

/// 16 random hex characters naming one failure in the logs.
fn correlation_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

pub type AppResult<T> = Result<T, AppError>;
