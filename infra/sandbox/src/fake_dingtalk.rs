//! A fake DingTalk open API (`api.dingtalk.com`, new camelCase API) as a real HTTP server on 127.0.0.1.
//!
//! It answers like DINGTALK.md describes, errors included, and it also checks what it is sent: a request the
//! real DingTalk would refuse is refused here with the same code and a message naming the field, so a test
//! passing against the fake says something about the real thing. It runs a small approval engine (steps of
//! AND / OR / NONE approvers, transfers, termination) that tests drive with [`FakeDingTalk::act`] and friends,
//! and it keeps the events DingTalk would push (plain JSON, before encryption) in [`FakeDingTalk::events`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// DingTalk's token lifetime in seconds.
pub const TOKEN_TTL_SECS: u64 = 7200;
/// How long after creation DingTalk refuses a termination (the fake defaults to 0, see
/// [`FakeDingTalk::set_terminate_grace`]).
pub const DINGTALK_TERMINATE_GRACE: Duration = Duration::from_secs(15);
/// The corpId the fake puts into the events it records.
pub const FAKE_CORP_ID: &str = "dingfakecorp0000";

const TOKEN_HEADER: &str = "x-acs-dingtalk-access-token";

/// One approver's task, as the get call shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FakeTask {
    /// A number, as DingTalk sends it.
    pub task_id: i64,
    pub user_id: String,
    /// `NEW|RUNNING|PAUSED|CANCELED|COMPLETED|TERMINATED`.
    pub status: String,
    /// `AGREE|REFUSE|REDIRECTED|NONE`.
    pub result: String,
    pub activity_id: String,
    pub create_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
}

/// One history entry, as the get call shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FakeRecord {
    pub user_id: String,
    pub date: String,
    #[serde(rename = "type")]
    pub record_type: String,
    /// `AGREE|REFUSE|NONE`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    pub show_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
}

/// One step of an instance's flow, from the create's `approvers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeStep {
    /// `AND|OR|NONE`.
    pub action_type: String,
    pub user_ids: Vec<String>,
}

/// An instance the fake holds.
/// Serializable so `bridge sandbox` can keep instances across restarts (`created_at` restarts then).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FakeInstance {
    pub id: String,
    pub process_code: String,
    pub originator_user_id: String,
    pub title: String,
    /// `NEW|RUNNING|TERMINATED|COMPLETED|CANCELED`.
    pub status: String,
    /// `agree|refuse` once completed.
    pub result: Option<String>,
    pub steps: Vec<FakeStep>,
    /// Index into `steps` of the step now waiting for approvers (`steps.len()` when none is).
    pub current_step: usize,
    pub tasks: Vec<FakeTask>,
    pub records: Vec<FakeRecord>,
    /// The accepted create body, as sent.
    pub create_body: Value,
    #[serde(skip, default = "Instant::now")]
    pub created_at: Instant,
    pub create_ms: i64,
    pub finish_ms: Option<i64>,
    /// Approvers were added to the current step (加签): it waits for every open task of it.
    #[serde(default)]
    pub waits_for_all: bool,
}

impl FakeInstance {
    /// User ids whose tasks are open now.
    pub fn open_approvers(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|t| t.status == "RUNNING")
            .map(|t| t.user_id.clone())
            .collect()
    }

    /// DingTalk's human-facing serial number of the instance.
    pub fn business_id(&self) -> String {
        format!("2024{:08}", self.create_ms.rem_euclid(100_000_000))
    }

    fn result_json(&self) -> Value {
        let mut approvers: Vec<String> = Vec::new();
        for step in &self.steps {
            for u in &step.user_ids {
                if !approvers.contains(u) {
                    approvers.push(u.clone());
                }
            }
        }
        let form: Vec<Value> = self.create_body["formComponentValues"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| json!({"name": f["name"], "value": f["value"], "componentType": "TextField"}))
                    .collect()
            })
            .unwrap_or_default();
        let mut result = json!({
            "title": self.title,
            "createTime": dingtalk_time(self.create_ms),
            "originatorUserId": self.originator_user_id,
            "originatorDeptId": self.create_body.get("deptId").map_or("-1".to_string(), |d| d.to_string()),
            "status": self.status,
            "result": self.result.clone().unwrap_or_default(),
            "businessId": self.business_id(),
            "approverUserIds": approvers,
            "ccUserIds": [],
            "formComponentValues": form,
            "tasks": self.tasks,
            "operationRecords": self.records,
        });
        if let Some(ms) = self.finish_ms {
            result["finishTime"] = json!(dingtalk_time(ms));
        }
        result
    }
}

/// One component of a fake template: what `GET .../forms/schemas/processCodes` shows and what a
/// create is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeComponent {
    /// `TextField`, `TextareaField`, `DDSelectField`, ...
    pub kind: String,
    pub label: String,
    pub required: bool,
}

impl FakeComponent {
    pub fn new(kind: &str, label: &str, required: bool) -> FakeComponent {
        FakeComponent {
            kind: kind.into(),
            label: label.into(),
            required,
        }
    }
}

/// The template every [`FakeDingTalk::add_process_code`] gets unless a test sets its own: Chinese
/// labels, as a team's template usually has, a required title and a required multi-line text.
pub fn default_template() -> Vec<FakeComponent> {
    vec![
        FakeComponent::new("TextField", "标题", true),
        FakeComponent::new("TextField", "申请人", false),
        FakeComponent::new("TextField", "申请类型", false),
        FakeComponent::new("TextareaField", "审批内容", true),
        FakeComponent::new("TextField", "工单号", false),
        FakeComponent::new("TextField", "申请原因", false),
        FakeComponent::new("DDSelectField", "紧急程度", false),
    ]
}

/// DingTalk keeps at most this many characters in one form value.
pub const MAX_FORM_VALUE_CHARS: usize = 65_535;

