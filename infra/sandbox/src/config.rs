//! The sandbox's settings: the same environment the bridge runs with (SPEC 2 names), plus the
//! knobs of the local stack (SPEC 10), so one env file configures both sides of every protocol.

use std::collections::HashMap;
use std::path::PathBuf;

use thiserror::Error;

/// A setting that is missing or malformed, named.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// What the sandbox needs to speak to the bridge as DingTalk, the BPM and Dataphin would.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// `SANDBOX_PORT` (default 9400).
    pub port: u16,
    /// The bridge's base URL: `SANDBOX_BRIDGE_URL`, else `http://127.0.0.1:$INVOKE_PORT`.
    pub bridge_url: String,
    /// `BRIDGE_DATA_DIR` (default `.local`): `sandbox.json` lives here.
    pub data_dir: PathBuf,
    pub dataphin_access_token: String,
    pub dataphin_aes_key: String,
    pub app_key: String,
    pub app_secret: String,
    pub agent_id: Option<i64>,
    /// Templates the sandbox's DingTalk knows: `DINGTALK_PROCESS_CODE` and every `processCode`
    /// named by the rules of `RULES_FILE`.
    pub process_codes: Vec<String>,
    pub callback_token: String,
    pub callback_aes_key: String,
    /// The owner key DingTalk puts into its events: `DINGTALK_CORP_ID`, else the AppKey.
    pub owner_key: String,
    pub webhook_secret: String,
    pub admin_token: String,
}

impl SandboxConfig {
    /// From the process environment.
    pub fn from_env() -> Result<SandboxConfig, ConfigError> {
        SandboxConfig::from_source(&std::env::vars().collect())
    }

    /// From any map of variables (tests).
    pub fn from_source(env: &HashMap<String, String>) -> Result<SandboxConfig, ConfigError> {
        let get = |name: &str| {
            env.get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let port = match get("SANDBOX_PORT") {
            None => 9400,
            Some(p) => p.parse().map_err(|_| ConfigError::Invalid {
                name: "SANDBOX_PORT",
                why: format!("{p:?} is not a port number"),
            })?,
        };
        let bridge_url = match get("SANDBOX_BRIDGE_URL") {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let port = get("INVOKE_PORT").unwrap_or_else(|| "9000".into());
                port.parse::<u16>().map_err(|_| ConfigError::Invalid {
                    name: "INVOKE_PORT",
                    why: format!("{port:?} is not a port number"),
                })?;
                format!("http://127.0.0.1:{port}")
            }
        };
        let dataphin_aes_key = required("DATAPHIN_AES_KEY")?;
        if dataphin_aes_key.len() != 43 {
            return Err(ConfigError::Invalid {
                name: "DATAPHIN_AES_KEY",
                why: "must be 43 characters".into(),
            });
        }
        let agent_id = match get("DINGTALK_AGENT_ID") {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| ConfigError::Invalid {
                name: "DINGTALK_AGENT_ID",
                why: "must be a number".into(),
            })?),
        };
        let mut process_codes: Vec<String> = get("DINGTALK_PROCESS_CODE").into_iter().collect();
        if let Some(path) = get("RULES_FILE") {
            // A rules file that cannot be read is the bridge's problem to report; here it only
            // adds templates.
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) {
                    collect_process_codes(&doc, &mut process_codes);
                }
            }
        }
        process_codes.dedup();
        let app_key = get("DINGTALK_APP_KEY").unwrap_or_else(|| "sandbox-app-key".into());
        Ok(SandboxConfig {
            port,
            bridge_url,
            data_dir: PathBuf::from(get("BRIDGE_DATA_DIR").unwrap_or_else(|| ".local".into())),
            dataphin_access_token: required("DATAPHIN_ACCESS_TOKEN")?,
            dataphin_aes_key,
            owner_key: get("DINGTALK_CORP_ID").unwrap_or_else(|| app_key.clone()),
            app_key,
            app_secret: get("DINGTALK_APP_SECRET").unwrap_or_else(|| "sandbox-app-secret".into()),
            agent_id,
            process_codes,
            callback_token: get("DINGTALK_CALLBACK_TOKEN").unwrap_or_default(),
            callback_aes_key: get("DINGTALK_CALLBACK_AES_KEY").unwrap_or_default(),
            webhook_secret: get("WEBHOOK_SECRET").unwrap_or_default(),
            admin_token: get("ADMIN_TOKEN").unwrap_or_default(),
        })
    }
}

fn collect_process_codes(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("processCode", serde_json::Value::String(code)) => {
                        if !out.contains(code) {
                            out.push(code.clone());
                        }
                    }
                    _ => collect_process_codes(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_process_codes(v, out);
            }
        }
        _ => {}
    }
}
