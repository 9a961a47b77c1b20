//! The bridge's use cases, shared by every Lambda function: configuration, the context built once
//! per container, and one module per concern. Handlers in `functions/` only route requests here.

pub mod admin;
pub mod auth;
pub mod backend;
pub mod callback;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod mapping;
pub mod meter;
pub mod metrics;
pub mod query;
pub mod rules;
pub mod secrets;
pub mod stream;
pub mod submit;
pub mod telemetry;
pub mod tickets;
pub mod views;
pub mod withdraw;

use std::sync::Arc;

pub use config::Config;
pub use error::{AppError, AppResult};

use backend::Backend;
use store::Store;

/// Everything a request needs, built once per container and shared by its invocations.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub backend: Backend,
    pub dataphin: dataphin::DataphinClient,
    /// Set when the secrets came from Secrets Manager: re-reads them after a rotation.
    pub secrets: Option<Arc<secrets::Rereader>>,
    /// DingTalk calls of this container already added to the stored meter.
    pub dingtalk_calls_counted: Arc<std::sync::atomic::AtomicU64>,
}

impl App {
    /// Builds the context from the environment: configuration (a bad variable fails the start with
    /// one line naming it), the secrets from Secrets Manager when `*_SECRET_ARN` variables name
    /// them, the DynamoDB client, the HTTP clients; then warms the DynamoDB connection so the
    /// first request does not pay for the TLS handshake.
    pub async fn from_env() -> Result<App, lambda_http::Error> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(dynamo_timeouts());
        if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            // Lambda puts the role's keys and the region in the environment and has no profile
            // files: read those variables only, not the default chain's files and endpoints.
            use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
            loader = loader
                .credentials_provider(
                    aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
                )
                .region(aws_config::environment::EnvironmentVariableRegionProvider::new())
                .profile_files(
                    EnvConfigFiles::builder()
                        .with_contents(EnvConfigFileKind::Config, "")
                        .build(),
                );
        }
        let sdk = loader.load().await;
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let config = Self::config_from(&config::ProcessEnv, &secrets)
            .await
            .map_err(|e| {
                tracing::error!(variable = e.variable, "{e}");
                e
            })?;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let app = App::build_with_secrets(config, dynamo, Some(secrets))?;
        if let Err(e) = app.store.ping().await {
            tracing::warn!(error = %e, "DynamoDB warm-up failed; requests will retry");
        }
        Ok(app)
    }

    /// The configuration from `env`, with the secrets its `*_SECRET_ARN` variables name read
    /// from Secrets Manager (plain variables when there are none).
    pub async fn config_from(
        env: &dyn config::Source,
        client: &aws_sdk_secretsmanager::Client,
    ) -> Result<Config, config::ConfigError> {
        let arns = secrets::arns(env);
        let values = if arns.is_empty() {
            Default::default()
        } else {
            secrets::read_all(client, &arns).await?
        };
        Config::from_source(&secrets::WithSecrets { values, env })
    }

    /// A context with plain-variable secrets (no re-reads).
    pub fn build(
        config: Config,
        dynamo: aws_sdk_dynamodb::Client,
    ) -> Result<App, lambda_http::Error> {
        Self::build_with_secrets(config, dynamo, None)
    }

    /// A context whose secrets are re-read through `secrets` after a rotation, when the
    /// configuration came from Secrets Manager (see [`App::config_from`]).
    pub fn build_with_secrets(
        config: Config,
        dynamo: aws_sdk_dynamodb::Client,
        secrets: Option<aws_sdk_secretsmanager::Client>,
    ) -> Result<App, lambda_http::Error> {
        let store = Store::new(
            dynamo,
            config.tickets_table.clone(),
            config.user_mappings_table.clone(),
        );
        let arns = config.secret_arns.clone();
        let rereader = match secrets {
            Some(client) if !arns.is_empty() => Some(Arc::new(secrets::Rereader::new(
                client,
                arns,
                config.secret_cells(),
            ))),
            _ => None,
        };
        let mut backend = Backend::from_config(&config)?;
        match (&rereader, &mut backend) {
            // A refused AppSecret re-reads the DingTalk app's secret once, then retries the token.
            (Some(rereader), Backend::DingTalk { client, settings }) => {
                let refresh =
                    refresher(rereader, secrets::Party::DingTalkApp, &settings.app_secret);
                *client = client.clone().with_secret_refresher(refresh);
            }
            // A signature the BPM refuses re-reads the webhook secret once, then sends again.
            (Some(rereader), Backend::Webhook(client)) => {
                if let Some(settings) = config.backend.webhook() {
                    let refresh = refresher(rereader, secrets::Party::Webhook, &settings.secret);
                    *client = client.clone().with_secret_refresher(refresh);
                }
            }
            _ => {}
        }
        let dataphin = dataphin::DataphinClient::new()?;
        Ok(App {
            config: Arc::new(config),
            store,
            backend,
            dataphin,
            secrets: rereader,
            dingtalk_calls_counted: Arc::default(),
        })
    }

    /// After an authentication failure against `party`: re-reads its secret (rate limited, see
    /// [`secrets::Rereader::reread`]); the clients read the cells, so they sign with it at once.
    pub async fn reread_secret(&self, party: secrets::Party) -> bool {
        let Some(rereader) = &self.secrets else {
            return false;
        };
        rereader.reread(party).await
    }
}

