//! Configuration from the environment (SPEC section 2), read once at start.

use std::env;
use std::fmt;

use models::ticket::IntegrationMethod;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("configuration variable {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

/// A secret value: never printed, compared in constant time by its users.
///
/// Clones share one cell, so a value re-read from Secrets Manager after a rotation
/// ([`crate::secrets`]) reaches every holder at once. The replaced value is leaked on purpose: a
/// request that read it a moment ago still holds a valid `&str`, and a container sees a handful of
/// rotations in its lifetime, each a few dozen bytes.
#[derive(Clone)]
pub struct Secret(std::sync::Arc<SecretCell>);

struct SecretCell {
    value: std::sync::RwLock<&'static str>,
    /// How often the value was used: the least-privilege test derives from it which secrets each
    /// function needs.
    reads: std::sync::atomic::AtomicU64,
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(std::sync::Arc::new(SecretCell {
            value: std::sync::RwLock::new(leak(value.into())),
            reads: Default::default(),
        }))
    }

    /// A secret this function was not given (in AWS each function reads only the secrets it
    /// uses): empty, so any check against it fails closed.
    pub fn absent() -> Secret {
        Secret::new(String::new())
    }

    pub fn expose(&self) -> &str {
        self.0
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.0.value.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this function was not given the secret (it is empty; see [`Secret::absent`]).
    pub fn is_absent(&self) -> bool {
        self.0
            .value
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// How many times [`Secret::expose`] was called, by every holder.
    pub fn reads(&self) -> u64 {
        self.0.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replaces the value for every holder; `false` when it was already this value.
    pub fn replace(&self, value: &str) -> bool {
        let mut cell = self.0.value.write().unwrap_or_else(|p| p.into_inner());
        if *cell == value {
            return false;
        }
        *cell = leak(value.to_owned());
        true
    }
}

fn leak(value: String) -> &'static str {
    Box::leak(value.into_boxed_str())
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        let value = |s: &Secret| *s.0.value.read().unwrap_or_else(|p| p.into_inner());
        value(self) == value(other)
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    DingTalk,
    Webhook,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::DingTalk => "dingtalk",
            BackendKind::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingFallback {
    None,
    SourceId,
}

#[derive(Debug, Clone)]
pub struct DingTalkSettings {
    pub api_base: String,
    pub app_key: String,
    pub app_secret: Secret,
    pub agent_id: i64,
    pub process_code: String,
    pub callback_token: Secret,
    pub callback_aes_key: Secret,
    /// Owner key expected in events: the corp id, else the AppKey.
    pub owner_key: String,
    /// Template labels for the bridge's form fields: defaults plus `DINGTALK_FORM_LABELS`.
    pub form_labels: dingtalk::LabelAliases,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: Secret,
}

/// The approval backend and its settings: one of the two, never a kind beside two options.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    DingTalk(DingTalkSettings),
    Webhook(WebhookSettings),
}

impl BackendConfig {
    pub fn kind(&self) -> BackendKind {
        match self {
            BackendConfig::DingTalk(_) => BackendKind::DingTalk,
            BackendConfig::Webhook(_) => BackendKind::Webhook,
        }
    }

    pub fn dingtalk(&self) -> Option<&DingTalkSettings> {
        match self {
            BackendConfig::DingTalk(d) => Some(d),
            BackendConfig::Webhook(_) => None,
        }
    }

    pub fn webhook(&self) -> Option<&WebhookSettings> {
        match self {
            BackendConfig::Webhook(w) => Some(w),
            BackendConfig::DingTalk(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub tickets_table: String,
    pub user_mappings_table: String,
    pub dataphin_access_token: Secret,
    pub dataphin_callback_url: String,
    pub dataphin_aes_key: Secret,
    pub integration_method: IntegrationMethod,
    pub timestamp_skew_secs: i64,
    pub backend: BackendConfig,
    pub admin_token: Secret,
    pub rules_file: Option<String>,
    pub mapping_fallback: MappingFallback,
    pub ticket_timeout_hours: i64,
    /// A PENDING ticket with no event for this long is polled from the backend (reconciliation).
    pub reconcile_after_secs: i64,
    /// How long a due result keeps being retried before it is marked failed.
    pub delivery_retry_hours: i64,
    /// The Secrets Manager secrets this function reads, by party (`*_SECRET_ARN`); empty when
    /// the secrets are plain variables.
    pub secret_arns: std::collections::BTreeMap<crate::secrets::Party, String>,
}

/// Where configuration values come from (the process environment, or a map in tests).
pub trait Source {
    fn get(&self, key: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        env::var(key).ok()
    }
}

impl<S: std::hash::BuildHasher> Source for std::collections::HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<String> {
        std::collections::HashMap::get(self, key).cloned()
    }
}

fn required(src: &dyn Source, key: &'static str) -> Result<String, ConfigError> {
    match src.get(key) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ConfigError {
            variable: key,
            problem: "is required".into(),
        }),
    }
}

fn optional(src: &dyn Source, key: &str) -> Option<String> {
    src.get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn number(src: &dyn Source, key: &'static str, default: i64, min: i64) -> Result<i64, ConfigError> {
    match optional(src, key) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(ConfigError {
                variable: key,
                problem: format!("must be an integer >= {min}"),
            }),
        },
    }
}

/// Shortest accepted access token, admin token and webhook secret: the access token signs every
/// callback URL (which lands in access logs), the others guard the ops API and the BPM events.
pub const MIN_SECRET_CHARS: usize = 32;

/// A secret this function holds (see [`crate::secrets::holds`]), validated by [`check_secret`];
/// one it does not hold is [`Secret::absent`].
fn secret(src: &dyn Source, key: &'static str) -> Result<Secret, ConfigError> {
    if !crate::secrets::holds(src, key) {
        return Ok(Secret::absent());
    }
    let v = required(src, key)?;
    check_secret(key, &v)?;
    Ok(Secret::new(v))
}

/// The rules a secret's value must meet: the access token, admin token and webhook secret at least
/// [`MIN_SECRET_CHARS`] characters, the AES keys 43 base64 characters. Also applied to a value
/// re-read after a rotation, so a malformed new value is refused rather than taken.
pub fn check_secret(key: &str, value: &str) -> Result<(), ConfigError> {
    let variable = crate::secrets::Party::ALL
        .iter()
        .flat_map(|p| p.variables())
        .find(|v| **v == key)
        .copied()
        .unwrap_or("secret");
    let problem = |problem: String| ConfigError { variable, problem };
    if value.trim().is_empty() {
        return Err(problem("is required".into()));
    }
    match key {
        "DATAPHIN_ACCESS_TOKEN" | "ADMIN_TOKEN" | "WEBHOOK_SECRET"
            if value.chars().count() < MIN_SECRET_CHARS =>
        {
            Err(problem(format!(
                "must be at least {MIN_SECRET_CHARS} characters"
            )))
        }
        // The 43-character Encoding AES Key decodes (with one '=' appended) to 32 bytes.
        "DATAPHIN_AES_KEY" | "DINGTALK_CALLBACK_AES_KEY"
            if crypto::MessageCrypto::new("probe", value, "probe").is_err() =>
        {
            Err(problem(
                "must be 43 base64 characters (an Encoding AES Key)".into(),
            ))
        }
        _ => Ok(()),
    }
}

/// An outbound URL: https, or plain http only to 127.0.0.1/localhost (local stacks).
fn outbound_url(src: &dyn Source, key: &'static str) -> Result<String, ConfigError> {
    let v = required(src, key)?;
    outbound::check_url(&v).map_err(|e| ConfigError {
        variable: key,
        problem: e.to_string(),
    })?;
    Ok(v)
}

impl Config {
    /// The secret cells of each party, for re-reading them after a rotation.
    pub fn secret_cells(
        &self,
    ) -> std::collections::BTreeMap<crate::secrets::Party, Vec<(&'static str, Secret)>> {
        use crate::secrets::Party;
        let mut cells = std::collections::BTreeMap::new();
        cells.insert(
            Party::Dataphin,
            vec![
                ("DATAPHIN_ACCESS_TOKEN", self.dataphin_access_token.clone()),
                ("DATAPHIN_AES_KEY", self.dataphin_aes_key.clone()),
            ],
        );
        cells.insert(
            Party::Admin,
            vec![("ADMIN_TOKEN", self.admin_token.clone())],
        );
        if let Some(d) = self.backend.dingtalk() {
            cells.insert(
                Party::DingTalkApp,
                vec![("DINGTALK_APP_SECRET", d.app_secret.clone())],
            );
            cells.insert(
                Party::DingTalkEvents,
                vec![
                    ("DINGTALK_CALLBACK_TOKEN", d.callback_token.clone()),
                    ("DINGTALK_CALLBACK_AES_KEY", d.callback_aes_key.clone()),
                ],
            );
        }
        if let Some(w) = self.backend.webhook() {
            cells.insert(Party::Webhook, vec![("WEBHOOK_SECRET", w.secret.clone())]);
        }
        cells
    }

    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(src: &dyn Source) -> Result<Config, ConfigError> {
        let integration_method = match optional(src, "DATAPHIN_INTEGRATION_METHOD") {
            None => IntegrationMethod::FinalResult,
            Some(v) => IntegrationMethod::parse(&v).ok_or(ConfigError {
                variable: "DATAPHIN_INTEGRATION_METHOD",
                problem: "must be FINAL_RESULT or ALL_NODES".into(),
            })?,
        };
        let backend = match optional(src, "BACKEND").as_deref() {
            None | Some("dingtalk") => BackendKind::DingTalk,
            Some("webhook") => BackendKind::Webhook,
            Some(_) => {
                return Err(ConfigError {
                    variable: "BACKEND",
                    problem: "must be dingtalk or webhook".into(),
                })
            }
        };
        let backend = match backend {
            BackendKind::DingTalk => {
                let app_key = required(src, "DINGTALK_APP_KEY")?;
                let agent = required(src, "DINGTALK_AGENT_ID")?;
                let agent_id = agent.parse::<i64>().map_err(|_| ConfigError {
                    variable: "DINGTALK_AGENT_ID",
                    problem: "must be a number".into(),
                })?;
                BackendConfig::DingTalk(DingTalkSettings {
                    api_base: match optional(src, "DINGTALK_API_BASE") {
                        None => "https://api.dingtalk.com".to_string(),
                        Some(_) => outbound_url(src, "DINGTALK_API_BASE")?,
                    }
                    .trim_end_matches('/')
                    .to_string(),
                    app_secret: secret(src, "DINGTALK_APP_SECRET")?,
                    agent_id,
                    process_code: required(src, "DINGTALK_PROCESS_CODE")?,
                    callback_token: secret(src, "DINGTALK_CALLBACK_TOKEN")?,
                    callback_aes_key: secret(src, "DINGTALK_CALLBACK_AES_KEY")?,
                    owner_key: optional(src, "DINGTALK_CORP_ID").unwrap_or_else(|| app_key.clone()),
                    form_labels: match optional(src, "DINGTALK_FORM_LABELS") {
                        None => dingtalk::LabelAliases::default(),
                        Some(json) => {
                            dingtalk::LabelAliases::with_overrides(&json).map_err(|problem| {
                                ConfigError {
                                    variable: "DINGTALK_FORM_LABELS",
                                    problem,
                                }
                            })?
                        }
                    },
                    app_key,
                })
            }
            BackendKind::Webhook => BackendConfig::Webhook(WebhookSettings {
                url: outbound_url(src, "WEBHOOK_URL")?,
                secret: secret(src, "WEBHOOK_SECRET")?,
            }),
        };
        let mapping_fallback = match optional(src, "USER_MAPPING_FALLBACK").as_deref() {
            None | Some("none") => MappingFallback::None,
            Some("source_id") => MappingFallback::SourceId,
            Some(_) => {
                return Err(ConfigError {
                    variable: "USER_MAPPING_FALLBACK",
                    problem: "must be none or source_id".into(),
                })
            }
        };
        Ok(Config {
            tickets_table: required(src, "TICKETS_TABLE")?,
            user_mappings_table: required(src, "USER_MAPPINGS_TABLE")?,
            dataphin_access_token: secret(src, "DATAPHIN_ACCESS_TOKEN")?,
            dataphin_callback_url: outbound_url(src, "DATAPHIN_CALLBACK_URL")?,
            dataphin_aes_key: secret(src, "DATAPHIN_AES_KEY")?,
            integration_method,
            timestamp_skew_secs: number(src, "TIMESTAMP_SKEW_SECONDS", 300, 0)?,
            backend,
            admin_token: secret(src, "ADMIN_TOKEN")?,
            rules_file: optional(src, "RULES_FILE"),
            mapping_fallback,
            ticket_timeout_hours: number(src, "TICKET_TIMEOUT_HOURS", 168, 1)?,
            reconcile_after_secs: number(src, "RECONCILE_AFTER_SECONDS", 1800, 1)?,
            delivery_retry_hours: number(src, "DELIVERY_RETRY_HOURS", 25, 1)?,
            secret_arns: crate::secrets::arns(src),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn base() -> HashMap<String, String> {
        [
            ("TICKETS_TABLE", "t"),
            ("USER_MAPPINGS_TABLE", "m"),
            (
                "DATAPHIN_ACCESS_TOKEN",
                "a-dataphin-access-token-of-32-chars",
            ),
            ("DATAPHIN_CALLBACK_URL", "https://dataphin.example/cb"),
            (
                "DATAPHIN_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
            ("ADMIN_TOKEN", "an-admin-bearer-token-of-32-chars-x"),
            ("BACKEND", "webhook"),
            ("WEBHOOK_URL", "https://bpm.example/hook"),
            ("WEBHOOK_SECRET", "a-webhook-hmac-secret-of-32-chars-x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn refused(change: &[(&str, &str)]) -> ConfigError {
        let mut env = base();
        for (k, v) in change {
            env.insert(k.to_string(), v.to_string());
        }
        Config::from_source(&env).unwrap_err()
    }

    #[test]
    fn the_base_settings_are_valid() {
        Config::from_source(&base()).unwrap();
    }

    #[test]
    fn short_secrets_are_refused_by_name_without_showing_them() {
        for key in ["DATAPHIN_ACCESS_TOKEN", "ADMIN_TOKEN", "WEBHOOK_SECRET"] {
            let short = "x".repeat(MIN_SECRET_CHARS - 1);
            let err = refused(&[(key, &short)]);
            assert_eq!(err.variable, key);
            assert!(err.to_string().contains("at least 32 characters"), "{err}");
            assert!(!err.to_string().contains(&short));
        }
    }

    #[test]
    fn outbound_urls_are_https_or_loopback() {
        for key in ["DATAPHIN_CALLBACK_URL", "WEBHOOK_URL"] {
            let err = refused(&[(key, "http://bpm.example/hook")]);
            assert_eq!(err.variable, key);
            assert!(err.to_string().contains("https"), "{err}");
            let mut env = base();
            env.insert(key.into(), "http://127.0.0.1:9100/x".into());
            Config::from_source(&env).unwrap();
            env.insert(key.into(), "http://localhost:9100/x".into());
            Config::from_source(&env).unwrap();
        }
        let dingtalk = [
            ("BACKEND", "dingtalk"),
            ("DINGTALK_APP_KEY", "k"),
            ("DINGTALK_APP_SECRET", "s"),
            ("DINGTALK_AGENT_ID", "1"),
            ("DINGTALK_PROCESS_CODE", "P"),
            ("DINGTALK_CALLBACK_TOKEN", "c"),
            (
                "DINGTALK_CALLBACK_AES_KEY",
                "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
            ),
            ("DINGTALK_API_BASE", "http://api.dingtalk.com"),
        ];
        let err = refused(&dingtalk);
        assert_eq!(err.variable, "DINGTALK_API_BASE");
    }
}
