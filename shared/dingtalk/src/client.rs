//! HTTP calls to DingTalk with a token cache shared by every clone of the client.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::error::DingTalkError;
use crate::form::FormSchema;
use crate::model::{
    ActionType, CreateInstance, InstanceDetail, MAX_APPROVER_STEPS, MAX_FORM_VALUES,
    MAX_TERMINATE_REMARK_CHARS,
};

/// Longest wait for a TCP/TLS connection to DingTalk.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one whole call, so a slow DingTalk cannot eat a Lambda's time budget.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A cached token is replaced this long before DingTalk says it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

const TOKEN_PATH: &str = "/v1.0/oauth2/accessToken";
const INSTANCES_PATH: &str = "/v1.0/workflow/processInstances";
const TERMINATE_PATH: &str = "/v1.0/workflow/processInstances/terminate";
const TOKEN_HEADER: &str = "x-acs-dingtalk-access-token";
const SCHEMA_PATH: &str = "/v1.0/workflow/forms/schemas/processCodes";
const FORMS_PATH: &str = "/v1.0/workflow/forms";
const INSTANCE_IDS_PATH: &str = "/v1.0/workflow/processes/instanceIds/query";
/// Throttled calls are repeated inside one request while this much time is left of its budget.
pub const RETRY_BUDGET: Duration = Duration::from_secs(3);
/// DingTalk asks for at least this long between a throttled call and its repeat.
const MIN_THROTTLE_WAIT: Duration = Duration::from_secs(1);
/// Pages of instance ids read when looking for a ticket's instance (20 ids a page).
const MAX_ID_PAGES: usize = 5;

/// Where DingTalk is and who the bridge is there.
#[derive(Clone, PartialEq, Eq)]
pub struct DingTalkConfig {
    /// `https://api.dingtalk.com` in production.
    pub api_base: String,
    pub app_key: String,
    pub app_secret: String,
    /// The micro-app's AgentId, sent as `microappAgentId`.
    pub agent_id: i64,
}

impl fmt::Debug for DingTalkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalkConfig")
            .field("api_base", &self.api_base)
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("agent_id", &self.agent_id)
            .finish()
    }
}

/// An HTTP client with the time limits DingTalk calls need (connect 2 s, whole call 5 s).
pub fn http_client() -> Result<reqwest::Client, DingTalkError> {
    // Never follows a redirect: it would carry the access token header to another host.
    outbound::client(CONNECT_TIMEOUT, TOTAL_TIMEOUT)
        .map_err(|e| DingTalkError::Transport(crate::error::shorten(&e.to_string())))
}

struct CachedToken {
    token: String,
    /// When the cache stops handing it out: [`REFRESH_MARGIN`] before DingTalk's expiry.
    refresh_at: Instant,
}

/// Asked for the AppSecret again when DingTalk refuses the one in use (a rotation this container
/// has not seen): answers the current value, re-read or not.
pub type SecretRefresher = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> + Send + Sync,
>;

/// Where the AppSecret is read at each token request, so a rotated value is used at once.
pub type SecretSource = Arc<dyn Fn() -> String + Send + Sync>;

/// DingTalk OA client. Cheap to clone; clones share the configuration and the token cache.
#[derive(Clone)]
pub struct DingTalkClient {
    cfg: Arc<DingTalkConfig>,
    /// The AppSecret in use when no [`SecretSource`] is set: `cfg.app_secret` until a refresher
    /// hands a new one.
    app_secret: Arc<std::sync::RwLock<String>>,
    source: Option<SecretSource>,
    refresher: Option<SecretRefresher>,
    base: Arc<str>,
    http: reqwest::Client,
    token: Arc<Mutex<Option<CachedToken>>>,
    timeout: Duration,
    retry_budget: Duration,
    /// Template schemas by process code, read once per container and again after a form error.
    schemas: Arc<std::sync::Mutex<HashMap<String, Arc<FormSchema>>>>,
    /// Set while the organisation's monthly API budget is spent.
    quota: Arc<std::sync::Mutex<Option<QuotaPause>>>,
    /// Requests sent to DingTalk by this client (every clone), token calls included.
    sent: Arc<AtomicU64>,
}

