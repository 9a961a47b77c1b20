//! `bridge sandbox`: the three parties around the bridge on one port (SPEC 11), built from the same
//! stand-ins the end-to-end tests use: [`FakeDingTalk`]'s open API and approval engine, [`FakeBpm`]'s
//! signed webhook receiver (with [`crate::bpm`]'s engine on top), [`FakeDataphin`]'s callback
//! receiver. Around them: the page, its JSON API, the pusher that delivers DingTalk's encrypted events
//! and the BPM's signed events to the bridge (in order, retried like the real senders), and
//! `sandbox.json`, so a restart of `make dev` keeps every instance, task and callback.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::bpm::{Action, BpmInstance};
use crate::config::SandboxConfig;
use crate::fake_bpm::{self, FakeBpm};
use crate::fake_dataphin::{FakeDataphin, CALLBACK_PATH};
use crate::fake_dingtalk::{FakeDingTalk, FakeInstance, DINGTALK_TERMINATE_GRACE};
use crate::scenarios::SCENARIOS;

/// Where the sandbox's BPM listens (the sample `WEBHOOK_URL`).
pub const BPM_PATH: &str = "/bpm";
/// The state file under `BRIDGE_DATA_DIR`.
pub const STATE_FILE: &str = "sandbox.json";
/// A push the bridge keeps refusing is dropped after this many attempts (about 20 minutes), as
/// DingTalk stops re-sending a failed push in the end.
const MAX_PUSH_ATTEMPTS: u32 = 50;
const BRIDGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the sandbox could not start or run.
#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("cannot read the sandbox state {path}: {source}")]
    Load {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the sandbox state {path} is not valid: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("DATAPHIN_AES_KEY cannot decrypt: {0}")]
    Key(crypto::CryptoError),
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// One event waiting to be pushed to the bridge.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outbound {
    /// `dingtalk` (encrypted, to `/callback/dingtalk`) or `webhook` (signed, to `/callback/webhook`).
    to: String,
    event: Value,
    #[serde(default)]
    attempts: u32,
}

/// What `sandbox.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    #[serde(default)]
    dingtalk_instances: Vec<FakeInstance>,
    /// DingTalk instance id → the bridge ticket it was created for.
    #[serde(default)]
    tickets: BTreeMap<String, String>,
    #[serde(default)]
    bpm_instances: Vec<BpmInstance>,
    #[serde(default)]
    outbox: Vec<Outbound>,
    #[serde(default)]
    callbacks: Vec<Value>,
}

#[derive(Default)]
struct Live {
    tickets: BTreeMap<String, String>,
    bpm: Vec<BpmInstance>,
    outbox: VecDeque<Outbound>,
    callbacks: Vec<Value>,
    /// How many of the fake BPM's accepted requests were turned into instances (this run).
    bpm_seen: usize,
    last_saved: String,
}

/// A running sandbox's parts.
pub struct Sandbox {
    config: SandboxConfig,
    dingtalk: FakeDingTalk,
    bpm: FakeBpm,
    dataphin: FakeDataphin,
    state: Mutex<Live>,
    http: reqwest::Client,
    wake: Notify,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    api(status, message).into_response()
}

/// SPEC 11's error: a 4xx with `{"error"}` naming what is wrong.
struct ApiError(StatusCode, String);