/// Counters and switches tests use to make DingTalk misbehave.
#[derive(Debug, Default)]
struct Faults {
    fail_creates: usize,
    fail_gets: usize,
    fail_terminates: usize,
    delay: Duration,
    /// Creates whose instance is made but whose reply is lost (the connection drops).
    lose_create_replies: usize,
    /// The next metered calls answer this throttling error (status, code).
    throttle: usize,
    throttle_reply: Option<(StatusCode, &'static str)>,
    /// Every metered call answers `Forbidden.AccessDenied.ApiCountLimitForOrg`.
    quota_spent: bool,
    /// Creates answer HTTP 200 without an instanceId, with this code.
    create_ok_without_id: Option<&'static str>,
}

#[derive(Debug)]
struct IssuedToken {
    token: String,
    expires_at: Instant,
    revoked: bool,
}

#[derive(Debug)]
struct Inner {
    app_key: String,
    app_secret: String,
    agent_id: Option<i64>,
    token_ttl: Duration,
    tokens: Vec<IssuedToken>,
    token_calls: usize,
    process_codes: BTreeSet<String>,
    templates: BTreeMap<String, Vec<FakeComponent>>,
    /// Users who left the organisation: creates and terminates naming them get `userNotExist`.
    departed: BTreeSet<String>,
    metered_calls: usize,
    terminate_grace: Duration,
    faults: Faults,
    calls: Vec<(String, String)>,
    creates: Vec<Value>,
    terminations: Vec<Value>,
    instances: BTreeMap<String, FakeInstance>,
    events: Vec<Value>,
    next_task_id: i64,
    /// The organisation's app list (`GET /v1.0/microApp/allInnerApps`, doctor's AgentId check).
    app_directory: AppDirectory,
}

struct Shared {
    inner: Mutex<Inner>,
    down: Arc<AtomicBool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock must not hide its own failure behind a poison error.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The fake DingTalk. Dropping it stops the server.
pub struct FakeDingTalk {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
    /// The same routes and state, for `bridge sandbox` to mount on its own port.
    router: Router,
}

impl Drop for FakeDingTalk {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeDingTalk {
    /// Starts the fake on 127.0.0.1 with a free port, accepting these app credentials.
    pub async fn start(app_key: &str, app_secret: &str) -> FakeDingTalk {
        let down = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                app_key: app_key.to_string(),
                app_secret: app_secret.to_string(),
                agent_id: None,
                token_ttl: Duration::from_secs(TOKEN_TTL_SECS),
                tokens: Vec::new(),
                token_calls: 0,
                process_codes: BTreeSet::new(),
                templates: BTreeMap::new(),
                departed: BTreeSet::new(),
                metered_calls: 0,
                terminate_grace: Duration::ZERO,
                faults: Faults::default(),
                calls: Vec::new(),
                creates: Vec::new(),
                terminations: Vec::new(),
                instances: BTreeMap::new(),
                events: Vec::new(),
                next_task_id: 60_000_000_001,
                app_directory: AppDirectory::default(),
            }),
            down: down.clone(),
        });
        let app = Router::new()
            .route("/v1.0/oauth2/accessToken", post(token_call))
            .route(
                "/v1.0/workflow/processInstances",
                post(create_call).get(get_call),
            )
            .route(
                "/v1.0/workflow/processInstances/terminate",
                post(terminate_call),
            )
            .route(
                "/v1.0/workflow/forms/schemas/processCodes",
                axum::routing::get(schema_call),
            )
            .route("/v1.0/workflow/forms", post(save_form_call))
            .route(
                "/v1.0/workflow/processes/instanceIds/query",
                post(instance_ids_call),
            )
            .route(
                "/v1.0/microApp/allInnerApps",
                axum::routing::get(inner_apps_call),
            )
            .fallback(unknown_call)
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake dingtalk");
        let addr = listener.local_addr().expect("fake dingtalk address");
        let gate = GateListener {
            inner: listener,
            down,
        };
        let router = app.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(gate, app).await;
        });
        FakeDingTalk {
            shared,
            addr,
            server,
            router,
        }
    }

    /// `http://127.0.0.1:PORT`, to use as `DINGTALK_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fake's routes on its state, for `bridge sandbox` to serve on its own port (the
    /// switches of this handle apply there too, except [`FakeDingTalk::set_down`]).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Puts back an instance kept from an earlier run (`bridge sandbox` restarts); later task ids
    /// follow the highest one restored.
    pub fn restore_instance(&self, instance: FakeInstance) {
        let mut inner = self.shared.lock();
        if let Some(max) = instance.tasks.iter().map(|t| t.task_id).max() {
            inner.next_task_id = inner.next_task_id.max(max);
        }
        inner.instances.insert(instance.id.clone(), instance);
    }

    /// Makes `code` a known approval template; creates with any other process code get `processCodeError`.
    /// It gets [`default_template`] unless it already has a template.
    pub fn add_process_code(&self, code: &str) {
        let mut inner = self.shared.lock();
        inner.process_codes.insert(code.to_string());
        inner
            .templates
            .entry(code.to_string())
            .or_insert_with(default_template);
    }

    /// Replaces the components of template `code` (and makes it known).
    pub fn set_template(&self, code: &str, components: Vec<FakeComponent>) {
        let mut inner = self.shared.lock();
        inner.process_codes.insert(code.to_string());
        inner.templates.insert(code.to_string(), components);
    }

    /// The components of template `code`.
    pub fn template(&self, code: &str) -> Option<Vec<FakeComponent>> {
        self.shared.lock().templates.get(code).cloned()
    }

    /// The next `n` creates make their instance, then drop the connection before replying.
    pub fn lose_create_replies(&self, n: usize) {
        self.shared.lock().faults.lose_create_replies = n;
    }

    /// The next `n` metered calls (all but the token call) answer HTTP 403
    /// `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`.
    pub fn throttle(&self, n: usize) {
        self.throttle_with(
            n,
            StatusCode::FORBIDDEN,
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        );
    }

    /// The next `n` metered calls answer `status` with `code` (e.g. 429 `Throttling`, 503 `systemBusy`).
    pub fn throttle_with(&self, n: usize, status: StatusCode, code: &'static str) {
        let mut inner = self.shared.lock();
        inner.faults.throttle = n;
        inner.faults.throttle_reply = Some((status, code));
    }

    /// While set, every metered call answers HTTP 403 `Forbidden.AccessDenied.ApiCountLimitForOrg`.
    pub fn set_quota_spent(&self, spent: bool) {
        self.shared.lock().faults.quota_spent = spent;
    }

    /// While set, creates answer HTTP 200 `{"code": code}` without an instanceId (and make none).
    pub fn set_create_ok_without_id(&self, code: Option<&'static str>) {
        self.shared.lock().faults.create_ok_without_id = code;
    }

    /// `user` leaves the organisation: creates naming them and terminates they operate fail with
    /// `userNotExist`.
    pub fn depart(&self, user: &str) {
        self.shared.lock().departed.insert(user.to_string());
    }

    /// Calls other than the token call the fake answered (DingTalk meters these).
    pub fn metered_calls(&self) -> usize {
        self.shared.lock().metered_calls
    }

    /// Makes creates with another `microappAgentId` fail, as DingTalk does for an app's wrong AgentId.
    pub fn set_agent_id(&self, agent_id: i64) {
        self.shared.lock().agent_id = Some(agent_id);
    }

    /// Lifetime of tokens issued from now on (DingTalk: 7200 s).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.lock().token_ttl = ttl;
    }

    /// Revokes every token issued so far: the next call with one gets 400 `InvalidAuthentication`, and the
    /// next token call issues a new token.
    pub fn expire_tokens(&self) {
        for t in self.shared.lock().tokens.iter_mut() {
            t.revoked = true;
        }
    }

    /// Resets the app's AppSecret, as the developer console does: token calls with the old one
    /// are refused (`invalidClientIdOrSecret`) and every token issued so far is revoked.
    pub fn set_app_secret(&self, app_secret: &str) {
        let mut inner = self.shared.lock();
        inner.app_secret = app_secret.to_string();
        for t in inner.tokens.iter_mut() {
            t.revoked = true;
        }
    }

    /// How many token calls were made (successful or not).
    pub fn token_calls(&self) -> usize {
        self.shared.lock().token_calls
    }

    /// The next `n` creates answer 500 `systemError` and create nothing.
    pub fn fail_creates(&self, n: usize) {
        self.shared.lock().faults.fail_creates = n;
    }

    /// The next `n` get calls answer 500 `systemError`.
    pub fn fail_gets(&self, n: usize) {
        self.shared.lock().faults.fail_gets = n;
    }

    /// The next `n` terminations answer 500 `systemError` and terminate nothing.
    pub fn fail_terminates(&self, n: usize) {
        self.shared.lock().faults.fail_terminates = n;
    }

    /// Every reply is held back this long (to provoke client timeouts).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().faults.delay = delay;
    }

    /// While down, connections are dropped without an HTTP answer, open ones included.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Terminations this soon after creation are refused (DingTalk: [`DINGTALK_TERMINATE_GRACE`]).
    pub fn set_terminate_grace(&self, grace: Duration) {
        self.shared.lock().terminate_grace = grace;
    }

    /// Bodies of the accepted creates, in order, exactly as sent.
    pub fn creates(&self) -> Vec<Value> {
        self.shared.lock().creates.clone()
    }

    /// Bodies of the accepted terminations, in order, exactly as sent.
    pub fn terminations(&self) -> Vec<Value> {
        self.shared.lock().terminations.clone()
    }

    /// Every request that reached the fake: (method, path), token calls included.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.shared.lock().calls.clone()
    }

    /// An instance as the fake holds it.
    pub fn instance(&self, id: &str) -> Option<FakeInstance> {
        self.shared.lock().instances.get(id).cloned()
    }

    /// Ids of all instances, in creation order.
    pub fn instance_ids(&self) -> Vec<String> {
        let inner = self.shared.lock();
        let mut all: Vec<&FakeInstance> = inner.instances.values().collect();
        all.sort_by_key(|i| (i.create_ms, i.created_at));
        all.into_iter().map(|i| i.id.clone()).collect()
    }

    /// The events DingTalk would have pushed so far (`bpms_instance_change`, `bpms_task_change`), as the
    /// plain JSON found inside `encrypt`, in order.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// Takes the recorded events, leaving none.
    pub fn take_events(&self) -> Vec<Value> {
        std::mem::take(&mut self.shared.lock().events)
    }

    /// `user_id` approves (`agree`) or refuses their open task, as in the DingTalk app. The flow moves on:
    /// an OR step is decided by the first answer, an AND step needs every approver, a refusal ends the
    /// instance refused, the last step's approval completes it approved.
    pub fn act(
        &self,
        instance_id: &str,
        user_id: &str,
        agree: bool,
        remark: &str,
    ) -> Result<(), String> {
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let inst = inner
            .instances
            .get_mut(instance_id)
            .ok_or("no such instance")?;
        if inst.status != "RUNNING" {
            return Err(format!("instance is {}", inst.status));
        }
        let now = now_ms();
        let verdict = if agree { "AGREE" } else { "REFUSE" };
        let activity_id = end_open_task(
            inst,
            &mut inner.events,
            user_id,
            TaskEnd {
                status: "COMPLETED",
                result: verdict,
                record: ("EXECUTE_TASK_NORMAL", verdict, "审批人"),
                event_result: verdict,
            },
            remark,
            now,
        )?;
        let step = inst.steps.get(inst.current_step).cloned();
        let step_done = !agree
            || (!inst.waits_for_all && step.as_ref().is_none_or(|s| s.action_type != "AND"))
            || !inst
                .tasks
                .iter()
                .any(|t| t.activity_id == activity_id && t.status == "RUNNING");
        if !agree {
            cancel_open_tasks(inst, &mut inner.events, now);
            complete(inst, &mut inner.events, "refuse", now);
        } else if step_done {
            cancel_open_tasks(inst, &mut inner.events, now);
            inst.waits_for_all = false;
            inst.current_step += 1;
            if inst.current_step < inst.steps.len() {
                start_step(inst, &mut inner.next_task_id, &mut inner.events, now);
            } else {
                complete(inst, &mut inner.events, "agree", now);
            }
        }
        Ok(())
    }

    /// `from` hands their open task to `to` (DingTalk's transfer): the task ends `REDIRECTED` and `to`
    /// gets a new one in the same step.
    pub fn transfer(
        &self,
        instance_id: &str,
        from: &str,
        to: &str,
        remark: &str,
    ) -> Result<(), String> {
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let inst = inner
            .instances
            .get_mut(instance_id)
            .ok_or("no such instance")?;
        let now = now_ms();
        let activity_id = end_open_task(
            inst,
            &mut inner.events,
            from,
            TaskEnd {
                status: "CANCELED",
                result: "REDIRECTED",
                record: ("REDIRECT_TASK", "NONE", "转交"),
                event_result: "redirect",
            },
            remark,
            now,
        )?;
        if let Some(step) = inst.steps.get_mut(inst.current_step) {
            for u in step.user_ids.iter_mut().filter(|u| *u == from) {
                *u = to.to_string();
            }
        }
        let new_id = next_id(&mut inner.next_task_id);
        inst.tasks.push(FakeTask {
            task_id: new_id,
            user_id: to.into(),
            status: "RUNNING".into(),
            result: "NONE".into(),
            activity_id,
            create_time: dingtalk_time(now),
            finish_time: None,
        });
        inner
            .events
            .push(task_event(inst, new_id, to, "start", None, "", now));
        Ok(())
    }

    /// `by` adds approvers after themselves (加签, DingTalk's `APPEND_TASK_AFTER`): their own task
    /// completes `AGREE` and the step now also waits for every added approver (new tasks in the same
    /// activity); in an OR step the others' open tasks are cancelled, as `by` decided it.
    pub fn add_approvers(
        &self,
        instance_id: &str,
        by: &str,
        added: &[&str],
        remark: &str,
    ) -> Result<(), String> {
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let inst = inner
            .instances
            .get_mut(instance_id)
            .ok_or("no such instance")?;
        if added.is_empty() {
            return Err("no approvers to add".into());
        }
        let now = now_ms();
        let activity_id = end_open_task(
            inst,
            &mut inner.events,
            by,
            TaskEnd {
                status: "COMPLETED",
                result: "AGREE",
                record: ("APPEND_TASK_AFTER", "AGREE", "加签"),
                event_result: "AGREE",
            },
            remark,
            now,
        )?;
        // An AND step still waits for its other approvers, and now for the added ones too; an OR
        // step was decided by `by`, and the added approvers take it over, all of them. The step's
        // own approvers stay as configured (a send-back restarts it with them).
        if inst
            .steps
            .get(inst.current_step)
            .is_some_and(|s| s.action_type != "AND")
        {
            cancel_open_tasks(inst, &mut inner.events, now);
        }
        inst.waits_for_all = true;
        for user in added {
            let new_id = next_id(&mut inner.next_task_id);
            inst.tasks.push(FakeTask {
                task_id: new_id,
                user_id: (*user).into(),
                status: "RUNNING".into(),
                result: "NONE".into(),
                activity_id: activity_id.clone(),
                create_time: dingtalk_time(now),
                finish_time: None,
            });
            inner
                .events
                .push(task_event(inst, new_id, user, "start", None, "", now));
        }
        Ok(())
    }

    /// `by` sends the instance back to an earlier step (退回, DingTalk's `REDIRECT_PROCESS`): their
    /// task ends without a verdict, the step's other open tasks are cancelled, and step `to_step`
    /// (0-based) starts again with new tasks in its own activity. The push is a task `finish` with
    /// result `redirect`, as for a transfer: only the instance tells the two apart.
    pub fn send_back(
        &self,
        instance_id: &str,
        by: &str,
        to_step: usize,
        remark: &str,
    ) -> Result<(), String> {
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let inst = inner
            .instances
            .get_mut(instance_id)
            .ok_or("no such instance")?;
        if to_step >= inst.current_step {
            return Err(format!(
                "step {to_step} is not before the current step {}",
                inst.current_step
            ));
        }
        let now = now_ms();
        end_open_task(
            inst,
            &mut inner.events,
            by,
            TaskEnd {
                status: "COMPLETED",
                result: "NONE",
                record: ("REDIRECT_PROCESS", "NONE", "退回"),
                event_result: "redirect",
            },
            remark,
            now,
        )?;
        cancel_open_tasks(inst, &mut inner.events, now);
        inst.waits_for_all = false;
        inst.current_step = to_step;
        start_step(inst, &mut inner.next_task_id, &mut inner.events, now);
        Ok(())
    }

    /// `user` comments on the instance without deciding (DingTalk's `ADD_REMARK`).
    pub fn comment(&self, instance_id: &str, user: &str, remark: &str) -> Result<(), String> {
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let inst = inner
            .instances
            .get_mut(instance_id)
            .ok_or("no such instance")?;
        let now = now_ms();
        inst.records.push(FakeRecord {
            user_id: user.into(),
            date: dingtalk_time(now),
            record_type: "ADD_REMARK".into(),
            result: "NONE".into(),
            remark: Some(remark.to_string()),
            show_name: "评论".into(),
            activity_id: None,
        });
        let mut e = event_base("bpms_task_change", inst, now);
        e.insert("type".into(), json!("comment"));
        e.insert("staffId".into(), json!(user));
        e.insert("remark".into(), json!(remark));
        inner.events.push(Value::Object(e));
        Ok(())
    }

    /// Ends a running instance at once with `agree` or `refuse`, whatever its steps (a template flow the
    /// fake does not model, or a shortcut for tests).
    pub fn finish(&self, instance_id: &str, agree: bool) -> Result<(), String> {
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let inst = inner
            .instances
            .get_mut(instance_id)
            .ok_or("no such instance")?;
        if inst.status != "RUNNING" {
            return Err(format!("instance is {}", inst.status));
        }
        let now = now_ms();
        cancel_open_tasks(inst, &mut inner.events, now);
        inst.current_step = inst.steps.len();
        complete(
            inst,
            &mut inner.events,
            if agree { "agree" } else { "refuse" },
            now,
        );
        Ok(())
    }

    /// The originator withdraws the instance in the DingTalk app (not through the API).
    pub fn withdraw_in_app(&self, instance_id: &str, remark: &str) -> Result<(), String> {
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let inst = inner
            .instances
            .get_mut(instance_id)
            .ok_or("no such instance")?;
        if inst.status != "RUNNING" {
            return Err(format!("instance is {}", inst.status));
        }
        let originator = inst.originator_user_id.clone();
        terminate(inst, &mut inner.events, &originator, remark, now_ms());
        Ok(())
    }
}

