//! Structured logs: JSON in Lambda, readable text locally.
//!
//! `RUST_LOG` chooses the bridge's own level, but the crates below it are capped at `info` whatever
//! it says: at `debug`/`trace` the Lambda runtime logs raw events (query strings with the access
//! token, `Authorization` headers) and the HTTP and AWS stacks log headers and bodies.

use tracing_subscriber::EnvFilter;

/// Crates never logged below `info`: the Lambda runtime, the HTTP stack, TLS and the AWS SDK.
pub const CAPPED_CRATES: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "reqwest",
    "rustls",
    "tower",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "aws_sdk_dynamodb",
    "aws_sdk_secretsmanager",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
];

/// The filter for a `RUST_LOG` value (default `info`): the directives it gives, minus any naming a
/// capped crate, plus `<crate>=info` for each capped crate (more specific than a bare level).
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    let capped = |target: &str| {
        CAPPED_CRATES
            .iter()
            .any(|c| target == *c || target.starts_with(&format!("{c}::")))
    };
    let mut directives: Vec<String> = rust_log
        .unwrap_or("info")
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| {
            // `target[span{field}]=level`, `target=level`, or a bare level.
            let target = d.split(['=', '[']).next().unwrap_or_default();
            !capped(target)
        })
        .map(str::to_owned)
        .collect();
    directives.extend(CAPPED_CRATES.iter().map(|c| format!("{c}=info")));
    EnvFilter::try_new(directives.join(",")).unwrap_or_else(|_| EnvFilter::new(cap_only("info")))
}

fn cap_only(level: &str) -> String {
    std::iter::once(level.to_owned())
        .chain(CAPPED_CRATES.iter().map(|c| format!("{c}=info")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Installs the tracing subscriber once per process, filtered by [`filter`] of `RUST_LOG`.
pub fn init() {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
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
