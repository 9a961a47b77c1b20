//! Secrets from AWS Secrets Manager (SPEC 2): in AWS no secret is a plain function variable.
//!
//! Each party's secrets live in one Secrets Manager secret, a JSON object whose keys are the SPEC 2
//! variable names (`{"ADMIN_TOKEN": "..."}`), named by a `*_SECRET_ARN` variable. A function is
//! given the ARNs of the parties it talks to and nothing else; the secrets of the others stay
//! [`Secret::absent`], so a check against them fails closed. Without any `*_SECRET_ARN` (locally,
//! `make dev`), the plain variables are read as before.
//!
//! The values are read once at start. After a rotation, the first authentication failure against a
//! party re-reads that party's secret ([`Rereader::reread`]), at most once a minute per party, so
//! a stream of forged requests cannot make the bridge hammer Secrets Manager.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::{ConfigError, Secret, Source};

/// Whom a secret is shared with; one Secrets Manager secret each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// Dataphin's Access Token and Encoding AES Key.
    Dataphin,
    /// The DingTalk app's AppSecret (outbound API calls).
    DingTalkApp,
    /// DingTalk's event subscription Token and aes_key (inbound events). Separate from the app's
    /// secret so that the functions that only call DingTalk cannot read it.
    DingTalkEvents,
    /// The HMAC secret shared with the company BPM.
    Webhook,
    /// The ops API's bearer token.
    Admin,
}

impl Party {
    pub const ALL: [Party; 5] = [
        Party::Dataphin,
        Party::DingTalkApp,
        Party::DingTalkEvents,
        Party::Webhook,
        Party::Admin,
    ];

    /// The variable naming this party's secret (its ARN).
    pub fn arn_variable(self) -> &'static str {
        match self {
            Party::Dataphin => "DATAPHIN_SECRET_ARN",
            Party::DingTalkApp => "DINGTALK_APP_SECRET_ARN",
            Party::DingTalkEvents => "DINGTALK_CALLBACK_SECRET_ARN",
            Party::Webhook => "WEBHOOK_SECRET_ARN",
            Party::Admin => "ADMIN_SECRET_ARN",
        }
    }

    /// The SPEC 2 variables the secret holds, as the keys of its JSON object.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Party::Dataphin => &["DATAPHIN_ACCESS_TOKEN", "DATAPHIN_AES_KEY"],
            Party::DingTalkApp => &["DINGTALK_APP_SECRET"],
            Party::DingTalkEvents => &["DINGTALK_CALLBACK_TOKEN", "DINGTALK_CALLBACK_AES_KEY"],
            Party::Webhook => &["WEBHOOK_SECRET"],
            Party::Admin => &["ADMIN_TOKEN"],
        }
    }

    /// The party whose secret holds `variable`, if it is a secret.
    pub fn of_variable(variable: &str) -> Option<Party> {
        Party::ALL
            .into_iter()
            .find(|p| p.variables().contains(&variable))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Party::Dataphin => "dataphin",
            Party::DingTalkApp => "dingtalk-app",
            Party::DingTalkEvents => "dingtalk-events",
            Party::Webhook => "webhook",
            Party::Admin => "admin",
        }
    }
}

/// The ARNs given to this function, by party; empty means plain variables (local).
pub fn arns(src: &dyn Source) -> BTreeMap<Party, String> {
    Party::ALL
        .into_iter()
        .filter_map(|p| {
            let arn = src.get(p.arn_variable())?.trim().to_owned();
            (!arn.is_empty()).then_some((p, arn))
        })
        .collect()
}

/// Whether this function holds `variable`: always with plain variables; with Secrets Manager only
/// when the ARN of its party is given.
pub fn holds(src: &dyn Source, variable: &str) -> bool {
    let given = arns(src);
    match Party::of_variable(variable) {
        Some(party) if !given.is_empty() => given.contains_key(&party),
        _ => true,
    }
}

#[derive(Debug, Error)]
#[error("{}: {}", self.variable(), self.problem())]
pub enum SecretsError {
    Read {
        variable: &'static str,
        cause: String,
    },
    Format {
        variable: &'static str,
        keys: String,
    },
}

impl SecretsError {
    pub fn variable(&self) -> &'static str {
        match self {
            SecretsError::Read { variable, .. } | SecretsError::Format { variable, .. } => variable,
        }
    }

    /// What is wrong, without the variable (a [`ConfigError`] names it itself).
    pub fn problem(&self) -> String {
        match self {
            SecretsError::Read { cause, .. } => {
                format!("the secret could not be read from Secrets Manager: {cause}")
            }
            SecretsError::Format { keys, .. } => {
                format!("the secret must be a JSON object of strings with the keys {keys}")
            }
        }
    }
}

/// Reads one party's secret: its JSON object's values by SPEC 2 variable name.
pub async fn read(
    client: &aws_sdk_secretsmanager::Client,
    party: Party,
    arn: &str,
) -> Result<HashMap<String, String>, SecretsError> {
    let variable = party.arn_variable();
    let reply = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretsError::Read {
            variable,
            cause: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
    let format = || SecretsError::Format {
        variable,
        keys: party.variables().join(", "),
    };
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(reply.secret_string().ok_or_else(format)?).map_err(|_| format())?;
    let mut values = HashMap::new();
    for key in party.variables() {
        match object.get(*key) {
            Some(serde_json::Value::String(v)) => {
                values.insert((*key).to_owned(), v.clone());
            }
            None => {}
            Some(_) => return Err(format()),
        }
    }
    Ok(values)
}

/// Reads every given party's secret, for [`WithSecrets`]; the reads run concurrently, so a cold
/// start waits for one round trip, not one per secret.
pub async fn read_all(
    client: &aws_sdk_secretsmanager::Client,
    arns: &BTreeMap<Party, String>,
) -> Result<HashMap<String, String>, SecretsError> {
    let reads = arns.iter().map(|(party, arn)| read(client, *party, arn));
    let mut values = HashMap::new();
    for party_values in futures::future::try_join_all(reads).await? {
        values.extend(party_values);
    }
    Ok(values)
}

/// The environment with the values read from Secrets Manager in front of it.
pub struct WithSecrets<'a> {
    pub values: HashMap<String, String>,
    pub env: &'a dyn Source,
}

