//! Structured logs: JSON in Lambda, readable text locally.

/// Installs the tracing subscriber once per process. `RUST_LOG` filters (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Set by the Lambda service only (not by `cargo lambda watch`): JSON there, text locally.
    let in_lambda = std::env::var("AWS_EXECUTION_ENV").is_ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    let _ = if in_lambda {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}
