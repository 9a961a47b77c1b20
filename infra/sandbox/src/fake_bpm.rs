//! A fake company BPM (SPEC 9) on 127.0.0.1: it receives the bridge's signed `ticket.created` and
//! `ticket.withdrawn` events, and [`signed_callback`] signs the events a test posts to the bridge.
//!
//! The HMAC here is written against `hmac`/`sha2` directly rather than through the bridge's `crypto` crate,
//! so a mistake in the bridge's signing cannot hide behind the same mistake in the fake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Accepted clock skew on the bridge's signed requests (the bridge's default `TIMESTAMP_SKEW_SECONDS`).
pub const SKEW_SECS: i64 = 300;

/// One accepted request.
#[derive(Debug, Clone, PartialEq)]
pub struct BpmRequest {
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The event body.
    pub event: Value,
    /// The instance the BPM created or reused for a `ticket.created`.
    pub instance_id: Option<String>,
}

/// A running fake; the server stops when this is dropped.
pub struct FakeBpm {
    base_url: String,
    state: Arc<Mutex<BpmState>>,
    task: JoinHandle<()>,
    /// The same route and state, for `bridge sandbox` to mount on its own port.
    router: Router,
}

#[derive(Default)]
struct BpmState {
    secret: Vec<u8>,
    down: bool,
    refuse_withdraw: bool,
    attempts: u64,
    unauthorized: u64,
    next_instance: u64,
    instance_by_key: HashMap<String, String>,
    withdrawn: Vec<String>,
    requests: Vec<BpmRequest>,
}

impl Drop for FakeBpm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBpm {
    /// Starts a BPM sharing `secret` with the bridge (`WEBHOOK_SECRET`).
    pub async fn start(secret: &str) -> FakeBpm {
        let state = Arc::new(Mutex::new(BpmState {
            secret: secret.as_bytes().to_vec(),
            ..BpmState::default()
        }));
        let app = Router::new()
            .route("/", post(receive))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let router = app.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake BPM serves");
        });
        FakeBpm {
            base_url: format!("http://{addr}"),
            state,
            task,
            router,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BpmState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint to configure as `WEBHOOK_URL`.
    pub fn url(&self) -> String {
        format!("{}/", self.base_url)
    }

    /// Switches to a new shared secret (a rotation): requests signed with the old one get 401.
    pub fn set_secret(&self, secret: &str) {
        self.lock().secret = secret.as_bytes().to_vec();
    }

    /// While down, every request is answered 503 and nothing is recorded.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The BPM's route (`/`) on its state, for `bridge sandbox` to mount on its own port.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Puts back an instance kept from an earlier run (`bridge sandbox` restarts), so a repeated
    /// `ticket.created` reuses it and `ticket.withdrawn` finds it; new ids follow the highest.
    pub fn restore_instance(&self, ticket_id: &str, instance_id: &str) {
        let mut s = self.lock();
        if let Some(n) = instance_id
            .strip_prefix("bpm-")
            .and_then(|n| n.parse::<u64>().ok())
        {
            s.next_instance = s.next_instance.max(n);
        }
        s.instance_by_key
            .insert(ticket_id.to_owned(), instance_id.to_owned());
    }

    /// While set, `ticket.withdrawn` is answered 409 (the BPM will not cancel) and not recorded.
    pub fn set_refuse_withdraw(&self, refuse: bool) {
        self.lock().refuse_withdraw = refuse;
    }

    /// Every request received, including refused ones.
    pub fn attempts(&self) -> u64 {
        self.lock().attempts
    }

    /// Requests refused with 401 (bad or missing signature, stale timestamp).
    pub fn unauthorized(&self) -> u64 {
        self.lock().unauthorized
    }

    /// Accepted requests in arrival order (a repeated create appears twice, with the same instance).
    pub fn requests(&self) -> Vec<BpmRequest> {
        self.lock().requests.clone()
    }

    /// Accepted event bodies in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.event.clone())
            .collect()
    }

    /// Accepted event bodies of one kind (`ticket.created`, `ticket.withdrawn`).
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.event["event"] == kind)
            .map(|r| r.event.clone())
            .collect()
    }

    /// How many distinct instances were created.
    pub fn instances_created(&self) -> usize {
        self.lock().instance_by_key.len()
    }

    /// The instance created for a ticket (its `Idempotency-Key`).
    pub fn instance_for(&self, ticket_id: &str) -> Option<String> {
        self.lock().instance_by_key.get(ticket_id).cloned()
    }

    /// Instances withdrawn, in order.
    pub fn withdrawn(&self) -> Vec<String> {
        self.lock().withdrawn.clone()
    }

    /// Waits until `pred` holds on the accepted events; false if `timeout` passes first.
    pub async fn wait_for(&self, pred: impl Fn(&[Value]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.events()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `(X-Bridge-Timestamp, X-Bridge-Signature)` for posting `body` to the bridge's `/callback/webhook` now.
pub fn signed_callback(secret: &str, body: &[u8]) -> (String, String) {
    let timestamp = now_ms().to_string();
    let signature = sign(secret.as_bytes(), &timestamp, body);
    (timestamp, signature)
}

/// The same with a chosen timestamp, for stale-timestamp tests.
pub fn signed_callback_at(secret: &str, timestamp_ms: i64, body: &[u8]) -> (String, String) {
    let timestamp = timestamp_ms.to_string();
    let signature = sign(secret.as_bytes(), &timestamp, body);
    (timestamp, signature)
}

fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// Checks the bridge's signature headers exactly as SPEC 9 states them.
fn authenticate(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("{name} missing"))
    };
    let timestamp = header("X-Bridge-Timestamp")?;
    let signature = header("X-Bridge-Signature")?;
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| "timestamp is not milliseconds".to_owned())?;
    if (now_ms() - sent).abs() > SKEW_SECS * 1000 {
        return Err("timestamp outside the skew window".to_owned());
    }
    let tag = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| "signature is not sha256=<hex>".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&tag)
        .map_err(|_| "signature does not match".to_owned())
}

