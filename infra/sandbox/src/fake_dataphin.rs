//! A fake Dataphin result-callback receiver (SPEC 5) on 127.0.0.1.
//!
//! It checks what a real receiver depends on and records what it got: the signature with the Access
//! Token, decryption with the Encoding AES Key, the owner key equal to the document's `tenantId`, the
//! document's shape, and `version` never going backwards per `processInstanceId`. Requests it cannot
//! authenticate are *rejections* (a wrong key or token is a configuration problem the bridge must survive);
//! authenticated requests that break the contract are *violations* (a bridge bug, tests assert there are
//! none).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use crypto::MessageCrypto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The path of Dataphin's Callback URL (seed 000).
pub const CALLBACK_PATH: &str = "/api/oa/bpms/integration/thirdparty/callback";

/// How far the callback's `timestamp` may be from this machine's clock before it counts as a violation
/// (it must be milliseconds of the sending time).
const TIMESTAMP_TOLERANCE_MS: i64 = 10 * 60 * 1000;

const STATUSES: [&str; 5] = ["PENDING", "APPROVED", "REJECTED", "WITHDRAWN", "EXPIRED"];

/// A running fake; the server stops when this is dropped.
pub struct FakeDataphin {
    base_url: String,
    state: Arc<Mutex<DataphinState>>,
    task: JoinHandle<()>,
    /// The same route and state, for `bridge sandbox` to mount on its own port.
    router: Router,
}

#[derive(Default)]
struct DataphinState {
    access_token: String,
    aes_key: String,
    down: bool,
    fail_next: u32,
    delay: Duration,
    attempts: u64,
    documents: Vec<Value>,
    rejections: Vec<String>,
    violations: Vec<String>,
    last_version: HashMap<String, i64>,
}

impl Drop for FakeDataphin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDataphin {
    /// Starts a receiver that expects callbacks signed with `access_token` and encrypted with `aes_key`.
    pub async fn start(access_token: &str, aes_key: &str) -> FakeDataphin {
        MessageCrypto::new(access_token, aes_key, "").expect("fake Dataphin needs a valid AES key");
        let state = Arc::new(Mutex::new(DataphinState {
            access_token: access_token.to_owned(),
            aes_key: aes_key.to_owned(),
            ..DataphinState::default()
        }));
        let app = Router::new()
            .route(CALLBACK_PATH, post(receive))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let router = app.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake Dataphin serves");
        });
        FakeDataphin {
            base_url: format!("http://{addr}"),
            state,
            task,
            router,
        }
    }

    fn lock(&self) -> MutexGuard<'_, DataphinState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The Callback URL to configure as `DATAPHIN_CALLBACK_URL`.
    pub fn url(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.base_url)
    }

    /// While down, every request is answered 503 and nothing is recorded.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The receiver's route ([`CALLBACK_PATH`]) on its state, for `bridge sandbox` to mount on its
    /// own port.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The next `n` requests are answered 500 and not recorded.
    pub fn fail_next(&self, n: u32) {
        self.lock().fail_next = n;
    }

    /// Wait this long before answering (to exercise the sender's timeout).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Every request received, including refused and failed ones.
    pub fn attempts(&self) -> u64 {
        self.lock().attempts
    }

    /// Every accepted document, in arrival order (repeats included).
    pub fn documents(&self) -> Vec<Value> {
        self.lock().documents.clone()
    }

    /// Accepted documents of one ticket, in arrival order.
    pub fn documents_for(&self, process_instance_id: &str) -> Vec<Value> {
        self.lock()
            .documents
            .iter()
            .filter(|d| d["processInstanceId"] == process_instance_id)
            .cloned()
            .collect()
    }

    /// The document with the highest `version` received for a ticket (the last of equals).
    pub fn latest(&self, process_instance_id: &str) -> Option<Value> {
        self.documents_for(process_instance_id)
            .into_iter()
            .rev()
            .max_by_key(|d| d["version"].as_i64().unwrap_or(i64::MIN))
    }

    /// Requests refused because they did not authenticate (bad signature, undecryptable).
    pub fn rejections(&self) -> Vec<String> {
        self.lock().rejections.clone()
    }

    /// Contract breaches by an authenticated sender: wrong owner, bad document, version going back.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Waits until `pred` holds on the accepted documents; false if `timeout` passes first.
    pub async fn wait_for(&self, pred: impl Fn(&[Value]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.lock().documents) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn reply(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"success": status.is_success(), "message": message})),
    )
        .into_response()
}

