//! Cold start of a function binary under the Runtime API emulator: spawn → first `next` poll
//! (init), spawn → first response (cold request), then warm round trips and peak memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::BenchError;
use crate::runtime::{http_api_event, Outcome, RuntimeApi};
use crate::stack::ChildGuard;

/// How long one invocation (the cold one included) may take before the run counts as failed.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What a correct answer looks like, so a fast failure is never measured as a fast success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Status 200 and the body `{}` (the baseline).
    EmptyObject,
    /// Status 200 and `checkResult: success` (Dataphin's Test Connection).
    ConnectSuccess,
}

/// A function binary and the environment Lambda would give it.
pub struct Target {
    pub name: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub access_token: String,
    pub expect: Expect,
}

#[derive(Debug, Clone)]
pub struct ColdRun {
    /// Spawn → first `GET /invocation/next`.
    pub init: Duration,
    /// Spawn → response of the first invocation (queued before the spawn, as Lambda does).
    pub cold: Duration,
    /// Queue → response, for each warm invocation.
    pub warm: Vec<Duration>,
    /// `VmHWM` (peak resident set) after the run, in KiB.
    pub peak_rss_kib: u64,
}

impl Target {
    /// The measured request: Dataphin's Test Connection with a fresh timestamp.
    fn event(&self, request_id: &str) -> Value {
        http_api_event(
            request_id,
            "POST",
            "/dataphin/bpms/check/connect",
            &[
                ("accessToken", self.access_token.clone()),
                ("timestamp", app::http::now_ms().to_string()),
            ],
        )
    }

    fn failure(&self, log: &Path, problem: impl Into<String>) -> BenchError {
        BenchError::Function {
            binary: self.binary.display().to_string(),
            problem: problem.into(),
            log: log.to_path_buf(),
        }
    }

    fn check(&self, log: &Path, outcome: Outcome) -> Result<(), BenchError> {
        let bytes = match outcome {
            Outcome::Response(b) => b,
            Outcome::Error(e) => return Err(self.failure(log, format!("invocation error: {e}"))),
        };
        let reply: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.failure(log, format!("response is not JSON ({e})")))?;
        let status = reply["statusCode"].as_u64();
        let body: Value = reply["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        let ok = status == Some(200)
            && match self.expect {
                Expect::EmptyObject => body == serde_json::json!({}),
                Expect::ConnectSuccess => body["checkResult"] == "success",
            };
        if ok {
            Ok(())
        } else {
            Err(self.failure(log, format!("unexpected answer {reply}")))
        }
    }
}

/// One cold start followed by `warm` warm invocations. The function's stdout and stderr go to a
/// log file in `log_dir`, named in any error.
pub async fn run_once(
    target: &Target,
    warm: usize,
    log_dir: &Path,
    run: usize,
) -> Result<ColdRun, BenchError> {
    let api = RuntimeApi::start().await?;
    let log = log_dir.join(format!("{}-{run}.log", target.name));
    let out = File::create(&log).map_err(BenchError::io(format!("create {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(BenchError::io(format!("open {}", log.display())))?;
    let mut command = Command::new(&target.binary);
    command
        .env_clear()
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", api.host_port())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let first = api.invoke("cold-0", target.event("cold-0"));
    let spawned = Instant::now();
    let child = command
        .spawn()
        .map_err(BenchError::io(format!("spawn {}", target.binary.display())))?;
    let mut child = ChildGuard(child);
    let outcome = wait(target, &api, &mut child, &log, first).await?;
    let cold = spawned.elapsed();
    target.check(&log, outcome)?;
    let init = api
        .first_poll()
        .map(|t| t.duration_since(spawned))
        .ok_or_else(|| target.failure(&log, "answered without polling next"))?;
    let mut warm_samples = Vec::with_capacity(warm);
    for i in 0..warm {
        let id = format!("warm-{i}");
        let event = target.event(&id);
        let started = Instant::now();
        let rx = api.invoke(&id, event);
        let outcome = wait(target, &api, &mut child, &log, rx).await?;
        warm_samples.push(started.elapsed());
        target.check(&log, outcome)?;
    }
    let peak_rss_kib = peak_rss_kib(child.0.id())
        .ok_or_else(|| target.failure(&log, "no VmHWM in /proc/<pid>/status"))?;
    Ok(ColdRun {
        init,
        cold,
        warm: warm_samples,
        peak_rss_kib,
    })
}

async fn wait(
    target: &Target,
    api: &RuntimeApi,
    child: &mut ChildGuard,
    log: &Path,
    rx: oneshot::Receiver<Outcome>,
) -> Result<Outcome, BenchError> {
    match tokio::time::timeout(INVOCATION_TIMEOUT, rx).await {
        Ok(Ok(outcome)) => Ok(outcome),
        _ => {
            let exited = child.0.try_wait().ok().flatten();
            let problem = match (exited, api.init_error()) {
                (_, Some(e)) => format!("init error: {e}"),
                (Some(status), None) => format!("exited ({status}) before answering"),
                (None, None) => format!("no answer within {INVOCATION_TIMEOUT:?}"),
            };
            Err(target.failure(log, problem))
        }
    }
}

/// Peak resident set size of a live process, from `/proc/<pid>/status`.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
