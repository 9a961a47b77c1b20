//! A Lambda Runtime API emulator on 127.0.0.1: hands invocations to a function process through
//! `GET /2018-06-01/runtime/invocation/next` (long poll) and collects what it posts back, recording
//! when the first poll arrived (the end of the function's init phase).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::BenchError;

/// How long an invocation may run; sent as `Lambda-Runtime-Deadline-Ms`.
const DEADLINE: Duration = Duration::from_secs(30);
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:bridge-bench";

/// What the function posted for an invocation.
#[derive(Debug)]
pub enum Outcome {
    /// The body of `POST /invocation/{id}/response`.
    Response(Bytes),
    /// The body of `POST /invocation/{id}/error` (or `/init/error`).
    Error(String),
}

struct Invocation {
    id: String,
    event: Value,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_poll: OnceLock<Instant>,
    init_error: Mutex<Option<String>>,
}

pub struct RuntimeApi {
    addr: SocketAddr,
    /// Only held here: dropping the emulator ends pending long polls.
    queue: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> Result<RuntimeApi, BenchError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(BenchError::io("bind the Runtime API emulator"))?;
        let addr = listener
            .local_addr()
            .map_err(BenchError::io("Runtime API emulator address"))?;
        let (queue, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(rx),
            waiting: Mutex::new(HashMap::new()),
            first_poll: OnceLock::new(),
            init_error: Mutex::new(None),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(RuntimeApi {
            addr,
            queue,
            shared,
            server,
        })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Queues one invocation; the receiver yields what the function posts for it.
    pub fn invoke(&self, id: &str, event: Value) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .expect("waiting lock")
            .insert(id.to_string(), tx);
        // The receiving half lives as long as `shared`, which `self` holds.
        let _ = self.queue.send(Invocation {
            id: id.to_string(),
            event,
        });
        rx
    }

    /// When the function first asked for work, if it has.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.first_poll.get().copied()
    }

    pub fn init_error(&self) -> Option<String> {
        self.shared.init_error.lock().expect("init lock").clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared.first_poll.get_or_init(Instant::now);
    let invocation = shared.queue.lock().await.recv().await;
    let Some(invocation) = invocation else {
        return StatusCode::GONE.into_response();
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(DEADLINE)
        .as_millis();
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("content-type", "application/json".into());
    set("lambda-runtime-aws-request-id", invocation.id.clone());
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set("lambda-runtime-invoked-function-arn", FUNCTION_ARN.into());
    set(
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
            deadline / 1000,
            deadline,
            deadline
        ),
    );
    (StatusCode::OK, headers, invocation.event.to_string()).into_response()
}

fn settle(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match shared.waiting.lock().expect("waiting lock").remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> impl IntoResponse {
    let status = settle(&shared, &id, Outcome::Response(body));
    (status, r#"{"status":"OK"}"#)
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> impl IntoResponse {
    let text = String::from_utf8_lossy(&body).into_owned();
    let status = settle(&shared, &id, Outcome::Error(text));
    (status, r#"{"status":"OK"}"#)
}

/// A failed init: remember why and fail every queued invocation (the process is about to exit).
async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> impl IntoResponse {
    let text = String::from_utf8_lossy(&body).into_owned();
    *shared.init_error.lock().expect("init lock") = Some(text.clone());
    for (_, tx) in shared.waiting.lock().expect("waiting lock").drain() {
        let _ = tx.send(Outcome::Error(format!("init error: {text}")));
    }
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

/// An API Gateway HTTP API (payload 2.0) event, as API Gateway builds it for a request.
pub fn http_api_event(
    request_id: &str,
    method: &str,
    path: &str,
    query: &[(&str, String)],
) -> Value {
    let raw_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(v.as_str())))
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {
            "accept": "*/*",
            "content-length": "0",
            "content-type": "application/json",
            "host": "bench.execute-api.us-east-1.amazonaws.com",
            "user-agent": "Dataphin/bridge-bench",
            "x-amzn-trace-id": format!("Root=1-{:08x}-{:024x}", now / 1000, now),
            "x-forwarded-for": "127.0.0.1",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "queryStringParameters": params,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "Dataphin/bridge-bench"
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": now
        },
        "isBase64Encoded": false
    })
}