fn api(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl Sandbox {
    /// Starts the stand-ins with the bridge's settings and loads `sandbox.json` if there is one.
    pub async fn new(config: SandboxConfig) -> Result<Arc<Sandbox>, SandboxError> {
        crypto::MessageCrypto::new(&config.dataphin_access_token, &config.dataphin_aes_key, "")
            .map_err(SandboxError::Key)?;
        let dingtalk = FakeDingTalk::start(&config.app_key, &config.app_secret).await;
        for code in &config.process_codes {
            dingtalk.add_process_code(code);
        }
        if let Some(agent) = config.agent_id {
            dingtalk.set_agent_id(agent);
        }
        dingtalk.set_terminate_grace(DINGTALK_TERMINATE_GRACE);
        let bpm = FakeBpm::start(&config.webhook_secret).await;
        let dataphin =
            FakeDataphin::start(&config.dataphin_access_token, &config.dataphin_aes_key).await;
        let http = reqwest::Client::builder()
            .timeout(BRIDGE_TIMEOUT)
            .build()
            .map_err(SandboxError::Client)?;
        let sandbox = Sandbox {
            config,
            dingtalk,
            bpm,
            dataphin,
            state: Mutex::new(Live::default()),
            http,
            wake: Notify::new(),
        };
        sandbox.load()?;
        Ok(Arc::new(sandbox))
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `$BRIDGE_DATA_DIR/sandbox.json`.
    pub fn state_path(&self) -> PathBuf {
        self.config.data_dir.join(STATE_FILE)
    }

    fn load(&self) -> Result<(), SandboxError> {
        let path = self.state_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(SandboxError::Load { path, source }),
        };
        let persisted: Persisted =
            serde_json::from_str(&text).map_err(|source| SandboxError::Corrupt { path, source })?;
        for inst in persisted.dingtalk_instances {
            self.dingtalk.restore_instance(inst);
        }
        for inst in &persisted.bpm_instances {
            self.bpm
                .restore_instance(&inst.ticket_id, &inst.instance_id);
        }
        let mut s = self.lock();
        s.tickets = persisted.tickets;
        s.bpm = persisted.bpm_instances;
        s.outbox = persisted.outbox.into();
        s.callbacks = persisted.callbacks;
        s.last_saved = text;
        Ok(())
    }

    /// Writes `sandbox.json` when something changed (write and rename: a crash leaves the old one).
    pub fn save(&self) {
        self.sync();
        let dingtalk_instances: Vec<FakeInstance> = self
            .dingtalk
            .instance_ids()
            .iter()
            .filter_map(|id| self.dingtalk.instance(id))
            .collect();
        let mut s = self.lock();
        let persisted = Persisted {
            dingtalk_instances,
            tickets: s.tickets.clone(),
            bpm_instances: s.bpm.clone(),
            outbox: s.outbox.iter().cloned().collect(),
            callbacks: s.callbacks.clone(),
        };
        let Ok(text) = serde_json::to_string_pretty(&persisted) else {
            return;
        };
        if text == s.last_saved {
            return;
        }
        let path = self.state_path();
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::create_dir_all(&self.config.data_dir)
            .and_then(|()| std::fs::write(&tmp, &text))
            .and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => s.last_saved = text,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the sandbox state")
            }
        }
    }

    /// Moves what the stand-ins recorded into the sandbox: DingTalk's events into the outbox, the
    /// BPM's accepted `ticket.created` / `ticket.withdrawn` into its engine.
    fn sync(&self) {
        let events = self.dingtalk.take_events();
        let requests = self.bpm.requests();
        let mut s = self.lock();
        for event in events {
            s.outbox.push_back(Outbound {
                to: "dingtalk".into(),
                event,
                attempts: 0,
            });
        }
        let now = now_ms();
        for req in requests.iter().skip(s.bpm_seen) {
            let Some(instance_id) = req.instance_id.as_deref() else {
                continue;
            };
            match req.event["event"].as_str() {
                Some("ticket.created") if !s.bpm.iter().any(|i| i.instance_id == instance_id) => {
                    s.bpm
                        .push(BpmInstance::from_created(&req.event, instance_id, now));
                }
                Some("ticket.withdrawn") => {
                    if let Some(inst) = s.bpm.iter_mut().find(|i| i.instance_id == instance_id) {
                        inst.withdraw();
                    }
                }
                _ => {}
            }
        }
        s.bpm_seen = requests.len();
    }

    /// Every route on one router: page, JSON API, DingTalk's open API, the BPM, Dataphin's receiver.
    pub fn router(self: &Arc<Self>) -> Router {
        let callbacks = self.dataphin.router().layer(middleware::from_fn_with_state(
            self.clone(),
            record_callback,
        ));
        Router::new()
            .route("/", get(page))
            .route("/api/scenarios", get(scenarios))
            .route("/api/dataphin/submit", post(submit))
            .route("/api/dataphin/terminate", post(terminate))
            .route("/api/dataphin/callbacks", get(list_callbacks))
            .route("/api/instances", get(list_instances))
            .route(
                "/api/instances/{instance_id}/tasks/{task_id}",
                post(act_on_task),
            )
            .route("/api/tickets/{ticket_id}", get(ticket))
            .with_state(self.clone())
            .nest(BPM_PATH, self.bpm.router())
            .merge(callbacks)
            .merge(self.dingtalk.router())
    }

    /// Pushes queued events to the bridge, in order, forever; a failed push is retried with
    /// backoff (the next events wait behind it, as one sender's pushes do).
    pub async fn run_pusher(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(backoff) => {}
            }
            self.sync();
            loop {
                let next = self.lock().outbox.front().cloned();
                let Some(item) = next else {
                    backoff = Duration::from_millis(500);
                    break;
                };
                match self.push(&item).await {
                    Ok(()) => {
                        self.lock().outbox.pop_front();
                        backoff = Duration::from_millis(500);
                    }
                    Err(why) => {
                        let mut s = self.lock();
                        let dropped = s.outbox.front_mut().is_some_and(|front| {
                            front.attempts += 1;
                            front.attempts >= MAX_PUSH_ATTEMPTS
                        });
                        if dropped {
                            s.outbox.pop_front();
                            tracing::error!(to = %item.to, %why, "push given up");
                        } else {
                            tracing::warn!(to = %item.to, %why, "push failed, will retry");
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        break;
                    }
                }
            }
            self.save();
        }
    }

    async fn push(&self, item: &Outbound) -> Result<(), String> {
        let body = item.event.to_string();
        let request = if item.to == "dingtalk" {
            let crypto = crypto::MessageCrypto::new(
                &self.config.callback_token,
                &self.config.callback_aes_key,
                &self.config.owner_key,
            )
            .map_err(|e| format!("DINGTALK_CALLBACK_AES_KEY: {e}"))?;
            let sealed = crypto.seal_now(body.as_bytes());
            self.http
                .post(format!("{}/callback/dingtalk", self.config.bridge_url))
                .query(&[
                    ("signature", sealed.signature.as_str()),
                    ("timestamp", sealed.timestamp.as_str()),
                    ("nonce", sealed.nonce.as_str()),
                ])
                .json(&json!({"encrypt": sealed.encrypt}))
        } else {
            let (timestamp, signature) =
                fake_bpm::signed_callback(&self.config.webhook_secret, body.as_bytes());
            self.http
                .post(format!("{}/callback/webhook", self.config.bridge_url))
                .header("content-type", "application/json")
                .header("X-Bridge-Timestamp", timestamp)
                .header("X-Bridge-Signature", signature)
                .body(body)
        };
        let response = request
            .send()
            .await
            .map_err(|e| format!("the bridge did not answer: {e}"))?;
        let status = response.status();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        let acknowledged = if item.to == "dingtalk" {
            status == StatusCode::OK && reply["encrypt"].is_string()
        } else {
            status.is_success()
        };
        if acknowledged {
            Ok(())
        } else {
            Err(format!("the bridge answered {status}: {reply}"))
        }
    }

    /// The bridge's reply to a Dataphin call signed as Dataphin signs it.
    async fn call_bridge(&self, path: &str, body: Bytes) -> Response {
        let url = format!("{}{path}", self.config.bridge_url);
        let timestamp = now_ms().to_string();
        let sent = self
            .http
            .post(&url)
            .query(&[
                ("accessToken", self.config.dataphin_access_token.as_str()),
                ("timestamp", timestamp.as_str()),
            ])
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        relay(sent, &url).await
    }

    fn instances_json(&self) -> Vec<Value> {
        self.sync();
        let s = self.lock();
        let mut all: Vec<(i64, Value)> = Vec::new();
        for id in self.dingtalk.instance_ids() {
            let Some(inst) = self.dingtalk.instance(&id) else {
                continue;
            };
            all.push((inst.create_ms, dingtalk_json(&inst, s.tickets.get(&id))));
        }
        for inst in &s.bpm {
            all.push((inst.created_ms, bpm_json(inst)));
        }
        all.sort_by_key(|(ms, _)| -ms);
        all.into_iter().map(|(_, v)| v).collect()
    }
}