fn next_id(counter: &mut i64) -> i64 {
    *counter += 1;
    *counter
}

fn start_step(inst: &mut FakeInstance, task_ids: &mut i64, events: &mut Vec<Value>, now: i64) {
    let Some(step) = inst.steps.get(inst.current_step).cloned() else {
        return;
    };
    let activity_id = format!("act-{}", inst.current_step + 1);
    for user in &step.user_ids {
        let task_id = next_id(task_ids);
        inst.tasks.push(FakeTask {
            task_id,
            user_id: user.clone(),
            status: "RUNNING".into(),
            result: "NONE".into(),
            activity_id: activity_id.clone(),
            create_time: dingtalk_time(now),
            finish_time: None,
        });
        events.push(task_event(inst, task_id, user, "start", None, "", now));
    }
}

fn cancel_open_tasks(inst: &mut FakeInstance, events: &mut Vec<Value>, now: i64) {
    let mut canceled = Vec::new();
    for t in inst.tasks.iter_mut().filter(|t| t.status == "RUNNING") {
        t.status = "CANCELED".into();
        t.finish_time = Some(dingtalk_time(now));
        canceled.push((t.task_id, t.user_id.clone()));
    }
    for (task_id, user) in canceled {
        events.push(task_event(inst, task_id, &user, "cancel", None, "", now));
    }
}