impl Source for WithSecrets<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).cloned().or_else(|| self.env.get(key))
    }
}

/// Shortest time between two re-reads of one party's secret.
pub const REREAD_INTERVAL: Duration = Duration::from_secs(60);

/// Re-reads a party's secret after an authentication failure, at most once per [`REREAD_INTERVAL`].
pub struct Rereader {
    client: aws_sdk_secretsmanager::Client,
    arns: BTreeMap<Party, String>,
    /// The configuration's cells, by party and variable: replacing a value reaches every holder.
    cells: BTreeMap<Party, Vec<(&'static str, Secret)>>,
    /// When each party was last re-read; the lock also makes concurrent failures re-read once.
    last: tokio::sync::Mutex<BTreeMap<Party, Instant>>,
}

impl Rereader {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        arns: BTreeMap<Party, String>,
        cells: BTreeMap<Party, Vec<(&'static str, Secret)>>,
    ) -> Rereader {
        Rereader {
            client,
            arns,
            cells,
            last: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Re-reads `party`'s secret unless it was re-read less than [`REREAD_INTERVAL`] ago; a new
    /// value that fails validation is not taken. Returns whether a value changed. Callers check
    /// again afterwards either way (a concurrent caller may have just taken the new value).
    pub async fn reread(&self, party: Party) -> bool {
        let Some(arn) = self.arns.get(&party) else {
            return false;
        };
        let mut last = self.last.lock().await;
        if last
            .get(&party)
            .is_some_and(|at| at.elapsed() < REREAD_INTERVAL)
        {
            return false;
        }
        last.insert(party, Instant::now());
        let values = match read(&self.client, party, arn).await {
            Ok(values) => values,
            Err(e) => {
                tracing::warn!(party = party.as_str(), error = %e, "secret re-read failed");
                return false;
            }
        };
        let mut changed = false;
        for (variable, cell) in self.cells.get(&party).into_iter().flatten() {
            let Some(value) = values.get(*variable) else {
                continue;
            };
            if let Err(e) = crate::config::check_secret(variable, value) {
                tracing::warn!(party = party.as_str(), error = %e, "re-read secret refused");
                continue;
            }
            changed |= cell.replace(value);
        }
        tracing::info!(party = party.as_str(), changed, "secret re-read");
        changed
    }
}

/// Whether `e` is an authentication failure worth a re-read of the party's secret.
pub fn is_auth_failure(e: &crate::AppError) -> bool {
    matches!(
        e,
        crate::AppError::InvalidAccessToken | crate::AppError::Unauthorized
    )
}

impl From<SecretsError> for ConfigError {
    fn from(e: SecretsError) -> ConfigError {
        ConfigError {
            variable: e.variable(),
            problem: e.problem(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_secret_variable_belongs_to_one_party() {
        for variable in [
            "DATAPHIN_ACCESS_TOKEN",
            "DATAPHIN_AES_KEY",
            "DINGTALK_APP_SECRET",
            "DINGTALK_CALLBACK_TOKEN",
            "DINGTALK_CALLBACK_AES_KEY",
            "WEBHOOK_SECRET",
            "ADMIN_TOKEN",
        ] {
            let owners: Vec<Party> = Party::ALL
                .into_iter()
                .filter(|p| p.variables().contains(&variable))
                .collect();
            assert_eq!(owners.len(), 1, "{variable}");
        }
        assert_eq!(Party::of_variable("WEBHOOK_URL"), None);
    }

    #[test]
    fn with_arns_a_function_holds_only_its_parties_secrets() {
        // Plain variables: every secret is held.
        let plain = env(&[("ADMIN_TOKEN", "x")]);
        assert!(arns(&plain).is_empty());
        assert!(holds(&plain, "DATAPHIN_ACCESS_TOKEN"));
        // Secrets Manager: only the parties whose ARN is given; other settings as ever.
        let given = env(&[("ADMIN_SECRET_ARN", "arn:aws:secretsmanager:r:1:secret:a")]);
        assert_eq!(
            arns(&given).keys().copied().collect::<Vec<_>>(),
            vec![Party::Admin]
        );
        assert!(holds(&given, "ADMIN_TOKEN"));
        assert!(!holds(&given, "DATAPHIN_ACCESS_TOKEN"));
        assert!(!holds(&given, "DINGTALK_CALLBACK_AES_KEY"));
        assert!(holds(&given, "WEBHOOK_URL"));
        // A blank ARN is no ARN.
        assert!(arns(&env(&[("ADMIN_SECRET_ARN", " ")])).is_empty());
    }

    #[test]
    fn secrets_read_override_the_environment() {
        let base = env(&[("ADMIN_TOKEN", "from-env"), ("BACKEND", "webhook")]);
        let with = WithSecrets {
            values: env(&[("ADMIN_TOKEN", "from-secret")]),
            env: &base,
        };
        assert_eq!(with.get("ADMIN_TOKEN").as_deref(), Some("from-secret"));
        assert_eq!(with.get("BACKEND").as_deref(), Some("webhook"));
    }
}
