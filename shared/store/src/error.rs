use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A conditional write lost against a concurrent writer: re-read and try again.
    #[error("concurrent update")]
    Conflict,
    /// DynamoDB throttled the request; a retry later completes it.
    #[error("table throttled: {0}")]
    Throttled(String),
    /// DynamoDB refused the request or could not be reached; the SDK's error is kept as the cause.
    #[error("DynamoDB: {message}")]
    Dynamo {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A request the store built is invalid (a missing required field): a bug, kept with its cause.
    #[error("DynamoDB request: {0}")]
    Request(#[from] aws_sdk_dynamodb::error::BuildError),
    /// The submission does not fit in a DynamoDB item even compressed.
    #[error("submission exceeds {0} bytes once compressed")]
    TooLarge(usize),
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn from_sdk<E, R>(err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let code = err.code().unwrap_or_default().to_string();
        let message = err
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{err}"));
        match code.as_str() {
            "ConditionalCheckFailedException" => StoreError::Conflict,
            // A transaction names why it was cancelled, one reason per action: a failed
            // condition is a lost race (re-read and fold again, or: the ticket exists); a
            // concurrent transaction on one of its items (two status changes of one tenant moving
            // its counters at once) or throttling is retried like throttling.
            "TransactionCanceledException" if message.contains("ConditionalCheckFailed") => {
                StoreError::Conflict
            }
            "TransactionCanceledException" | "TransactionConflictException" => {
                StoreError::Throttled(message)
            }
            "TransactionInProgressException" => StoreError::Throttled(message),
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded" => StoreError::Throttled(message),
            // No code: the request never got an answer (timeout, connection refused).
            "" => StoreError::Dynamo {
                message: DisplayErrorContext(&err)
                    .to_string()
                    .chars()
                    .take(300)
                    .collect(),
                source: Some(Box::new(err)),
            },
            _ => StoreError::Dynamo {
                message: format!("{code}: {message}"),
                source: Some(Box::new(err)),
            },
        }
    }
}