fn complete(inst: &mut FakeInstance, events: &mut Vec<Value>, result: &str, now: i64) {
    inst.status = "COMPLETED".into();
    inst.result = Some(result.into());
    inst.finish_ms = Some(now);
    inst.records.push(FakeRecord {
        user_id: inst.originator_user_id.clone(),
        date: dingtalk_time(now),
        record_type: "FINISH_PROCESS_INSTANCE".into(),
        result: "NONE".into(),
        remark: None,
        show_name: "结束".into(),
        activity_id: None,
    });
    events.push(instance_event(inst, "finish", Some(result), now));
}

fn terminate(
    inst: &mut FakeInstance,
    events: &mut Vec<Value>,
    operator: &str,
    remark: &str,
    now: i64,
) {
    cancel_open_tasks(inst, events, now);
    inst.status = "TERMINATED".into();
    inst.finish_ms = Some(now);
    inst.records.push(FakeRecord {
        user_id: operator.into(),
        date: dingtalk_time(now),
        record_type: "TERMINATE_PROCESS_INSTANCE".into(),
        result: "NONE".into(),
        remark: (!remark.is_empty()).then(|| remark.to_string()),
        show_name: "撤销".into(),
        activity_id: None,
    });
    events.push(instance_event(inst, "terminate", None, now));
}