async fn relay(sent: Result<reqwest::Response, reqwest::Error>, url: &str) -> Response {
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                // Without the URL: its query holds the access token.
                format!("the bridge did not answer at {url}: {}", e.without_url()),
            );
        }
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<Value>(&text) {
        Ok(value) => (status, Json(value)).into_response(),
        Err(_) => error(
            StatusCode::BAD_GATEWAY,
            format!("the bridge answered {status} with a body that is not JSON: {text}"),
        ),
    }
}

fn form_of(inst: &FakeInstance) -> Vec<Value> {
    inst.create_body["formComponentValues"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| json!({"name": f["name"], "value": f["value"]}))
                .collect()
        })
        .unwrap_or_default()
}

/// The ticket an instance belongs to, as the bridge wrote it into the form (`Ticket: <id>` in the
/// multi-line component): instances the dispatcher forwards later never passed through the
/// sandbox's own submit, so the form is the only place that says.
fn ticket_in_form(form: &[Value]) -> Option<String> {
    form.iter()
        .filter_map(|f| f["value"].as_str())
        .flat_map(str::lines)
        .find_map(|l| {
            l.trim()
                .strip_prefix("Ticket: ")
                .map(|id| id.trim().to_owned())
        })
        .filter(|id| !id.is_empty())
}