/// Metered calls are not sent before `until_ms` (Unix ms); `strikes` counts refusals in a row.
#[derive(Debug, Clone, Copy)]
struct QuotaPause {
    until_ms: i64,
    strikes: u32,
}

impl fmt::Debug for DingTalkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalkClient")
            .field("cfg", &self.cfg)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    originator_user_id: &'a str,
    process_code: &'a str,
    dept_id: i64,
    microapp_agent_id: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    approvers: Vec<ApproverBody<'a>>,
    form_component_values: Vec<FormBody<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApproverBody<'a> {
    action_type: ActionType,
    user_ids: &'a [String],
}

#[derive(Serialize)]
struct FormBody<'a> {
    name: &'a str,
    value: &'a str,
    /// The official SDK always sends it; DingTalk expects it on table components.
    details: [(); 0],
}

impl DingTalkClient {
    /// `http` should come from [`http_client`] (or carry its own connect timeout); every call is also held
    /// to [`TOTAL_TIMEOUT`].
    pub fn new(cfg: DingTalkConfig, http: reqwest::Client) -> Self {
        let base: Arc<str> = cfg.api_base.trim_end_matches('/').into();
        DingTalkClient {
            app_secret: Arc::new(std::sync::RwLock::new(cfg.app_secret.clone())),
            source: None,
            refresher: None,
            cfg: Arc::new(cfg),
            base,
            http,
            token: Arc::new(Mutex::new(None)),
            timeout: TOTAL_TIMEOUT,
            retry_budget: RETRY_BUDGET,
            schemas: Arc::default(),
            quota: Arc::default(),
            sent: Arc::default(),
        }
    }

    /// When DingTalk refuses the AppSecret (`invalidClientIdOrSecret`), asks `refresher` for the
    /// current one and, if it changed, fetches the token once more with it.
    pub fn with_secret_refresher(mut self, refresher: SecretRefresher) -> Self {
        self.refresher = Some(refresher);
        self
    }