fn event_base(kind: &str, inst: &FakeInstance, now: i64) -> Map<String, Value> {
    let mut e = Map::new();
    e.insert("EventType".into(), json!(kind));
    e.insert("eventId".into(), json!(random_hex(32)));
    e.insert("EventTime".into(), json!(now.to_string()));
    e.insert("CorpId".into(), json!(FAKE_CORP_ID));
    e.insert("processInstanceId".into(), json!(inst.id));
    e.insert("processCode".into(), json!(inst.process_code));
    e.insert("title".into(), json!(inst.title));
    e.insert("createTime".into(), json!(inst.create_ms));
    e.insert("bizCategoryId".into(), json!(""));
    e
}

fn instance_event(inst: &FakeInstance, kind: &str, result: Option<&str>, now: i64) -> Value {
    let mut e = event_base("bpms_instance_change", inst, now);
    e.insert("type".into(), json!(kind));
    e.insert("staffId".into(), json!(inst.originator_user_id));
    e.insert(
        "url".into(),
        json!(format!(
            "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm?procInstId={}",
            inst.id
        )),
    );
    e.insert("businessId".into(), json!(inst.business_id()));
    if kind != "start" {
        e.insert("finishTime".into(), json!(now));
    }
    if let Some(r) = result {
        e.insert("result".into(), json!(r));
    }
    Value::Object(e)
}

/// How an approver's action ends their open task, as DingTalk shows it: the task's status and
/// result, its operation record (type, result, shown name) and the pushed event's `result`.
struct TaskEnd<'a> {
    status: &'a str,
    result: &'a str,
    record: (&'a str, &'a str, &'a str),
    event_result: &'a str,
}

/// Ends `user`'s open task, the first step of every approver action: the task, the operation
/// record and the `finish` push. Returns the task's activity (its node).
fn end_open_task(
    inst: &mut FakeInstance,
    events: &mut Vec<Value>,
    user: &str,
    end: TaskEnd<'_>,
    remark: &str,
    now: i64,
) -> Result<String, String> {
    let pos = inst
        .tasks
        .iter()
        .position(|t| t.user_id == user && t.status == "RUNNING")
        .ok_or_else(|| format!("{user} has no open task"))?;
    let task = &mut inst.tasks[pos];
    task.status = end.status.into();
    task.result = end.result.into();
    task.finish_time = Some(dingtalk_time(now));
    let (task_id, activity_id) = (task.task_id, task.activity_id.clone());
    let (record_type, record_result, show_name) = end.record;
    inst.records.push(FakeRecord {
        user_id: user.into(),
        date: dingtalk_time(now),
        record_type: record_type.into(),
        result: record_result.into(),
        remark: (!remark.is_empty()).then(|| remark.to_string()),
        show_name: show_name.into(),
        activity_id: Some(activity_id.clone()),
    });
    events.push(task_event(
        inst,
        task_id,
        user,
        "finish",
        Some(end.event_result),
        remark,
        now,
    ));
    Ok(activity_id)
}

fn task_event(
    inst: &FakeInstance,
    task_id: i64,
    staff: &str,
    kind: &str,
    result: Option<&str>,
    remark: &str,
    now: i64,
) -> Value {
    let mut e = event_base("bpms_task_change", inst, now);
    e.insert("type".into(), json!(kind));
    e.insert("taskId".into(), json!(task_id));
    e.insert("staffId".into(), json!(staff));
    if kind != "start" {
        e.insert("finishTime".into(), json!(now));
    }
    if let Some(r) = result {
        e.insert("result".into(), json!(r.to_ascii_lowercase()));
    }
    if !remark.is_empty() {
        e.insert("remark".into(), json!(remark));
    }
    Value::Object(e)
}

// ---------------------------------------------------------------------------------------------------------
// HTTP side

/// DingTalk's error reply: HTTP status with `{"code", "message", "requestid"}`.
struct Reject {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "requestid": random_hex(32).to_uppercase(),
        });
        (self.status, Json(body)).into_response()
    }
}

/// Handlers answer a JSON body or DingTalk's error.
type Reply = Result<Response, Reject>;

fn dt_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Reject {
    Reject {
        status,
        code,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> Reject {
    dt_error(StatusCode::BAD_REQUEST, "invalidParameter", message)
}

fn system_error() -> Reject {
    dt_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "systemError",
        "系统繁忙 (system error)",
    )
}

/// Records the call and applies the configured delay; every handler starts here.
async fn arrive(shared: &Shared, method: Method, path: &str) {
    let delay = {
        let mut inner = shared.lock();
        inner.calls.push((method.to_string(), path.to_string()));
        inner.faults.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// The token must come in `x-acs-dingtalk-access-token` and nowhere else, and must be live.
fn authenticate(shared: &Shared, headers: &HeaderMap, query: Option<&str>) -> Result<(), Reject> {
    let in_query = query.is_some_and(|q| {
        url_pairs(q).any(|(k, _)| {
            k.eq_ignore_ascii_case("access_token") || k.eq_ignore_ascii_case("accessToken")
        })
    });
    if in_query || headers.contains_key(axum::http::header::AUTHORIZATION) {
        return Err(invalid(
            "the access token goes in the x-acs-dingtalk-access-token header only",
        ));
    }
    let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "AuthenticationFailed.MissingParameter",
            "x-acs-dingtalk-access-token is missing",
        ));
    };
    let mut inner = shared.lock();
    inner.metered_calls += 1;
    if inner.faults.quota_spent {
        return Err(dt_error(
            StatusCode::FORBIDDEN,
            "Forbidden.AccessDenied.ApiCountLimitForOrg",
            "您的企业本月api调用量已超过限制 (the organisation's monthly API budget is spent)",
        ));
    }
    if inner.faults.throttle > 0 {
        inner.faults.throttle -= 1;
        let (status, code) = inner
            .faults
            .throttle_reply
            .unwrap_or((StatusCode::TOO_MANY_REQUESTS, "Throttling"));
        return Err(dt_error(status, code, "请求被流控 (too many requests)"));
    }
    let now = Instant::now();
    let live = inner
        .tokens
        .iter()
        .any(|t| t.token == token && !t.revoked && now < t.expires_at);
    if live {
        Ok(())
    } else {
        Err(dt_error(
            StatusCode::BAD_REQUEST,
            "InvalidAuthentication",
            "不合法的access_token (invalid or expired token)",
        ))
    }
}

fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, Reject> {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(invalid("Content-Type must be application/json"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(invalid("the body is not a JSON object")),
    }
}

async fn token_call(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Reply {
    arrive(&shared, Method::POST, "/v1.0/oauth2/accessToken").await;
    shared.lock().token_calls += 1;
    let body = json_body(&headers, &body)?;
    let (Some(key), Some(secret)) = (
        body.get("appKey").and_then(Value::as_str),
        body.get("appSecret").and_then(Value::as_str),
    ) else {
        return Err(invalid("appKey and appSecret are required strings"));
    };
    let mut inner = shared.lock();
    if key != inner.app_key || secret != inner.app_secret {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
        ));
    }
    let now = Instant::now();
    if let Some(t) = inner
        .tokens
        .iter()
        .rev()
        .find(|t| !t.revoked && now < t.expires_at)
    {
        let left = t.expires_at.duration_since(now).as_secs();
        return Ok(Json(json!({"accessToken": t.token, "expireIn": left})).into_response());
    }
    let ttl = inner.token_ttl;
    let token = random_hex(32);
    inner.tokens.push(IssuedToken {
        token: token.clone(),
        expires_at: now + ttl,
        revoked: false,
    });
    Ok(Json(json!({"accessToken": token, "expireIn": ttl.as_secs()})).into_response())
}

async fn create_call(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    arrive(&shared, Method::POST, "/v1.0/workflow/processInstances").await;
    authenticate(&shared, &headers, query.as_deref())?;
    let body = json_body(&headers, &body)?;
    let mut inner = shared.lock();
    if inner.faults.fail_creates > 0 {
        inner.faults.fail_creates -= 1;
        return Err(system_error());
    }
    let req = check_create(&body, &inner.process_codes, inner.agent_id)?;
    check_form(&body, inner.templates.get(&req.process_code))?;
    if let Some(user) = std::iter::once(&req.originator)
        .chain(req.steps.iter().flat_map(|s| &s.user_ids))
        .find(|u| inner.departed.contains(*u))
    {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "userNotExist",
            format!("用户不存在 (user {user} is not in the organisation)"),
        ));
    }
    if let Some(code) = inner.faults.create_ok_without_id {
        return Ok(
            Json(json!({"code": code, "message": "发起审批实例失败", "success": false}))
                .into_response(),
        );
    }
    let lose_reply = inner.faults.lose_create_replies > 0;
    if lose_reply {
        inner.faults.lose_create_replies -= 1;
    }
    let now = now_ms();
    let id = uuid_like();
    let title = format!("{}提交的审批", req.originator);
    let mut inst = FakeInstance {
        id: id.clone(),
        process_code: req.process_code,
        originator_user_id: req.originator.clone(),
        title,
        status: "RUNNING".into(),
        result: None,
        steps: req.steps,
        current_step: 0,
        tasks: Vec::new(),
        records: vec![FakeRecord {
            user_id: req.originator,
            date: dingtalk_time(now),
            record_type: "START_PROCESS_INSTANCE".into(),
            result: "NONE".into(),
            remark: None,
            show_name: "发起审批".into(),
            activity_id: None,
        }],
        create_body: Value::Object(body.clone()),
        created_at: Instant::now(),
        create_ms: now,
        finish_ms: None,
        waits_for_all: false,
    };
    let inner = &mut *inner;
    inner.events.push(instance_event(&inst, "start", None, now));
    start_step(&mut inst, &mut inner.next_task_id, &mut inner.events, now);
    inner.instances.insert(id.clone(), inst);
    inner.creates.push(Value::Object(body));
    if lose_reply {
        // Unwinding the connection's task drops the connection without a reply, as a reset after
        // DingTalk made the instance would; `resume_unwind` skips the panic hook (no noise). The
        // lock is left poisoned, which `Shared::lock` ignores.
        std::panic::resume_unwind(Box::new("fake dingtalk: create reply lost"));
    }
    Ok(Json(json!({"instanceId": id})).into_response())
}

/// The form must be the template's: only its labels, its required components filled, values
/// within DingTalk's lengths.
fn check_form(
    body: &Map<String, Value>,
    template: Option<&Vec<FakeComponent>>,
) -> Result<(), Reject> {
    let Some(template) = template else {
        return Ok(());
    };
    let form = body
        .get("formComponentValues")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for f in &form {
        let name = f["name"].as_str().unwrap_or_default();
        let Some(component) = template.iter().find(|c| c.label == name) else {
            return Err(dt_error(
                StatusCode::BAD_REQUEST,
                "formConverterError",
                format!("表单转换错误: the template has no component labelled {name:?}"),
            ));
        };
        let value = f["value"].as_str().unwrap_or_default();
        if value.chars().count() > MAX_FORM_VALUE_CHARS {
            return Err(invalid(format!(
                "formComponentValues {name:?} is longer than {MAX_FORM_VALUE_CHARS} characters"
            )));
        }
        if component.kind == "TextField" && value.contains('\n') {
            return Err(invalid(format!(
                "formComponentValues {name:?} is a one-line TextField but has line breaks"
            )));
        }
    }
    for c in template.iter().filter(|c| c.required) {
        let filled = form.iter().any(|f| {
            f["name"] == c.label.as_str()
                && f["value"].as_str().is_some_and(|v| !v.trim().is_empty())
        });
        if !filled {
            return Err(dt_error(
                StatusCode::BAD_REQUEST,
                "formConverterError",
                format!("表单转换错误: required component {:?} is empty", c.label),
            ));
        }
    }
    Ok(())
}

async fn schema_call(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    arrive(
        &shared,
        Method::GET,
        "/v1.0/workflow/forms/schemas/processCodes",
    )
    .await;
    authenticate(&shared, &headers, query.as_deref())?;
    let code = query
        .as_deref()
        .and_then(|q| {
            url_pairs(q)
                .find(|(k, _)| k == "processCode")
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("processCode is required"))?;
    let inner = shared.lock();
    let Some(template) = inner.templates.get(&code) else {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "processCodeError",
            format!("processCode {code} does not exist"),
        ));
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let items: Vec<Value> = template
        .iter()
        .map(|c| {
            let n = counts.entry(c.kind.as_str()).or_default();
            *n += 1;
            json!({"componentName": c.kind, "props": {
                "id": format!("{}-{}", c.kind, n), "label": c.label, "required": c.required}})
        })
        .collect();
    Ok(Json(json!({"result": {"schemaContent": {"title": code, "items": items}}})).into_response())
}

async fn save_form_call(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    arrive(&shared, Method::POST, "/v1.0/workflow/forms").await;
    authenticate(&shared, &headers, query.as_deref())?;
    let body = json_body(&headers, &body)?;
    if body
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(|n| n.trim().is_empty())
    {
        return Err(invalid("name is required"));
    }
    let Some(items) = body.get("formComponents").and_then(Value::as_array) else {
        return Err(invalid("formComponents must be a list"));
    };
    let mut components = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item["componentType"].as_str().unwrap_or_default();
        let label = item["props"]["label"].as_str().unwrap_or_default();
        if kind.is_empty() || label.trim().is_empty() {
            return Err(invalid(format!(
                "formComponents[{i}] needs componentType and props.label"
            )));
        }
        components.push(FakeComponent::new(
            kind,
            label,
            item["props"]["required"] == true,
        ));
    }
    let code = match body.get("processCode").and_then(Value::as_str) {
        Some(c) if !c.is_empty() => c.to_string(),
        _ => format!("PROC-{}", random_hex(16).to_uppercase()),
    };
    let mut inner = shared.lock();
    inner.process_codes.insert(code.clone());
    inner.templates.insert(code.clone(), components);
    Ok(Json(json!({"result": {"processCode": code}})).into_response())
}