async fn receive(
    State(state): State<Arc<Mutex<BpmState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.attempts += 1;
    if s.down {
        return reply(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "down"}));
    }
    if let Err(why) = authenticate(&s.secret, &headers, &body) {
        s.unauthorized += 1;
        return reply(StatusCode::UNAUTHORIZED, json!({"error": why}));
    }
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error": "Content-Type must be application/json"}),
        );
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "body is not JSON"}),
        );
    };
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    match event["event"].as_str() {
        Some("ticket.created") => {
            let Some(key) = idempotency_key.clone() else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "Idempotency-Key missing"}),
                );
            };
            if event["ticket_id"].as_str() != Some(key.as_str()) {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "Idempotency-Key is not the ticket_id"}),
                );
            }
            let instance_id = match s.instance_by_key.get(&key) {
                Some(existing) => existing.clone(),
                None => {
                    s.next_instance += 1;
                    let id = format!("bpm-{}", s.next_instance);
                    s.instance_by_key.insert(key, id.clone());
                    id
                }
            };
            s.requests.push(BpmRequest {
                idempotency_key,
                event,
                instance_id: Some(instance_id.clone()),
            });
            reply(StatusCode::OK, json!({"instance_id": instance_id}))
        }
        Some("ticket.withdrawn") => {
            if s.refuse_withdraw {
                return reply(
                    StatusCode::CONFLICT,
                    json!({"error": "instance cannot be withdrawn"}),
                );
            }
            let instance_id = event["instance_id"].as_str().unwrap_or_default().to_owned();
            if !s.instance_by_key.values().any(|id| *id == instance_id) {
                return reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("no instance {instance_id:?}")}),
                );
            }
            s.withdrawn.push(instance_id.clone());
            s.requests.push(BpmRequest {
                idempotency_key,
                event,
                instance_id: Some(instance_id),
            });
            reply(StatusCode::OK, json!({"ok": true}))
        }
        _ => reply(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("unknown event {}", event["event"])}),
        ),
    }
}