    /// Reads the AppSecret from `source` at each token request instead of the configuration's copy.
    pub fn with_secret_source(mut self, source: SecretSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Replaces how long throttled calls are repeated inside one request (zero: never).
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// How many requests this client (and its clones) has sent to DingTalk.
    pub fn calls_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// When metered calls may be sent again (Unix ms), while the monthly budget is spent.
    pub fn quota_paused_until(&self) -> Option<i64> {
        let pause = *self.quota.lock().unwrap_or_else(|p| p.into_inner());
        pause.map(|p| p.until_ms).filter(|until| *until > unix_ms())
    }

    /// The components of a template, read once and then served from this container's cache.
    pub async fn form_schema(&self, process_code: &str) -> Result<Arc<FormSchema>, DingTalkError> {
        if let Some(s) = self.lock_schemas().get(process_code) {
            return Ok(s.clone());
        }
        let query = [("processCode", process_code)];
        let (status, reply) = self.call(Method::GET, SCHEMA_PATH, &query, None).await?;
        let schema = FormSchema::from_reply(&reply)
            .ok_or_else(|| DingTalkError::malformed(status, "schema reply has no items"))?;
        let schema = Arc::new(schema);
        self.lock_schemas()
            .insert(process_code.to_string(), schema.clone());
        Ok(schema)
    }

    /// Drops a cached template, so the next create reads it again (after DingTalk refused a form).
    pub fn forget_form_schema(&self, process_code: &str) {
        self.lock_schemas().remove(process_code);
    }

    fn lock_schemas(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<FormSchema>>> {
        self.schemas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates (or, with `process_code`, updates) a template of text components
    /// (`(componentType, label, required)`) and returns its process code.
    pub async fn save_form(
        &self,
        process_code: Option<&str>,
        name: &str,
        description: &str,
        components: &[(&str, &str, bool)],
    ) -> Result<String, DingTalkError> {
        let components: Vec<Value> = components
            .iter()
            .enumerate()
            .map(|(i, (kind, label, required))| {
                json!({"componentType": kind, "props": {
                    "componentId": format!("{kind}-{}", i + 1), "label": label, "required": required}})
            })
            .collect();
        let mut body =
            json!({"name": name, "description": description, "formComponents": components});
        if let Some(code) = process_code {
            body["processCode"] = json!(code);
        }
        let (status, reply) = self
            .call(Method::POST, FORMS_PATH, &[], Some(&body))
            .await?;
        reply
            .get("result")
            .and_then(|r| r.get("processCode"))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .ok_or_else(|| reply_failure(status, &reply, "form reply has no processCode"))
    }

    /// Ids of the instances of a template started by `originator` between the two times (Unix ms),
    /// newest pages first as DingTalk lists them; at most [`MAX_ID_PAGES`] pages are read.
    pub async fn instance_ids(
        &self,
        process_code: &str,
        originator: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, DingTalkError> {
        let mut ids = Vec::new();
        let mut next: Option<Value> = None;
        for _ in 0..MAX_ID_PAGES {
            let mut body = json!({"processCode": process_code, "startTime": start_ms,
                "endTime": end_ms, "size": 20, "userIds": [originator]});
            if let Some(token) = &next {
                body["nextToken"] = token.clone();
            }
            let (status, reply) = self
                .call(Method::POST, INSTANCE_IDS_PATH, &[], Some(&body))
                .await?;
            let result = reply
                .get("result")
                .ok_or_else(|| reply_failure(status, &reply, "instance id reply has no result"))?;
            ids.extend(
                result
                    .get("list")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string),
            );
            next = result
                .get("nextToken")
                .filter(|t| !t.is_null() && t.as_str() != Some("") && t.as_i64() != Some(0))
                .cloned();
            if next.is_none() {
                break;
            }
        }
        Ok(ids)
    }

    /// Replaces the per-call time limit (tests, or a caller with a tighter budget).
    pub fn with_timeout(mut self, total: Duration) -> Self {
        self.timeout = total;
        self
    }

    /// Starts an approval instance and returns DingTalk's `instanceId`. Limits DingTalk would refuse are
    /// checked first, so an oversized ticket fails with [`DingTalkError::Invalid`] without a call.
    pub async fn create_instance(&self, req: &CreateInstance) -> Result<String, DingTalkError> {
        validate_create(req)?;
        let body = CreateBody {
            originator_user_id: &req.originator_user_id,
            process_code: &req.process_code,
            dept_id: req.dept_id,
            microapp_agent_id: self.cfg.agent_id,
            approvers: req
                .approvers
                .iter()
                .map(|s| ApproverBody {
                    action_type: s.action_type,
                    user_ids: &s.user_ids,
                })
                .collect(),
            form_component_values: req
                .form
                .iter()
                .map(|(name, value)| FormBody {
                    name,
                    value,
                    details: [],
                })
                .collect(),
        };
        let body =
            serde_json::to_value(&body).map_err(|e| DingTalkError::Invalid(e.to_string()))?;
        let (status, reply) = self
            .call(Method::POST, INSTANCES_PATH, &[], Some(&body))
            .await?;
        match reply.get("instanceId").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(reply_failure(
                status,
                &reply,
                "create reply has no instanceId",
            )),
        }
    }

    /// Reads an instance with its tasks and history.
    pub async fn get_instance(&self, instance_id: &str) -> Result<InstanceDetail, DingTalkError> {
        if instance_id.trim().is_empty() {
            return Err(DingTalkError::Invalid("processInstanceId is empty".into()));
        }
        let query = [("processInstanceId", instance_id)];
        let (status, mut reply) = self.call(Method::GET, INSTANCES_PATH, &query, None).await?;
        match reply.get_mut("result").map(Value::take) {
            Some(result @ Value::Object(_)) => serde_json::from_value(result).map_err(|e| {
                DingTalkError::malformed(status, &format!("instance reply unreadable: {e}"))
            }),
            _ => Err(DingTalkError::malformed(
                status,
                "instance reply has no result",
            )),
        }
    }

    /// Terminates (withdraws) a running instance. With `is_system == false` DingTalk requires
    /// `operating_user_id` to be the originator. The remark is cut to DingTalk's 1024 characters.
    /// Succeeds only when DingTalk confirms with `result: true`.
    pub async fn terminate_instance(
        &self,
        instance_id: &str,
        remark: &str,
        operating_user_id: &str,
        is_system: bool,
    ) -> Result<(), DingTalkError> {
        if instance_id.trim().is_empty() {
            return Err(DingTalkError::Invalid("processInstanceId is empty".into()));
        }
        if !is_system && operating_user_id.trim().is_empty() {
            return Err(DingTalkError::Invalid(
                "operatingUserId is required unless isSystem".into(),
            ));
        }
        let remark: String = remark.chars().take(MAX_TERMINATE_REMARK_CHARS).collect();
        let mut body =
            json!({"processInstanceId": instance_id, "isSystem": is_system, "remark": remark});
        if !operating_user_id.is_empty() {
            body["operatingUserId"] = json!(operating_user_id);
        }
        let (status, reply) = self
            .call(Method::POST, TERMINATE_PATH, &[], Some(&body))
            .await?;
        let confirmed = match reply.get("result") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        if confirmed {
            Ok(())
        } else {
            Err(DingTalkError::api(
                status,
                "terminateNotConfirmed",
                "DingTalk did not confirm the termination",
            ))
        }
    }

    /// One API call with the cached token; on `InvalidAuthentication` the token is renewed once and the
    /// call repeated once (DingTalk refused it before doing anything, so repeating a create is safe).
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Value), DingTalkError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            if let Some(until) = self.quota_paused_until() {
                return Err(DingTalkError::api(
                    403,
                    "Forbidden.AccessDenied.ApiCountLimitForOrg",
                    format!(
                        "the organisation's DingTalk API budget is spent; calls paused until {} UTC",
                        utc_text(until)
                    ),
                ));
            }
            let result = self.call_once(method.clone(), path, query, body).await;
            match &result {
                Err(e) if e.is_quota_exhausted() => {
                    let until = self.pause_for_quota();
                    tracing::error!(path, code = ?e.code(), until_utc = %utc_text(until),
                        "DingTalk API budget spent: metered calls paused");
                }
                Err(e) if e.is_throttled() => {
                    let wait = throttle_wait(attempt);
                    if started.elapsed() + wait + self.timeout.min(Duration::from_secs(1))
                        <= self.retry_budget
                    {
                        tracing::warn!(path, code = ?e.code(), wait_ms = wait.as_millis() as u64,
                            "DingTalk throttled the call; repeating it");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                }
                Ok(_) => {
                    let mut pause = self.quota.lock().unwrap_or_else(|p| p.into_inner());
                    *pause = None;
                }
                Err(_) => {}
            }
            return result;
        }
    }