async fn instance_ids_call(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    arrive(
        &shared,
        Method::POST,
        "/v1.0/workflow/processes/instanceIds/query",
    )
    .await;
    authenticate(&shared, &headers, query.as_deref())?;
    let body = json_body(&headers, &body)?;
    let code = body
        .get("processCode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(start) = body.get("startTime").and_then(Value::as_i64) else {
        return Err(invalid("startTime is required (ms)"));
    };
    let end = body
        .get("endTime")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MAX);
    let size = body.get("size").and_then(Value::as_u64).unwrap_or(20);
    if size == 0 || size > 20 {
        return Err(invalid("size must be 1..=20"));
    }
    let users: Option<Vec<String>> = body.get("userIds").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    });
    let statuses: Option<Vec<String>> = match body.get("statuses") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid("statuses must be a list of strings"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(invalid("statuses must be a list of strings")),
    };
    let offset: usize = match body.get("nextToken") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    };
    let inner = shared.lock();
    if !inner.process_codes.contains(code) {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "processCodeError",
            format!("processCode {code} does not exist"),
        ));
    }
    let mut found: Vec<&FakeInstance> = inner
        .instances
        .values()
        .filter(|i| i.process_code == code && i.create_ms >= start && i.create_ms <= end)
        .filter(|i| {
            users
                .as_ref()
                .is_none_or(|u| u.is_empty() || u.contains(&i.originator_user_id))
        })
        // `statuses`: only instances in one of these states (NEW, RUNNING, TERMINATED, ...).
        .filter(|i| {
            statuses
                .as_ref()
                .is_none_or(|s| s.is_empty() || s.contains(&i.status))
        })
        .collect();
    found.sort_by_key(|i| std::cmp::Reverse(i.create_ms));
    let page: Vec<&str> = found
        .iter()
        .skip(offset)
        .take(size as usize)
        .map(|i| i.id.as_str())
        .collect();
    let mut result = json!({"list": page});
    if offset + page.len() < found.len() {
        result["nextToken"] = json!((offset + page.len()).to_string());
    }
    Ok(Json(json!({"result": result, "success": true})).into_response())
}

struct CheckedCreate {
    originator: String,
    process_code: String,
    steps: Vec<FakeStep>,
}

/// DingTalk's own checks on a create, each failure naming its field.
fn check_create(
    body: &Map<String, Value>,
    process_codes: &BTreeSet<String>,
    agent_id: Option<i64>,
) -> Result<CheckedCreate, Reject> {
    let non_empty_str = |field: &str| match body.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(_) => Err(invalid(format!("{field} must be a non-empty string"))),
        None => Err(invalid(format!("{field} is required"))),
    };
    let originator = non_empty_str("originatorUserId")?;
    let process_code = non_empty_str("processCode")?;
    if !process_codes.contains(&process_code) {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "processCodeError",
            format!("processCode {process_code} does not exist"),
        ));
    }
    for field in ["deptId", "microappAgentId"] {
        if let Some(v) = body.get(field) {
            if !v.is_i64() {
                return Err(invalid(format!("{field} must be a number")));
            }
        }
    }
    if let (Some(expected), Some(sent)) = (
        agent_id,
        body.get("microappAgentId").and_then(Value::as_i64),
    ) {
        if expected != sent {
            return Err(dt_error(
                StatusCode::BAD_REQUEST,
                "invalidAgentId",
                format!("microappAgentId {sent} is not the AgentId of this app"),
            ));
        }
    }
    let mut steps = Vec::new();
    if let Some(approvers) = body.get("approvers") {
        let Some(list) = approvers.as_array() else {
            return Err(invalid("approvers must be a list"));
        };
        if list.len() > 20 {
            return Err(invalid(format!(
                "approvers has {} entries, at most 20 are allowed",
                list.len()
            )));
        }
        for (i, step) in list.iter().enumerate() {
            let action = step
                .get("actionType")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !matches!(action, "AND" | "OR" | "NONE") {
                return Err(invalid(format!(
                    "approvers[{i}].actionType must be AND, OR or NONE"
                )));
            }
            let users: Option<Vec<String>> =
                step.get("userIds").and_then(Value::as_array).map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().filter(|s| !s.is_empty()).map(str::to_string))
                        .collect()
                });
            let raw_len = step
                .get("userIds")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let users = match users {
                Some(u) if !u.is_empty() && u.len() == raw_len => u,
                _ => {
                    return Err(invalid(format!(
                        "approvers[{i}].userIds must be a non-empty list of user ids"
                    )))
                }
            };
            if action == "NONE" && users.len() != 1 {
                return Err(invalid(format!(
                    "approvers[{i}].actionType NONE needs exactly one user"
                )));
            }
            steps.push(FakeStep {
                action_type: action.to_string(),
                user_ids: users,
            });
        }
    }
    if let Some(cc) = body.get("ccList") {
        if !cc
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
        {
            return Err(invalid("ccList must be a list of user ids"));
        }
    }
    if let Some(pos) = body.get("ccPosition") {
        if !matches!(pos.as_str(), Some("START" | "FINISH" | "START_FINISH")) {
            return Err(invalid("ccPosition must be START, FINISH or START_FINISH"));
        }
    }
    let Some(form) = body.get("formComponentValues") else {
        return Err(invalid("formComponentValues is required"));
    };
    let Some(form) = form.as_array() else {
        return Err(invalid("formComponentValues must be a list"));
    };
    if form.len() > 150 {
        return Err(invalid(format!(
            "formComponentValues has {} entries, at most 150 are allowed",
            form.len()
        )));
    }
    for (i, f) in form.iter().enumerate() {
        if f.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(invalid(format!(
                "formComponentValues[{i}].name must be a non-empty string"
            )));
        }
        if !f.get("value").is_some_and(Value::is_string) {
            return Err(invalid(format!(
                "formComponentValues[{i}].value must be a string"
            )));
        }
        if f.get("details").is_some_and(|d| !d.is_array()) {
            return Err(invalid(format!(
                "formComponentValues[{i}].details must be a list"
            )));
        }
    }
    Ok(CheckedCreate {
        originator,
        process_code,
        steps,
    })
}

