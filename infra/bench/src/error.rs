//! The one error type of the bench: every failure names what was being measured.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The local stack (dynalite, tables, fakes) could not be brought up.
    #[error("setup: {0}")]
    Setup(String),
    /// A spawned function did not start or answer as a Lambda function must; its output is in `log`.
    #[error("{binary}: {problem} (function output: {})", log.display())]
    Function {
        binary: String,
        problem: String,
        log: PathBuf,
    },
    /// A handler answered something other than what the measured operation must produce, so its
    /// timing would be meaningless.
    #[error("{operation}: {problem}")]
    WrongAnswer { operation: String, problem: String },
}

impl BenchError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}
