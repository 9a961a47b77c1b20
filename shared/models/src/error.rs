use thiserror::Error;

/// Why a piece of domain input was refused. Every variant names the field at fault so that
/// the handlers can answer with an `errorMessage` a Dataphin administrator can act on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// The body is not JSON at all (or is truncated).
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// A field is missing, empty, of the wrong type or out of range.
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
}

impl ModelError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ModelError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The dotted path of the field at fault, if any.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            ModelError::InvalidField { field, .. } => Some(field),
            ModelError::InvalidJson(_) => None,
        }
    }
}