fn dingtalk_json(inst: &FakeInstance, ticket: Option<&String>) -> Value {
    let form = form_of(inst);
    let ticket = ticket.cloned().or_else(|| ticket_in_form(&form));
    let title = form
        .iter()
        .find(|f| f["name"] == "Title" || f["name"] == "标题")
        .and_then(|f| f["value"].as_str())
        .unwrap_or(&inst.title)
        .to_owned();
    let tasks: Vec<Value> = inst
        .tasks
        .iter()
        .map(|t| {
            let result = match t.result.as_str() {
                "NONE" | "" => Value::Null,
                other => json!(other.to_ascii_lowercase()),
            };
            let remark = inst
                .records
                .iter()
                .rev()
                .find(|r| {
                    r.user_id == t.user_id
                        && r.activity_id.as_deref() == Some(t.activity_id.as_str())
                })
                .and_then(|r| r.remark.clone());
            json!({"task_id": t.task_id.to_string(), "user_id": t.user_id, "status": t.status,
                   "result": result, "node": t.activity_id, "remark": remark})
        })
        .collect();
    json!({
        "instance_id": inst.id, "backend": "dingtalk", "ticket_id": ticket,
        "title": title, "status": inst.status, "result": inst.result,
        "tasks": tasks, "form": form,
        "originator": inst.originator_user_id, "process_code": inst.process_code,
        "created_at": inst.create_ms, "finished_at": inst.finish_ms,
    })
}