async fn receive(
    State(state): State<Arc<Mutex<DataphinState>>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let delay = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.attempts += 1;
        s.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if s.down {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "down");
    }
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose");
    }
    match check(&s, &query, &body) {
        Err(Refusal::Rejected(why)) => {
            s.rejections.push(why.clone());
            reply(StatusCode::UNAUTHORIZED, &why)
        }
        Err(Refusal::Violation(why)) => {
            s.violations.push(why.clone());
            reply(StatusCode::BAD_REQUEST, &why)
        }
        Ok(document) => {
            let ticket = document["processInstanceId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let version = document["version"].as_i64().unwrap_or_default();
            let last = s.last_version.entry(ticket.clone()).or_insert(version);
            if version < *last {
                let why = format!("{ticket}: version went back from {last} to {version}");
                s.violations.push(why);
            } else {
                *last = version;
            }
            s.documents.push(document);
            reply(StatusCode::OK, "ok")
        }
    }
}

enum Refusal {
    Rejected(String),
    Violation(String),
}

/// Authenticates and decrypts one callback, then checks its contract.
fn check(
    s: &DataphinState,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<Value, Refusal> {
    use Refusal::{Rejected, Violation};
    let param = |name: &str| {
        query
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Violation(format!("query parameter {name} missing")))
    };
    let (signature, timestamp, nonce) = (param("signature")?, param("timestamp")?, param("nonce")?);
    let envelope: Value =
        serde_json::from_slice(body).map_err(|e| Violation(format!("body is not JSON: {e}")))?;
    let encrypt = envelope["encrypt"]
        .as_str()
        .ok_or_else(|| Violation("body has no encrypt string".to_owned()))?;
    if envelope.as_object().is_some_and(|o| o.len() != 1) {
        return Err(Violation(format!(
            "body has fields besides encrypt: {envelope}"
        )));
    }

    let crypto = MessageCrypto::new(&s.access_token, &s.aes_key, "").expect("checked at start");
    crypto
        .verify_signature(signature, timestamp, nonce, encrypt)
        .map_err(|e| Rejected(format!("signature: {e}")))?;
    let frame = crypto
        .decrypt_frame(encrypt)
        .map_err(|e| Rejected(format!("decrypt: {e}")))?;

    let sent_ms: i64 = timestamp
        .parse()
        .map_err(|_| Violation(format!("timestamp {timestamp:?} is not milliseconds")))?;
    if (sent_ms - now_ms()).abs() > TIMESTAMP_TOLERANCE_MS {
        return Err(Violation(format!(
            "timestamp {timestamp} is not the current time in milliseconds"
        )));
    }
    let document: Value = serde_json::from_slice(&frame.message)
        .map_err(|e| Violation(format!("plaintext is not JSON: {e}")))?;
    let owner = String::from_utf8_lossy(&frame.owner);
    if document["tenantId"].as_str() != Some(owner.as_ref()) {
        return Err(Violation(format!(
            "owner key {owner:?} is not the document's tenantId {}",
            document["tenantId"]
        )));
    }
    check_document(&document).map_err(Violation)?;
    Ok(document)
}

/// The fields SPEC 5 promises, with their types (`reason` may be null while nothing was decided).
fn check_document(d: &Value) -> Result<(), String> {
    for field in ["applyId", "tenantId", "processInstanceId"] {
        if !d[field].is_string() {
            return Err(format!("{field} is not a string in {d}"));
        }
    }
    if !(d["reason"].is_string() || d["reason"].is_null()) {
        return Err(format!("reason is not a string in {d}"));
    }
    let status = d["status"].as_str().unwrap_or_default();
    if !STATUSES.contains(&status) {
        return Err(format!("status {} is not a Dataphin status", d["status"]));
    }
    if !d["version"].is_i64() {
        return Err(format!("version {} is not an integer", d["version"]));
    }
    let finish = &d["finishTime"];
    if status == "PENDING" && !finish.is_null() {
        return Err(format!("PENDING with finishTime {finish}"));
    }
    if status != "PENDING" && !finish.is_i64() {
        return Err(format!(
            "{status} with finishTime {finish}, not milliseconds"
        ));
    }
    let nodes = d["nodes"]
        .as_array()
        .ok_or_else(|| "nodes is not an array".to_owned())?;
    for node in nodes {
        for field in ["node_id", "node_name", "node_status"] {
            if node[field].is_null() {
                return Err(format!("node without {field}: {node}"));
            }
        }
        if !matches!(node["approverRelation"].as_str(), Some("or" | "and")) {
            return Err(format!("node approverRelation is not or/and: {node}"));
        }
        for list in ["pending_approvers", "approved_approvers", "operator"] {
            if !node[list].is_array() {
                return Err(format!("node {list} is not an array: {node}"));
            }
        }
        if !node["display"].is_object() {
            return Err(format!("node display is not an object: {node}"));
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