    /// Pauses metered calls until the start of the next hour, then (if still refused) a day at a
    /// time; returns the new end of the pause.
    fn pause_for_quota(&self) -> i64 {
        let mut pause = self.quota.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix_ms();
        let strikes = pause.map_or(0, |p| p.strikes) + 1;
        let until = if strikes == 1 {
            (now / HOUR_MS + 1) * HOUR_MS
        } else {
            (now / DAY_MS + 1) * DAY_MS
        };
        *pause = Some(QuotaPause {
            until_ms: until,
            strikes,
        });
        until
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Value), DingTalkError> {
        let token = self.access_token(None).await?;
        match self
            .send(method.clone(), path, query, body, Some(&token))
            .await
        {
            Err(e) if e.is_invalid_authentication() => {
                let token = self.access_token(Some(&token)).await?;
                self.send(method, path, query, body, Some(&token)).await
            }
            other => other,
        }
    }

    /// The cached token, or a new one when there is none, it is near expiry, or it is `rejected` (DingTalk
    /// refused it). The lock is held while fetching so concurrent callers fetch once.
    async fn access_token(&self, rejected: Option<&str>) -> Result<String, DingTalkError> {
        let mut cache = self.token.lock().await;
        if let Some(cached) = cache.as_ref() {
            let refused = rejected.is_some_and(|r| r == cached.token);
            if !refused && Instant::now() < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        *cache = None;
        let (status, reply) = match self.fetch_token().await {
            Err(e) if e.is_refused_secret() && self.refresher.is_some() => {
                let used = self.current_secret();
                let current = (self.refresher.as_ref().expect("checked"))().await;
                if current == used {
                    return Err(e);
                }
                if self.source.is_none() {
                    *self.app_secret.write().unwrap_or_else(|p| p.into_inner()) = current;
                }
                self.fetch_token().await?
            }
            other => other?,
        };
        let token = match reply.get("accessToken").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => {
                return Err(DingTalkError::malformed(
                    status,
                    "token reply has no accessToken",
                ))
            }
        };
        let ttl = Duration::from_secs(reply.get("expireIn").and_then(Value::as_u64).unwrap_or(0));
        // A token that lives less than the margin is still used for this call, just not cached long.
        let refresh_at = Instant::now() + ttl.saturating_sub(REFRESH_MARGIN.min(ttl / 2));
        *cache = Some(CachedToken {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }

    fn current_secret(&self) -> String {
        if let Some(source) = &self.source {
            return source();
        }
        self.app_secret
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn fetch_token(&self) -> Result<(u16, Value), DingTalkError> {
        let body = json!({"appKey": self.cfg.app_key, "appSecret": self.current_secret()});
        self.send(Method::POST, TOKEN_PATH, &[], Some(&body), None)
            .await
    }

    /// Sends one request and reads its JSON reply; a non-2xx reply becomes [`DingTalkError::Api`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<(u16, Value), DingTalkError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .timeout(self.timeout);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(token) = token {
            req = req.header(TOKEN_HEADER, token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = outbound::read_capped(resp).await.map_err(|e| match e {
            outbound::ReadError::Transport(e) => DingTalkError::from(e),
            too_large => DingTalkError::malformed(status.as_u16(), &too_large.to_string()),
        })?;
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return match parsed {
                // The legacy gateway answers some failures with HTTP 200 and a non-zero errcode.
                Some(v @ Value::Object(_))
                    if v.get("errcode")
                        .and_then(Value::as_i64)
                        .is_some_and(|c| c != 0) =>
                {
                    Err(api_error(status, Some(&v), &bytes))
                }
                Some(v @ Value::Object(_)) => Ok((status.as_u16(), v)),
                _ => Err(DingTalkError::malformed(
                    status.as_u16(),
                    "reply is not a JSON object",
                )),
            };
        }
        Err(api_error(status, parsed.as_ref(), &bytes))
    }
}

/// DingTalk's `{"code", "message"}` error, or the HTTP status text when the body is something else
/// (a gateway page, an empty body).
fn api_error(status: StatusCode, parsed: Option<&Value>, raw: &[u8]) -> DingTalkError {
    let field = |name: &str| {
        parsed
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let legacy = parsed
        .and_then(|v| v.get("errcode"))
        .and_then(Value::as_i64)
        .filter(|c| *c != 0)
        .map(|c| c.to_string());
    let code = field("code")
        .or(legacy)
        .unwrap_or_else(|| format!("http{}", status.as_u16()));
    let message = field("message")
        .or_else(|| field("errmsg"))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(raw);
            if text.trim().is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no reply body")
                    .to_string()
            } else {
                text.into_owned()
            }
        });
    DingTalkError::api(status.as_u16(), code, message)
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2026-12-01 23:00` for a Unix ms time.
fn utc_text(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// At least a second, doubling per attempt, plus up to a quarter second of jitter so throttled
/// containers do not retry in step.
fn throttle_wait(attempt: u32) -> Duration {
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 250_000_000);
    MIN_THROTTLE_WAIT * 2u32.saturating_pow(attempt.min(4)) + Duration::from_nanos(jitter.into())
}

/// A 2xx reply that lacks what was asked for is a failure; DingTalk's own code and message (e.g.
/// `processInstanceStartFailed`) are the reason shown, else `malformedReply` with `what`.
fn reply_failure(status: u16, reply: &Value, what: &str) -> DingTalkError {
    let text = |names: &[&str]| {
        names.iter().find_map(|n| match reply.get(*n) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) if n.as_i64() != Some(0) => Some(n.to_string()),
            _ => None,
        })
    };
    match text(&["code", "errorCode", "errcode"]) {
        Some(code) => DingTalkError::api(
            status,
            code,
            text(&["message", "errorMessage", "errmsg"]).unwrap_or_else(|| what.to_string()),
        ),
        None => DingTalkError::malformed(status, what),
    }
}

fn validate_create(req: &CreateInstance) -> Result<(), DingTalkError> {
    let invalid = |m: String| Err(DingTalkError::Invalid(m));
    if req.originator_user_id.trim().is_empty() {
        return invalid("originatorUserId is empty".into());
    }
    if req.process_code.trim().is_empty() {
        return invalid("processCode is empty".into());
    }
    if req.approvers.len() > MAX_APPROVER_STEPS {
        return invalid(format!(
            "approvers has {} steps, DingTalk allows at most {MAX_APPROVER_STEPS}",
            req.approvers.len()
        ));
    }
    for (i, step) in req.approvers.iter().enumerate() {
        if step.user_ids.is_empty() || step.user_ids.iter().any(|u| u.trim().is_empty()) {
            return invalid(format!(
                "approvers[{i}].userIds is empty or has an empty user id"
            ));
        }
        if step.action_type == ActionType::None && step.user_ids.len() != 1 {
            return invalid(format!(
                "approvers[{i}] has actionType NONE with {} users",
                step.user_ids.len()
            ));
        }
    }
    if req.form.len() > MAX_FORM_VALUES {
        return invalid(format!(
            "formComponentValues has {} entries, DingTalk allows at most {MAX_FORM_VALUES}",
            req.form.len()
        ));
    }
    if let Some(i) = req.form.iter().position(|(name, _)| name.trim().is_empty()) {
        return invalid(format!("formComponentValues[{i}].name is empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ApproverStep;

    fn ticket() -> CreateInstance {
        CreateInstance {
            originator_user_id: "u0".into(),
            process_code: "PROC-1".into(),
            dept_id: -1,
            approvers: vec![ApproverStep {
                action_type: ActionType::Or,
                user_ids: vec!["u1".into()],
            }],
            form: vec![("Title".into(), "x".into())],
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(validate_create(&ticket()).is_ok());
        let mut t = ticket();
        t.approvers = vec![ApproverStep {
            action_type: ActionType::None,
            user_ids: vec!["a".into(), "b".into()],
        }];
        assert!(validate_create(&t)
            .unwrap_err()
            .to_string()
            .contains("approvers[0]"));
        let mut t = ticket();
        t.form = (0..151).map(|i| (format!("f{i}"), String::new())).collect();
        assert!(validate_create(&t)
            .unwrap_err()
            .to_string()
            .contains("formComponentValues"));
        let mut t = ticket();
        t.form = (0..150).map(|i| (format!("f{i}"), String::new())).collect();
        assert!(validate_create(&t).is_ok());
        let mut t = ticket();
        t.originator_user_id = " ".into();
        assert!(validate_create(&t)
            .unwrap_err()
            .to_string()
            .contains("originatorUserId"));
    }

    #[test]
    fn config_debug_hides_the_secret() {
        let cfg = DingTalkConfig {
            api_base: "http://127.0.0.1:1".into(),
            app_key: "key".into(),
            app_secret: "s3cret-value".into(),
            agent_id: 1,
        };
        let client = DingTalkClient::new(cfg.clone(), reqwest::Client::new());
        assert!(!format!("{cfg:?}").contains("s3cret-value"));
        assert!(!format!("{client:?}").contains("s3cret-value"));
    }

    #[test]
    fn utc_text_and_waits() {
        assert_eq!(utc_text(0), "1970-01-01 00:00");
        assert_eq!(utc_text(1_798_761_600_000), "2027-01-01 00:00");
        assert!(throttle_wait(0) >= Duration::from_secs(1));
        assert!(throttle_wait(1) >= Duration::from_secs(2));
        let e = reply_failure(200, &json!({"code": "processInstanceStartFailed"}), "x");
        assert_eq!(e.code(), Some("processInstanceStartFailed"));
        assert_eq!(
            reply_failure(200, &json!({}), "x").code(),
            Some("malformedReply")
        );
    }

    #[test]
    fn non_json_error_bodies_keep_the_status() {
        let e = api_error(StatusCode::BAD_GATEWAY, None, b"<html>bad gateway</html>");
        assert_eq!(e.code(), Some("http502"));
        assert!(e.is_retryable());
        let e = api_error(StatusCode::SERVICE_UNAVAILABLE, None, b"");
        assert!(e.to_string().contains("Service Unavailable"));
    }
}