fn bpm_json(inst: &BpmInstance) -> Value {
    let tasks: Vec<Value> = inst
        .tasks
        .iter()
        .map(|t| {
            json!({"task_id": t.task_id, "user_id": t.user_id, "status": t.status,
                        "result": t.result, "node": t.node_id})
        })
        .collect();
    json!({
        "instance_id": inst.instance_id, "backend": "webhook", "ticket_id": inst.ticket_id,
        "title": inst.title, "status": inst.status, "result": inst.result,
        "tasks": tasks, "form": inst.form, "created_at": inst.created_ms,
    })
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn scenarios(State(sb): State<Arc<Sandbox>>) -> Json<Value> {
    let list: Vec<Value> = SCENARIOS
        .iter()
        .map(|(name, text)| {
            json!({"name": name, "submission": serde_json::from_str::<Value>(text).unwrap_or(Value::Null)})
        })
        .collect();
    Json(json!({"scenarios": list, "bridge_url": sb.config.bridge_url}))
}

fn json_object(body: &Bytes) -> Result<(), ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => Err(api(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(e) => Err(api(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

async fn submit(State(sb): State<Arc<Sandbox>>, body: Bytes) -> Response {
    if let Err(refused) = json_object(&body) {
        return refused.into_response();
    }
    let before: HashSet<String> = sb.dingtalk.instance_ids().into_iter().collect();
    let response = sb
        .call_bridge("/dataphin/bpms/processinstance/create", body)
        .await;
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, 4 << 20).await.unwrap_or_default();
    if let Ok(reply) = serde_json::from_slice::<Value>(&bytes) {
        if let Some(ticket) = reply["processInstanceId"].as_str() {
            let mut s = sb.lock();
            for id in sb.dingtalk.instance_ids() {
                if !before.contains(&id) {
                    s.tickets.entry(id).or_insert_with(|| ticket.to_owned());
                }
            }
        }
    }
    sb.wake.notify_one();
    sb.save();
    Response::from_parts(parts, Body::from(bytes))
}

async fn terminate(State(sb): State<Arc<Sandbox>>, body: Bytes) -> Response {
    if let Err(refused) = json_object(&body) {
        return refused.into_response();
    }
    let response = sb
        .call_bridge("/dataphin/bpms/processinstance/terminate", body)
        .await;
    sb.wake.notify_one();
    response
}

async fn list_callbacks(State(sb): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!({"callbacks": sb.lock().callbacks.clone()}))
}

async fn list_instances(State(sb): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!({"instances": sb.instances_json()}))
}

#[derive(Deserialize)]
struct ActBody {
    action: Option<String>,
    remark: Option<String>,
    to_user: Option<String>,
    /// For `add_approvers` (DingTalk): the users added after the acting approver.
    to_users: Option<Vec<String>>,
    /// For `send_back` (DingTalk): the earlier step (0-based) the instance goes back to.
    to_step: Option<usize>,
}

async fn act_on_task(
    State(sb): State<Arc<Sandbox>>,
    Path((instance_id, task_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body: ActBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not {{\"action\", \"remark\", \"to_user\"}}: {e}"),
            )
        }
    };
    let remark = body.remark.unwrap_or_default();
    let action = match body.action.as_deref() {
        Some("agree") => Action::Agree,
        Some("refuse") => Action::Refuse,
        Some("redirect") => match body.to_user.as_deref().map(str::trim) {
            Some(to) if !to.is_empty() => Action::Redirect(to.to_owned()),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "to_user is required for action redirect",
                )
            }
        },
        Some("add_approvers") => match body.to_users {
            Some(users) if !users.is_empty() && users.iter().all(|u| !u.trim().is_empty()) => {
                Action::AddApprovers(users)
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "to_users (a list of user ids) is required for action add_approvers",
                )
            }
        },
        Some("send_back") => match body.to_step {
            Some(step) => Action::SendBack(step),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "to_step (the earlier step, 0-based) is required for action send_back",
                )
            }
        },
        Some("comment") if !remark.trim().is_empty() => Action::Comment,
        Some("comment") => {
            return error(
                StatusCode::BAD_REQUEST,
                "remark is required for action comment",
            )
        }
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("action {other:?} is not one of agree, refuse, redirect, add_approvers, send_back, comment"),
            )
        }
        None => return error(StatusCode::BAD_REQUEST, "action is required"),
    };
    sb.sync();
    let outcome = if let Some(inst) = sb.dingtalk.instance(&instance_id) {
        act_dingtalk(&sb, &inst, &task_id, &action, &remark)
    } else {
        let mut s = sb.lock();
        match s.bpm.iter_mut().find(|i| i.instance_id == instance_id) {
            None => Err(api(
                StatusCode::NOT_FOUND,
                format!("no instance {instance_id}"),
            )),
            Some(inst) => match inst.act(&task_id, &action, &remark, now_ms()) {
                Ok(event) => {
                    s.outbox.push_back(Outbound {
                        to: "webhook".into(),
                        event,
                        attempts: 0,
                    });
                    Ok(())
                }
                Err(why) if why.starts_with("no task") => Err(api(StatusCode::NOT_FOUND, why)),
                Err(why) => Err(api(StatusCode::CONFLICT, why)),
            },
        }
    };
    match outcome {
        Ok(()) => {
            sb.wake.notify_one();
            sb.save();
            Json(json!({"ok": true})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn act_dingtalk(
    sb: &Sandbox,
    inst: &FakeInstance,
    task_id: &str,
    action: &Action,
    remark: &str,
) -> Result<(), ApiError> {
    let Some(task) = inst.tasks.iter().find(|t| t.task_id.to_string() == task_id) else {
        return Err(api(
            StatusCode::NOT_FOUND,
            format!("no task {task_id} in instance {}", inst.id),
        ));
    };
    if inst.status != "RUNNING" {
        return Err(api(
            StatusCode::CONFLICT,
            format!(
                "instance {} is {}; only a RUNNING instance can be acted on",
                inst.id, inst.status
            ),
        ));
    }
    if task.status != "RUNNING" {
        return Err(api(
            StatusCode::CONFLICT,
            format!(
                "task {task_id} is {}; only a RUNNING task can be acted on",
                task.status
            ),
        ));
    }
    let done = match action {
        Action::Agree => sb.dingtalk.act(&inst.id, &task.user_id, true, remark),
        Action::Refuse => sb.dingtalk.act(&inst.id, &task.user_id, false, remark),
        Action::Redirect(to) => sb.dingtalk.transfer(&inst.id, &task.user_id, to, remark),
        Action::AddApprovers(users) => {
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            sb.dingtalk
                .add_approvers(&inst.id, &task.user_id, &users, remark)
        }
        Action::SendBack(step) => sb
            .dingtalk
            .send_back(&inst.id, &task.user_id, *step, remark),
        Action::Comment => sb.dingtalk.comment(&inst.id, &task.user_id, remark),
    };
    done.map_err(|why| api(StatusCode::CONFLICT, why))
}

async fn ticket(State(sb): State<Arc<Sandbox>>, Path(ticket_id): Path<String>) -> Response {
    let mut url = match url::Url::parse(&format!("{}/approvals/", sb.config.bridge_url)) {
        Ok(url) => url,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("bridge URL: {e}"),
            )
        }
    };
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(&ticket_id);
    }
    let sent = sb
        .http
        .get(url.clone())
        .bearer_auth(&sb.config.admin_token)
        .send()
        .await;
    relay(sent, url.as_str()).await
}

