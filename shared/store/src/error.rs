use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A conditional write lost against a concurrent writer: re-read and try again.
    #[error("concurrent update")]
    Conflict,
    /// DynamoDB throttled the request; a retry later completes it.
    #[error("table throttled: {0}")]
    Throttled(String),
    #[error("DynamoDB: {0}")]
    Dynamo(String),
    /// The submission does not fit in a DynamoDB item even compressed.
    #[error("submission exceeds {0} bytes once compressed")]
    TooLarge(usize),
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn from_sdk<E, R>(err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
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
            "" => StoreError::Dynamo(format!("{err:?}").chars().take(300).collect()),
            _ => StoreError::Dynamo(format!("{code}: {message}")),
        }
    }
}