/// What a client calls when its party refuses the secret in use (a rotation this container has
/// not seen): re-reads `party`'s secret once (rate limited), then answers the value in `cell`.
/// The DingTalk and webhook clients take the same shape (`webhook::SecretRefresher` too).
fn refresher(
    rereader: &Arc<secrets::Rereader>,
    party: secrets::Party,
    cell: &config::Secret,
) -> dingtalk::SecretRefresher {
    let (rereader, cell) = (rereader.clone(), cell.clone());
    Arc::new(move || {
        let (rereader, cell) = (rereader.clone(), cell.clone());
        Box::pin(async move {
            rereader.reread(party).await;
            cell.expose().to_owned()
        })
    })
}

/// Time limits of every DynamoDB call: a hanging endpoint fails the request with a clean error well
/// before the Lambda timeout (29 s) instead of holding it to the end. An attempt normally takes
/// milliseconds; the SDK retries a timed-out attempt inside the operation budget.
pub fn dynamo_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .operation_attempt_timeout(std::time::Duration::from_secs(2))
        .operation_timeout(std::time::Duration::from_secs(5))
        .build()
}

/// Runs an HTTP function: logs, the context built once for the container's lifetime, then every
/// request to `handler`. Each function's `main` is this one call.
pub async fn serve<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(&'static App, lambda_http::Request) -> Fut + Sync,
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>> + Send,
{
    telemetry::init();
    // The context lives as long as the process: leaking it gives handlers a plain reference.
    let app: &'static App = Box::leak(Box::new(App::from_env().await?));
    let handler = &handler;
    lambda_http::run(lambda_http::service_fn(
        move |req: lambda_http::Request| async move {
            use lambda_http::RequestExt;
            let deadline = req.lambda_context_ref().map(|c| c.deadline as i64);
            Ok::<_, lambda_http::Error>(
                within_deadline(deadline, http::now_ms(), handler(app, req)).await,
            )
        },
    ))
    .await
}

/// Margin kept between an invocation's own deadline and the Lambda timeout, so that the caller
/// gets a clean error rather than API Gateway's bare 503 when the function is killed.
pub const DEADLINE_MARGIN_MS: i64 = 1_500;

/// Deadlines below this (2001-09-09 in ms since the epoch) are durations, not instants:
/// `cargo lambda watch` (`make dev`) sends its 600 s invoke timeout as the deadline header itself.
/// Taken as an instant, every local request would be past its deadline before it started.
pub const DEADLINE_AS_DURATION_BELOW_MS: i64 = 1_000_000_000_000;

/// The invocation's deadline as an instant (ms since the epoch), from the Lambda context's
/// (an instant in AWS, a duration under `cargo lambda watch`).
pub fn invocation_deadline(context_deadline_ms: i64, now_ms: i64) -> i64 {
    if context_deadline_ms < DEADLINE_AS_DURATION_BELOW_MS {
        now_ms.saturating_add(context_deadline_ms)
    } else {
        context_deadline_ms
    }
}

/// Runs `fut` until `DEADLINE_MARGIN_MS` before `deadline_ms` (the Lambda context's deadline, ms
/// since the epoch); past it, answers `503` with a generic body. Without a deadline, runs `fut` as is.
pub async fn within_deadline<Fut>(
    deadline_ms: Option<i64>,
    now_ms: i64,
    fut: Fut,
) -> lambda_http::Response<lambda_http::Body>
where
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>>,
{
    let Some(deadline) = deadline_ms else {
        return fut.await;
    };
    let deadline = invocation_deadline(deadline, now_ms);
    let budget = (deadline - now_ms - DEADLINE_MARGIN_MS).max(0) as u64;
    match tokio::time::timeout(std::time::Duration::from_millis(budget), fut).await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(budget_ms = budget, "request abandoned at its deadline");
            http::json_response(
                503,
                &serde_json::json!({"success": false, "errorCode": "Timeout",
                    "errorMessage": "the request did not finish in time",
                    "error_code": "Timeout", "error_msg": "the request did not finish in time"}),
            )
        }
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    fn body(status: u16) -> lambda_http::Response<lambda_http::Body> {
        http::json_response(status, &serde_json::json!({}))
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_answers_503_before_the_lambda_timeout() {
        let now = http::now_ms();
        let started = std::time::Instant::now();
        let slow = async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            body(200)
        };
        let response = within_deadline(Some(now + DEADLINE_MARGIN_MS + 200), now, slow).await;
        assert_eq!(response.status(), 503);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    /// cargo lambda watch's deadline header is its timeout (600,000 ms), not an instant.
    #[tokio::test]
    async fn the_local_runtimes_deadline_is_a_duration_from_now() {
        let now = http::now_ms();
        let io = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            body(200)
        };
        assert_eq!(within_deadline(Some(600_000), now, io).await.status(), 200);
        let started = std::time::Instant::now();
        let slow = async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            body(200)
        };
        let short = DEADLINE_MARGIN_MS + 200;
        assert_eq!(within_deadline(Some(short), now, slow).await.status(), 503);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_fast_request_or_one_without_deadline_is_untouched() {
        let now = http::now_ms();
        assert_eq!(
            within_deadline(Some(now + 10_000), now, async { body(201) })
                .await
                .status(),
            201
        );
        assert_eq!(
            within_deadline(None, now, async { body(202) })
                .await
                .status(),
            202
        );
    }
}
