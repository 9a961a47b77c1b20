//! The local stack the bench measures against: dynalite, its tables, the sample environment of
//! `infra/local.env`, and a 200-answering stand-in for the BPM webhook and Dataphin's callback.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{Credentials, Region};
use axum::extract::State;
use axum::http::Uri;
use axum::Json;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::error::BenchError;

/// The workspace root (this crate lives in `infra/bench`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Tenant of the submission fixtures and the Dataphin users they name, with the backend ids they
/// map to (the same users the integration tests seed).
pub const TENANT: &str = "300073302";
pub const FIXTURE_USERS: [(&str, &str, &str, &str); 5] = [
    ("300000913", "0917452163-1398", "alice.wang", "dt-alice"),
    ("300000914", "0917452163-2044", "bob.li", "dt-bob"),
    ("300000920", "0917452163-3310", "carol.zhao", "dt-carol"),
    ("300000925", "0917452163-4471", "dave.sun", "dt-dave"),
    ("300000930", "0917452163-5000", "erin.sec", "dt-erin"),
];

/// A child process killed when the bench lets go of it, so no run leaves a server behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Dynalite {
    _child: ChildGuard,
    pub addr: SocketAddr,
}

impl Dynalite {
    /// Starts an in-memory dynalite on `port` and waits until it accepts connections.
    pub async fn start(binary: &Path, port: u16) -> Result<Dynalite, BenchError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect(addr).await.is_ok() {
            return Err(BenchError::Setup(format!(
                "port {port} is already taken; pass --dynamo-port"
            )));
        }
        let child = Command::new(binary)
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(BenchError::io(format!("start {}", binary.display())))?;
        let mut child = ChildGuard(child);
        let started = Instant::now();
        while TcpStream::connect(addr).await.is_err() {
            if let Ok(Some(status)) = child.0.try_wait() {
                return Err(BenchError::Setup(format!("dynalite exited: {status}")));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(BenchError::Setup(format!(
                    "dynalite did not listen on {addr} within 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Dynalite {
            _child: child,
            addr,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A DynamoDB client for a local endpoint, configured as the integration tests do.
pub fn dynamo_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "bench"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Creates both tables (the shipped schema) and maps the fixture users.
pub async fn prepare_tables(
    client: &aws_sdk_dynamodb::Client,
    tickets: &str,
    mappings: &str,
) -> Result<(), BenchError> {
    store::schema::create_tables(client, tickets, mappings)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let store = store::Store::new(client.clone(), tickets.into(), mappings.into());
    for (user_id, source, name, backend) in FIXTURE_USERS {
        store
            .put_mapping(&store::Mapping {
                tenant_id: TENANT.into(),
                user_id: user_id.into(),
                user_source_id: source.into(),
                user_name: name.into(),
                backend_user_id: backend.into(),
                backend_dept_id: Some("1001".into()),
            })
            .await
            .map_err(|e| BenchError::Setup(format!("seed mapping {user_id}: {e}")))?;
    }
    Ok(())
}

/// `KEY=VALUE` lines of an env file (comments and blank lines skipped), in file order.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(BenchError::io(format!("read {}", path.display())))?;
    Ok(parse_env(&text))
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Stand-in for the company BPM and for Dataphin's callback: answers every POST with 200 and a
/// fresh `instance_id`, counting requests by first path segment (`bpm`, `dataphin`).
pub struct Responder {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, u64>>>,
    server: JoinHandle<()>,
}

#[derive(Clone)]
struct ResponderState {
    counts: Arc<Mutex<HashMap<String, u64>>>,
    next_id: Arc<AtomicU64>,
}

impl Responder {
    pub async fn start() -> Result<Responder, BenchError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(BenchError::io("bind the BPM stand-in"))?;
        let addr = listener
            .local_addr()
            .map_err(BenchError::io("BPM stand-in address"))?;
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let state = ResponderState {
            counts: counts.clone(),
            next_id: Arc::new(AtomicU64::new(1)),
        };
        let router = axum::Router::new().fallback(answer).with_state(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Responder {
            addr,
            counts,
            server,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far on paths under `/{segment}`.
    pub fn count(&self, segment: &str) -> u64 {
        let counts = self.counts.lock().expect("responder lock");
        counts.get(segment).copied().unwrap_or_default()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(State(state): State<ResponderState>, uri: Uri) -> Json<Value> {
    let segment = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    *state
        .counts
        .lock()
        .expect("responder lock")
        .entry(segment)
        .or_default() += 1;
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    Json(json!({"success": true, "instance_id": format!("bpm-{n}")}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_keep_values_and_skip_comments() {
        let env = parse_env("# c\n\nBACKEND=webhook\nURL=http://h/p?a=b\n  RUST_LOG = info \n");
        assert_eq!(env["BACKEND"], "webhook");
        assert_eq!(env["URL"], "http://h/p?a=b");
        assert_eq!(env["RUST_LOG"], "info");
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn the_shipped_sample_env_names_the_backend_and_tables() {
        let env = read_env_file(&workspace_root().join("infra/local.env")).unwrap();
        for key in [
            "BACKEND",
            "TICKETS_TABLE",
            "USER_MAPPINGS_TABLE",
            "DATAPHIN_ACCESS_TOKEN",
        ] {
            assert!(env.contains_key(key), "local.env lacks {key}");
        }
    }
}