async fn get_call(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    arrive(&shared, Method::GET, "/v1.0/workflow/processInstances").await;
    authenticate(&shared, &headers, query.as_deref())?;
    let id = query
        .as_deref()
        .and_then(|q| {
            url_pairs(q)
                .find(|(k, _)| k == "processInstanceId")
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_empty());
    let Some(id) = id else {
        return Err(invalid("processInstanceId is required"));
    };
    let mut inner = shared.lock();
    if inner.faults.fail_gets > 0 {
        inner.faults.fail_gets -= 1;
        return Err(system_error());
    }
    match inner.instances.get(&id) {
        Some(inst) => {
            Ok(Json(json!({"success": "true", "result": inst.result_json()})).into_response())
        }
        None => Err(dt_error(
            StatusCode::BAD_REQUEST,
            "processInstanceNotExist",
            format!("process instance {id} does not exist"),
        )),
    }
}

async fn terminate_call(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    arrive(
        &shared,
        Method::POST,
        "/v1.0/workflow/processInstances/terminate",
    )
    .await;
    authenticate(&shared, &headers, query.as_deref())?;
    let body = json_body(&headers, &body)?;
    let Some(id) = body
        .get("processInstanceId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(invalid("processInstanceId is required"));
    };
    let is_system = match body.get("isSystem") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("isSystem must be a boolean")),
        None => return Err(invalid("isSystem is required")),
    };
    let remark = match body.get("remark") {
        Some(Value::String(s)) if s.chars().count() > 1024 => {
            return Err(invalid("remark is longer than 1024 characters"))
        }
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return Err(invalid("remark must be a string")),
    };
    let operator = match body.get("operatingUserId") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(invalid("operatingUserId must be a string")),
    };
    let mut inner = shared.lock();
    if inner.faults.fail_terminates > 0 {
        inner.faults.fail_terminates -= 1;
        return Err(system_error());
    }
    let grace = inner.terminate_grace;
    let inner = &mut *inner;
    let Some(inst) = inner.instances.get_mut(id) else {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "processInstanceNotExist",
            format!("process instance {id} does not exist"),
        ));
    };
    if operator
        .as_ref()
        .is_some_and(|o| inner.departed.contains(o))
    {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "userNotExist",
            "用户不存在 (the operating user left the organisation)",
        ));
    }
    if inst.created_at.elapsed() < grace {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "aflowProcessInstStatusException",
            format!(
                "a process instance cannot be terminated within {} seconds of its creation",
                grace.as_secs_f64()
            ),
        ));
    }
    if inst.status != "RUNNING" && inst.status != "NEW" {
        return Err(dt_error(
            StatusCode::BAD_REQUEST,
            "aflowProcessInstStatusException",
            format!(
                "process instance is {}, only running instances can be terminated",
                inst.status
            ),
        ));
    }
    if !is_system && operator.as_deref() != Some(inst.originator_user_id.as_str()) {
        return Err(invalid(
            "operatingUserId must be the originator unless isSystem is true",
        ));
    }
    let who = operator.unwrap_or_else(|| inst.originator_user_id.clone());
    terminate(inst, &mut inner.events, &who, &remark, now_ms());
    inner.terminations.push(Value::Object(body));
    Ok(Json(json!({"result": true, "success": true})).into_response())
}

// ---------------------------------------------------------------------------------------------------------
// The organisation's internal apps (`GET /v1.0/microApp/allInnerApps`): the app behind the AppKey is listed
// with the AgentId `set_agent_id` gave it, next to another app of the organisation. DingTalk answers only
// tokens of apps granted `qyapi_get_microapp_list`; others get 403 `AccessTokenPermissionDenied`.

/// AgentId and name of the organisation's other app in the list.
pub const OTHER_APP_AGENT_ID: i64 = 3_000_000_777;

#[derive(Debug)]
struct AppDirectory {
    /// The app holds the permission to read the list.
    readable: bool,
    /// The app is enabled (`appStatus` 1), not disabled in the developer console.
    enabled: bool,
}

impl Default for AppDirectory {
    fn default() -> Self {
        AppDirectory {
            readable: true,
            enabled: true,
        }
    }
}

impl FakeDingTalk {
    /// Withholds `qyapi_get_microapp_list`: the app list answers 403, as for an app never granted it.
    pub fn withhold_app_list_permission(&self) {
        self.shared.lock().app_directory.readable = false;
    }

    /// Disables the app in the developer console (`appStatus` 0 in the app list).
    pub fn disable_app(&self) {
        self.shared.lock().app_directory.enabled = false;
    }
}

async fn inner_apps_call(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    arrive(&shared, Method::GET, "/v1.0/microApp/allInnerApps").await;
    authenticate(&shared, &headers, query.as_deref())?;
    let inner = shared.lock();
    if !inner.app_directory.readable {
        return Err(dt_error(
            StatusCode::FORBIDDEN,
            "Forbidden.AccessDenied.AccessTokenPermissionDenied",
            "the app lacks the permission qyapi_get_microapp_list",
        ));
    }
    let app = |agent_id: i64, app_id: i64, name: &str, enabled: bool| {
        json!({"agentId": agent_id, "appId": app_id, "name": name, "desc": "",
            "icon": "", "homepageLink": "", "pcHomepageLink": "", "ompLink": "",
            "appStatus": if enabled { 1 } else { 0 }, "developType": 0})
    };
    let mut list = vec![app(OTHER_APP_AGENT_ID, 9_001, "Attendance", true)];
    if let Some(agent_id) = inner.agent_id {
        list.push(app(
            agent_id,
            9_002,
            &format!("Approval bridge ({})", inner.app_key),
            inner.app_directory.enabled,
        ));
    }
    Ok(Json(json!({"appList": list})).into_response())
}

async fn unknown_call(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Reject {
    arrive(&shared, method, uri.path()).await;
    dt_error(
        StatusCode::NOT_FOUND,
        "InvalidAction.NotFound",
        format!("no API at {}", uri.path()),
    )
}

/// Query pairs, percent-decoded.
fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

// ---------------------------------------------------------------------------------------------------------
// "Down": connections accepted and dropped, open ones broken, so clients see transport errors.

struct GateListener {
    inner: TcpListener,
    down: Arc<AtomicBool>,
}

impl axum::serve::Listener for GateListener {
    type Io = GateStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if self.down.load(Ordering::SeqCst) {
                        drop(stream);
                        continue;
                    }
                    return (
                        GateStream {
                            inner: stream,
                            down: self.down.clone(),
                        },
                        addr,
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

struct GateStream {
    inner: TcpStream,
    down: Arc<AtomicBool>,
}

impl GateStream {
    fn check(&self) -> io::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fake dingtalk is down",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for GateStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GateStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Ids and times

fn random_hex(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// An instance id shaped like DingTalk's (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
fn uuid_like() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// DingTalk's instance time format, `2022-08-31T11:52Z` (UTC, minutes).
pub fn dingtalk_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::dingtalk_time;

    #[test]
    fn formats_dingtalk_times() {
        assert_eq!(dingtalk_time(0), "1970-01-01T00:00Z");
        assert_eq!(dingtalk_time(1_661_946_720_000), "2022-08-31T11:52Z");
        assert_eq!(dingtalk_time(951_782_400_000), "2000-02-29T00:00Z");
    }
}