/// Records every request to Dataphin's Callback URL with the status the receiver answered and the
/// document decrypted (null when it could not be).
async fn record_callback(State(sb): State<Arc<Sandbox>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 4 << 20).await.unwrap_or_default();
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    let status = response.status().as_u16();
    let (rparts, rbody) = response.into_parts();
    let answer = to_bytes(rbody, 1 << 20).await.unwrap_or_default();
    let document = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["encrypt"].as_str().map(str::to_owned))
        .and_then(|encrypt| {
            let crypto = crypto::MessageCrypto::new(
                &sb.config.dataphin_access_token,
                &sb.config.dataphin_aes_key,
                "",
            )
            .ok()?;
            let frame = crypto.decrypt_frame(&encrypt).ok()?;
            serde_json::from_slice::<Value>(&frame.message).ok()
        })
        .unwrap_or(Value::Null);
    let answer_json = serde_json::from_slice::<Value>(&answer).unwrap_or(Value::Null);
    sb.lock().callbacks.push(json!({
        "received_at": now_ms(), "status": status, "document": document, "answer": answer_json,
    }));
    sb.wake.notify_one();
    Response::from_parts(rparts, Body::from(answer))
}

/// Serves the sandbox on `listener` until `shutdown` resolves, pushing events meanwhile; saves
/// the state on the way out.
pub async fn serve(
    sandbox: Arc<Sandbox>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let pusher = tokio::spawn(sandbox.clone().run_pusher());
    let served = axum::serve(listener, sandbox.router())
        .with_graceful_shutdown(shutdown)
        .await;
    pusher.abort();
    sandbox.save();
    served.map_err(SandboxError::Serve)
}

/// `bridge sandbox`: binds `SANDBOX_PORT` on 127.0.0.1 and serves until Ctrl-C or SIGTERM.
pub async fn run(config: SandboxConfig) -> Result<(), SandboxError> {
    let port = config.port;
    let sandbox = Sandbox::new(config).await?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| SandboxError::Bind { port, source })?;
    tracing::info!(port, state = %sandbox.state_path().display(), "sandbox listening");
    serve(sandbox, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// For tests: `CALLBACK_PATH` under a sandbox's base URL.
pub fn callback_url(base: &str) -> String {
    format!("{base}{CALLBACK_PATH}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_of_an_instance_is_read_from_its_form() {
        let form = vec![
            json!({"name": "标题", "value": "read orders"}),
            json!({"name": "审批内容", "value": "Ticket: T-42\nTitle: read orders"}),
        ];
        assert_eq!(ticket_in_form(&form).as_deref(), Some("T-42"));
        assert_eq!(
            ticket_in_form(&[json!({"name": "x", "value": "no id"})]),
            None
        );
    }
}
