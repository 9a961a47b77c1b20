//! Handler cost in process: the real `submit` and `query` handlers on an `App` built from the
//! sample environment, timed against dynalite directly and, separately, counted through the
//! counting proxy (so the proxy hop never inflates a timing).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use app::App;
use lambda_http::{Body, Request};
use serde_json::Value;

use crate::error::BenchError;
use crate::proxy::{self, CountingProxy, Counts};
use crate::stack::{self, Responder};

/// Runs of each operation through the counting proxy (the per-request figure is their mean).
const COUNTED_RUNS: usize = 3;

/// Two `App`s on the same tables: one timed (direct to dynalite), one counted (through the proxy).
pub struct Apps {
    pub timed: App,
    pub counted: App,
}

/// The environment of the sample stack (`infra/local.env`) with the bench's tables and stand-ins.
pub fn app_env(
    local: &BTreeMap<String, String>,
    tickets: &str,
    mappings: &str,
    responder: &Responder,
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = local.clone().into_iter().collect();
    env.insert("TICKETS_TABLE".into(), tickets.into());
    env.insert("USER_MAPPINGS_TABLE".into(), mappings.into());
    env.insert("BACKEND".into(), "webhook".into());
    env.insert("WEBHOOK_URL".into(), responder.url("/bpm/tickets"));
    env.insert(
        "DATAPHIN_CALLBACK_URL".into(),
        responder.url("/dataphin/callback"),
    );
    let rules = stack::workspace_root().join("infra/rules.sample.json");
    env.insert("RULES_FILE".into(), rules.display().to_string());
    env
}

impl Apps {
    pub fn build(
        env: &HashMap<String, String>,
        dynamo_endpoint: &str,
        proxy: &CountingProxy,
    ) -> Result<Apps, BenchError> {
        let build = |endpoint: &str| {
            let config =
                app::Config::from_source(env).map_err(|e| BenchError::Setup(e.to_string()))?;
            App::build(config, stack::dynamo_client(endpoint))
                .map_err(|e| BenchError::Setup(format!("build the app: {e}")))
        };
        Ok(Apps {
            timed: build(dynamo_endpoint)?,
            counted: build(&proxy.endpoint())?,
        })
    }
}

/// One measured operation.
#[derive(Debug, Clone)]
pub struct OpResult {
    pub name: String,
    pub samples: Vec<Duration>,
    /// DynamoDB requests per operation, by DynamoDB operation (mean over the counted runs).
    pub dynamo: BTreeMap<String, f64>,
    /// Requests per operation to the BPM webhook and to Dataphin's callback (means).
    pub bpm: f64,
    pub dataphin: f64,
    /// Bytes DynamoDB sent back per operation (mean over the counted runs).
    pub read_bytes: f64,
}

impl OpResult {
    pub fn dynamo_total(&self) -> f64 {
        self.dynamo.values().sum()
    }

    /// `GetItem 2, PutItem 1`.
    pub fn dynamo_breakdown(&self) -> String {
        self.dynamo
            .iter()
            .map(|(op, n)| format!("{op} {}", trim(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `2`, or `2.33` when the counted runs differed.
pub fn trim(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.2}")
    }
}

/// Counts `COUNTED_RUNS` runs of `op` on the counted app (runs `0..COUNTED_RUNS`), then times `n`
/// runs on the timed app (runs `COUNTED_RUNS..`). `op` gets a run number to make its input unique.
pub async fn measure(
    name: impl Into<String>,
    apps: &Apps,
    proxy: &CountingProxy,
    responder: &Responder,
    n: usize,
    mut op: impl AsyncFnMut(&App, usize) -> Result<(), BenchError>,
) -> Result<OpResult, BenchError> {
    let before = proxy.snapshot();
    let bytes_before = proxy.response_bytes();
    let (bpm, dataphin) = (responder.count("bpm"), responder.count("dataphin"));
    for run in 0..COUNTED_RUNS {
        op(&apps.counted, run).await?;
    }
    let calls: Counts = proxy::delta(&before, &proxy.snapshot());
    let read_bytes = (proxy.response_bytes() - bytes_before) as f64 / COUNTED_RUNS as f64;
    let per_run = |v: u64| v as f64 / COUNTED_RUNS as f64;
    let dynamo = calls.into_iter().map(|(k, v)| (k, per_run(v))).collect();
    let bpm = per_run(responder.count("bpm") - bpm);
    let dataphin = per_run(responder.count("dataphin") - dataphin);
    let mut samples = Vec::with_capacity(n);
    for run in COUNTED_RUNS..COUNTED_RUNS + n {
        let started = Instant::now();
        op(&apps.timed, run).await?;
        samples.push(started.elapsed());
    }
    Ok(OpResult {
        name: name.into(),
        samples,
        dynamo,
        bpm,
        dataphin,
        read_bytes,
    })
}

/// Sends one request to a function's handler as API Gateway would; returns status and JSON body.
pub async fn call(
    app: &App,
    function: Function,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Value), BenchError> {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path_and_query);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let body = if body.is_empty() {
        Body::Empty
    } else {
        Body::Binary(body.to_vec())
    };
    let req: Request = builder.body(body).map_err(|e| BenchError::WrongAnswer {
        operation: path_and_query.into(),
        problem: format!("request does not build: {e}"),
    })?;
    let resp = match function {
        Function::Submit => submit::handle(app, req).await,
        Function::Query => query::handle(app, req).await,
        Function::Callback => callback::handle(app, req).await,
    };
    let status = resp.status().as_u16();
    let bytes: &[u8] = match resp.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    let value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

#[derive(Debug, Clone, Copy)]
pub enum Function {
    Submit,
    Query,
    Callback,
}

/// Fails with the answer unless `ok` holds for it.
pub fn expect(
    operation: &str,
    answer: &(u16, Value),
    ok: impl FnOnce(&Value) -> bool,
) -> Result<(), BenchError> {
    if answer.0 == 200 && ok(&answer.1) {
        Ok(())
    } else {
        Err(BenchError::WrongAnswer {
            operation: operation.into(),
            problem: format!("answered {} {}", answer.0, answer.1),
        })
    }
}

/// Percent-encodes a query value (cursor tokens are base64 with `+`, `/`, `=`).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(encode("plain-1_2.3~"), "plain-1_2.3~");
    }

    #[test]
    fn counts_print_whole_when_every_run_agreed() {
        assert_eq!(trim(2.0), "2");
        assert_eq!(trim(7.0 / 3.0), "2.33");
    }
}
