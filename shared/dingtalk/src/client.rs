//! HTTP calls to DingTalk with a token cache shared by every clone of the client.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::error::DingTalkError;
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
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .build()
        .map_err(|e| DingTalkError::Transport(crate::error::shorten(&e.to_string())))
}

struct CachedToken {
    token: String,
    /// When the cache stops handing it out: [`REFRESH_MARGIN`] before DingTalk's expiry.
    refresh_at: Instant,
}

/// DingTalk OA client. Cheap to clone; clones share the configuration and the token cache.
#[derive(Clone)]
pub struct DingTalkClient {
    cfg: Arc<DingTalkConfig>,
    base: Arc<str>,
    http: reqwest::Client,
    token: Arc<Mutex<Option<CachedToken>>>,
    timeout: Duration,
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
            cfg: Arc::new(cfg),
            base,
            http,
            token: Arc::new(Mutex::new(None)),
            timeout: TOTAL_TIMEOUT,
        }
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
            _ => Err(DingTalkError::malformed(
                status,
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
        let body = json!({"appKey": self.cfg.app_key, "appSecret": self.cfg.app_secret});
        let (status, reply) = self
            .send(Method::POST, TOKEN_PATH, &[], Some(&body), None)
            .await?;
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
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return match parsed {
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
    let code = field("code").unwrap_or_else(|| format!("http{}", status.as_u16()));
    let message = field("message").unwrap_or_else(|| {
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
    fn non_json_error_bodies_keep_the_status() {
        let e = api_error(StatusCode::BAD_GATEWAY, None, b"<html>bad gateway</html>");
        assert_eq!(e.code(), Some("http502"));
        assert!(e.is_retryable());
        let e = api_error(StatusCode::SERVICE_UNAVAILABLE, None, b"");
        assert!(e.to_string().contains("Service Unavailable"));
    }
}
