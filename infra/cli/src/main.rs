//! `bridge`: operator commands that need the bridge's own definitions rather than a copy of them.
//!
//! - `bridge create-tables`: creates the tables of `infra/tables.json` (local stack, tests) under
//!   the names in `TICKETS_TABLE` and `USER_MAPPINGS_TABLE`, at the endpoint the AWS SDK is
//!   configured for (`AWS_ENDPOINT_URL_DYNAMODB` for a local server). Idempotent.
//! - `bridge validate-rules <file>`: validates a rules document (SPEC 6) exactly as `PUT /rules`
//!   does, for CI and before deploys.
//! - `bridge sandbox`: DingTalk, a company BPM and Dataphin on `SANDBOX_PORT` with a page and a
//!   JSON API to act as them (SPEC 11), configured by the bridge's own settings; `make dev` runs it.
//! - `bridge gateway <port> <cargo-lambda-port>`: API Gateway's stand-in in front of `cargo lambda
//!   watch` (`make dev`), routing by the root `Cargo.toml`'s router table; see `sandbox::gateway`.
//! - `bridge doctor [--env-file FILE] [--bridge-url URL]`: checks a setup (DingTalk app and
//!   template, event subscription, Dataphin callback, tables, rules, mappings) and prints a
//!   checklist; exits 1 if anything must be fixed. See `doctor.rs`.
//! - `bridge create-template [--env-file FILE] [--name NAME] [--process-code CODE]`: creates (or
//!   updates) a DingTalk approval template the bridge fills completely and prints its process
//!   code. See `template.rs`.

mod doctor;
mod template;

use std::io::IsTerminal;
use std::process::ExitCode;

use models::rules::{RulesDocument, RulesError};
use store::schema::{self, SchemaError};
use thiserror::Error;

const USAGE: &str = "usage: bridge create-tables | bridge validate-rules <file> | bridge sandbox | bridge gateway <port> <cargo-lambda-port> | bridge streams <table> <cargo-lambda-port> <data-dir> | bridge doctor [--env-file FILE] [--bridge-url URL] | bridge create-template [--env-file FILE] [--name NAME] [--process-code CODE]";

#[derive(Debug, Error)]
enum CliError {
    #[error("{USAGE}")]
    Usage,
    #[error("environment variable {0} is required")]
    MissingEnv(&'static str),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    InvalidRules { path: String, source: RulesError },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    SandboxConfig(#[from] sandbox::config::ConfigError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::server::SandboxError),
    #[error(transparent)]
    Gateway(#[from] sandbox::gateway::GatewayError),
    #[error("{0} is not a port number")]
    Port(String),
    #[error("{0}")]
    Template(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sandbox=info")),
        )
        .init();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["create-tables"] => create_tables(),
        ["validate-rules", path] => validate_rules(path),
        ["doctor", ref rest @ ..] => return run_doctor(rest),
        ["sandbox"] => run_sandbox(),
        ["gateway", port, upstream] => run_gateway(port, upstream),
        ["streams", table, port, data_dir] => run_streams(table, port, data_dir),
        ["create-template", ref rest @ ..] => create_template(rest),
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(CliError::Usage),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(err @ CliError::Usage) => {
            eprintln!("{err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn required_env(name: &'static str) -> Result<String, CliError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(CliError::MissingEnv(name)),
    }
}

fn create_tables() -> Result<String, CliError> {
    let tickets = required_env("TICKETS_TABLE")?;
    let user_mappings = required_env("USER_MAPPINGS_TABLE")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        schema::create_tables(&client, &tickets, &user_mappings).await
    })?;
    Ok(format!(
        "tables ready: tickets={tickets} user_mappings={user_mappings}"
    ))
}

fn create_template(args: &[&str]) -> Result<String, CliError> {
    let req =
        template::parse_args(args).map_err(|e| CliError::Template(format!("{e}\n{USAGE}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime
        .block_on(template::run(&req))
        .map_err(CliError::Template)
}

fn run_sandbox() -> Result<String, CliError> {
    let config = sandbox::config::SandboxConfig::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(sandbox::server::run(config))?;
    Ok("sandbox stopped".into())
}

/// The gateway on 127.0.0.1:`port`, in front of cargo lambda on 127.0.0.1:`upstream`, with the
/// router table of `Cargo.toml` in the working directory (the workspace root under `make dev`).
fn run_gateway(port: &str, upstream: &str) -> Result<String, CliError> {
    let number = |p: &str| p.parse::<u16>().map_err(|_| CliError::Port(p.to_owned()));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], number(port)?));
    let upstream = format!("http://127.0.0.1:{}", number(upstream)?);
    let manifest = std::fs::read_to_string("Cargo.toml").map_err(|source| CliError::Read {
        path: "Cargo.toml".into(),
        source,
    })?;
    let routes = sandbox::gateway::routes_from_manifest(&manifest)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(sandbox::gateway::run(addr, upstream, routes))?;
    Ok("gateway stopped".into())
}

/// `make dev`'s stand-in of the dispatch function's `TicketStream` event source mapping: the
/// tickets table's stream records (written by the local DynamoDB into DATA_DIR/streams) handed to
/// `dispatch` through cargo lambda's invoke API on 127.0.0.1:PORT, with the template's filter,
/// retries and dead-letter destination (DATA_DIR/dead-letters.jsonl).
fn run_streams(table: &str, port: &str, data_dir: &str) -> Result<String, CliError> {
    let port = port
        .parse::<u16>()
        .map_err(|_| CliError::Port(port.to_owned()))?;
    let dir = std::path::Path::new(data_dir);
    let mut mapping = sandbox::streams::Mapping::new(&app::stream::FILTER_PATTERNS, "dispatch");
    mapping.dead_letters = Some(dir.join("dead-letters.jsonl"));
    let invoke = sandbox::streams::http_invoke(
        format!("http://127.0.0.1:{port}"),
        "dispatch".into(),
        std::time::Duration::from_secs(120),
    );
    let runner = sandbox::streams::StreamRunner::new(
        dir.join("streams").join(format!("{table}.jsonl")),
        Some(dir.join("streams").join(format!("{table}.checkpoint"))),
        mapping,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(runner.run(std::time::Duration::from_millis(20), invoke));
    Ok("stream runner stopped".into())
}

fn validate_rules(path: &str) -> Result<String, CliError> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })?;
    let document = RulesDocument::parse(&bytes).map_err(|source| CliError::InvalidRules {
        path: path.to_owned(),
        source,
    })?;
    Ok(format!("OK: {path}: {} rules", document.rules.len()))
}

/// Prints the checklist; exit 1 when any check must be fixed, 2 on bad arguments.
fn run_doctor(args: &[&str]) -> ExitCode {
    let mut opts = doctor::Options {
        env_file: std::env::var("BRIDGE_ENV_FILE")
            .ok()
            .filter(|f| !f.is_empty()),
        bridge_url: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (*arg, it.next()) {
            ("--env-file", Some(v)) => opts.env_file = Some((*v).to_owned()),
            ("--bridge-url", Some(v)) => opts.bridge_url = Some((*v).to_owned()),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", CliError::Runtime(e));
            return ExitCode::FAILURE;
        }
    };
    let checks = runtime.block_on(doctor::run(&opts));
    for check in &checks {
        println!("{check}");
    }
    let failed = checks
        .iter()
        .filter(|c| matches!(c.outcome, doctor::Outcome::Fix(_)))
        .count();
    if failed == 0 {
        println!("bridge doctor: all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("bridge doctor: {failed} check(s) to fix");
        ExitCode::FAILURE
    }
}
