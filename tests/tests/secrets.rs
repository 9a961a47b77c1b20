//! Secrets from Secrets Manager (issue 14, SPEC 2), against moto's server on 127.0.0.1 (a real
//! Secrets Manager-compatible HTTP API; `make test` passes its binary as BRIDGE_TEST_MOTO). A
//! bridge configured by secret ARNs authenticates with the secrets' values; after a rotation the
//! next authentication failure against a party re-reads that party's secret once, then succeeds;
//! a flood of bad requests re-reads nothing more; plain variables keep working without any
//! Secrets Manager.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::secrets::Party;
use app::App;
use aws_sdk_secretsmanager::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_secretsmanager::config::{ConfigBag, Credentials, Intercept, Region};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueInput;
use integration_tests::fake_bpm::signed_callback;
use integration_tests::harness::*;
use serde_json::{json, Value};

/// moto's server on a free port of 127.0.0.1, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let binary = std::env::var("BRIDGE_TEST_MOTO").unwrap_or_else(|_| {
            panic!("BRIDGE_TEST_MOTO is not set: run the tests with `make test` (it installs moto_server into .venv)")
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary}: {e}"));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn client(&self, reads: &Reads) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::config::Builder::new()
            .behavior_version_latest()
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
            .interceptor(reads.clone())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GetSecretValue` calls, by secret id.
#[derive(Debug, Clone, Default)]
struct Reads(Arc<Mutex<HashMap<String, usize>>>);

impl Reads {
    fn of(&self, arn: &str) -> usize {
        self.0.lock().unwrap().get(arn).copied().unwrap_or(0)
    }
}

impl Intercept for Reads {
    fn name(&self) -> &'static str {
        "secret-reads"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(input) = context.input().downcast_ref::<GetSecretValueInput>() {
            let id = input.secret_id().unwrap_or_default().to_string();
            *self.0.lock().unwrap().entry(id).or_default() += 1;
        }
        Ok(())
    }
}

/// Every party's secret, with the harness's values, in moto; ARNs by party.
async fn create_secrets(sm: &aws_sdk_secretsmanager::Client) -> BTreeMap<Party, String> {
    let values = [
        (
            Party::Dataphin,
            json!({"DATAPHIN_ACCESS_TOKEN": ACCESS_TOKEN, "DATAPHIN_AES_KEY": DATAPHIN_AES_KEY}),
        ),
        (
            Party::DingTalkApp,
            json!({"DINGTALK_APP_SECRET": APP_SECRET}),
        ),
        (
            Party::DingTalkEvents,
            json!({"DINGTALK_CALLBACK_TOKEN": CALLBACK_TOKEN, "DINGTALK_CALLBACK_AES_KEY": CALLBACK_AES_KEY}),
        ),
        (Party::Webhook, json!({"WEBHOOK_SECRET": WEBHOOK_SECRET})),
        (Party::Admin, json!({"ADMIN_TOKEN": ADMIN_TOKEN})),
    ];
    let run = now_ms();
    let mut arns = BTreeMap::new();
    for (party, value) in values {
        let created = sm
            .create_secret()
            .name(format!("bridge-{run}-{}", party.as_str()))
            .secret_string(value.to_string())
            .send()
            .await
            .expect("moto creates the secret");
        arns.insert(party, created.arn().unwrap().to_string());
    }
    arns
}

async fn rotate(sm: &aws_sdk_secretsmanager::Client, arn: &str, value: Value) {
    sm.put_secret_value()
        .secret_id(arn)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("moto stores the new version");
}

/// The bridge's settings without one secret value: only the ARNs of `parties`.
fn env_from_arns(b: &Bridge, arns: &BTreeMap<Party, String>) -> HashMap<String, String> {
    let mut env = b.env.clone();
    for party in Party::ALL {
        for variable in party.variables() {
            env.remove(*variable);
        }
    }
    for (party, arn) in arns {
        env.insert(party.arn_variable().to_string(), arn.clone());
    }
    env
}

/// A function's App as in AWS: its configuration read with the secrets from `sm`.
async fn app_from_arns(
    b: &Bridge,
    arns: &BTreeMap<Party, String>,
    sm: aws_sdk_secretsmanager::Client,
) -> App {
    let env = env_from_arns(b, arns);
    let config = App::config_from(&env, &sm)
        .await
        .expect("configuration from Secrets Manager");
    App::build_with_secrets(config, dynamo_client(), Some(sm)).expect("app builds")
}

async fn admin_call(app: &App, bearer: &str) -> u16 {
    let auth = format!("Bearer {bearer}");
    call(
        app,
        Function::Admin,
        "GET",
        "/rules",
        &[("authorization", &auth)],
        b"",
    )
    .await
    .0
}

async fn connect(app: &App, token: &str) -> u16 {
    let path = format!(
        "/dataphin/bpms/check/connect?accessToken={token}&timestamp={}",
        now_ms()
    );
    call(
        app,
        Function::Submit,
        "POST",
        &path,
        &[("content-type", "application/json")],
        br#"{"checkEvent": "connectivity"}"#,
    )
    .await
    .0
}

async fn create(app: &App, token: &str, body: &[u8]) -> (u16, Value) {
    let path = format!(
        "/dataphin/bpms/processinstance/create?accessToken={token}&timestamp={}",
        now_ms()
    );
    call(
        app,
        Function::Submit,
        "POST",
        &path,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

async fn push_dingtalk(app: &App, token: &str, aes_key: &str, event: &Value) -> u16 {
    let crypto = crypto::MessageCrypto::new(token, aes_key, APP_KEY).unwrap();
    let sealed = crypto.seal_now(event.to_string().as_bytes());
    let path = format!(
        "/callback/dingtalk?signature={}&timestamp={}&nonce={}",
        sealed.signature, sealed.timestamp, sealed.nonce
    );
    let body = json!({"encrypt": sealed.encrypt}).to_string();
    call(
        app,
        Function::Callback,
        "POST",
        &path,
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await
    .0
}

async fn push_webhook(app: &App, secret: &str, event: &Value) -> u16 {
    let body = event.to_string();
    let (ts, sig) = signed_callback(secret, body.as_bytes());
    call(
        app,
        Function::Callback,
        "POST",
        "/callback/webhook",
        &[
            ("x-bridge-timestamp", ts.as_str()),
            ("x-bridge-signature", sig.as_str()),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await
    .0
}

const NEW_ADMIN_TOKEN: &str = "rotated-admin-bearer-token-0123456789xyz";
const NEW_ACCESS_TOKEN: &str = "rotated-dataphin-access-token-0123456789";
const NEW_APP_SECRET: &str = "rotated-dingtalk-app-secret";
const NEW_CALLBACK_TOKEN: &str = "rotated-callback-token";
const NEW_CALLBACK_AES_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
const NEW_WEBHOOK_SECRET: &str = "rotated-webhook-hmac-secret-0123456789ab";

#[tokio::test]
async fn a_bridge_configured_by_secret_arns_authenticates_with_the_secret_values() {
    let moto = Moto::start();
    let reads = Reads::default();
    let sm = moto.client(&reads);
    let b = Bridge::start(Options::default()).await;
    let arns = create_secrets(&sm).await;
    let env = env_from_arns(&b, &arns);
    assert!(
        Party::ALL
            .iter()
            .flat_map(|p| p.variables())
            .all(|v| !env.contains_key(*v)),
        "no secret is a plain variable"
    );
    let app = app_from_arns(&b, &arns, sm).await;
    for arn in arns.values() {
        assert_eq!(reads.of(arn), 1, "each secret is read once at start");
    }
    assert_eq!(admin_call(&app, ADMIN_TOKEN).await, 200);
    assert_eq!(connect(&app, ACCESS_TOKEN).await, 200);
    let (status, reply) = create(&app, ACCESS_TOKEN, &fixture("02_physical_table_high.json")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["status"], "PENDING",
        "forwarded with the AppSecret: {reply}"
    );
    for event in b.dingtalk.take_events() {
        assert_eq!(
            push_dingtalk(&app, CALLBACK_TOKEN, CALLBACK_AES_KEY, &event).await,
            200
        );
    }
    // Wrong values are still refused, and refusals within a minute of a re-read re-read nothing.
    assert_eq!(
        admin_call(&app, "not-the-admin-token-but-32-chars-long").await,
        401
    );
    assert_eq!(
        connect(&app, "not-the-access-token-but-32-chars-long").await,
        401
    );
    let before: Vec<usize> = arns.values().map(|a| reads.of(a)).collect();
    for _ in 0..20 {
        assert_eq!(
            admin_call(&app, "forged-admin-token-of-32-characters-x").await,
            401
        );
        assert_eq!(
            connect(&app, "forged-access-token-of-32-characters").await,
            401
        );
    }
    let after: Vec<usize> = arns.values().map(|a| reads.of(a)).collect();
    assert_eq!(
        before, after,
        "a flood of forged requests never reaches Secrets Manager"
    );
}

#[tokio::test]
async fn after_a_rotation_the_next_auth_failure_rereads_that_secret_once_then_succeeds() {
    let moto = Moto::start();
    let reads = Reads::default();
    let sm = moto.client(&reads);
    let b = Bridge::start(Options::default()).await;
    let arns = create_secrets(&sm).await;
    let app = app_from_arns(&b, &arns, moto.client(&reads)).await;
    assert_eq!(admin_call(&app, ADMIN_TOKEN).await, 200);

    // Admin: the new bearer is refused by the cached value, re-read once, then accepted.
    rotate(
        &sm,
        &arns[&Party::Admin],
        json!({"ADMIN_TOKEN": NEW_ADMIN_TOKEN}),
    )
    .await;
    assert_eq!(admin_call(&app, NEW_ADMIN_TOKEN).await, 200);
    assert_eq!(reads.of(&arns[&Party::Admin]), 2, "one re-read");
    assert_eq!(
        admin_call(&app, ADMIN_TOKEN).await,
        401,
        "the old bearer is gone"
    );
    assert_eq!(admin_call(&app, NEW_ADMIN_TOKEN).await, 200);
    assert_eq!(
        reads.of(&arns[&Party::Admin]),
        2,
        "no re-read within the minute"
    );
    // Only that party's secret was read again.
    assert_eq!(reads.of(&arns[&Party::Dataphin]), 1);

    // Dataphin: the new access token (and AES key) after one re-read.
    rotate(
        &sm,
        &arns[&Party::Dataphin],
        json!({"DATAPHIN_ACCESS_TOKEN": NEW_ACCESS_TOKEN, "DATAPHIN_AES_KEY": DATAPHIN_AES_KEY}),
    )
    .await;
    assert_eq!(connect(&app, NEW_ACCESS_TOKEN).await, 200);
    assert_eq!(reads.of(&arns[&Party::Dataphin]), 2);

    // DingTalk's event subscription: events sealed with the new Token and aes_key.
    rotate(
        &sm,
        &arns[&Party::DingTalkEvents],
        json!({"DINGTALK_CALLBACK_TOKEN": NEW_CALLBACK_TOKEN, "DINGTALK_CALLBACK_AES_KEY": NEW_CALLBACK_AES_KEY}),
    )
    .await;
    let event = json!({"EventType": "check_url"});
    assert_eq!(
        push_dingtalk(&app, NEW_CALLBACK_TOKEN, NEW_CALLBACK_AES_KEY, &event).await,
        200
    );
    assert_eq!(reads.of(&arns[&Party::DingTalkEvents]), 2);

    // DingTalk's AppSecret, reset in the developer console: the token call is refused, the
    // secret re-read, the call repeated, and the ticket forwarded.
    b.dingtalk.set_app_secret(NEW_APP_SECRET);
    rotate(
        &sm,
        &arns[&Party::DingTalkApp],
        json!({"DINGTALK_APP_SECRET": NEW_APP_SECRET}),
    )
    .await;
    let (status, reply) = create(
        &app,
        NEW_ACCESS_TOKEN,
        &fixture("02_physical_table_high.json"),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "PENDING", "{reply}");
    let id = reply["processInstanceId"].as_str().unwrap();
    assert!(
        b.ticket(id).await.instance_id.is_some(),
        "forwarded to DingTalk with the new AppSecret"
    );
    assert_eq!(reads.of(&arns[&Party::DingTalkApp]), 2);
}

#[tokio::test]
async fn a_rotated_webhook_secret_is_taken_for_events_and_a_malformed_one_is_refused() {
    let moto = Moto::start();
    let reads = Reads::default();
    let sm = moto.client(&reads);
    let b = Bridge::start(Options {
        backend: Backend::Webhook,
        ..Options::default()
    })
    .await;
    let arns = create_secrets(&sm).await;
    let app = app_from_arns(&b, &arns, moto.client(&reads)).await;
    let event = json!({"event_id": "e-1", "instance_id": "bpm-not-yet", "node_id": "node-1",
        "node_status": "APPROVED", "operator": {"backend_user_id": "dt-bob"}, "final_status": null,
        "occurred_at": now_ms()});
    assert_eq!(push_webhook(&app, WEBHOOK_SECRET, &event).await, 200);
    rotate(
        &sm,
        &arns[&Party::Webhook],
        json!({"WEBHOOK_SECRET": NEW_WEBHOOK_SECRET}),
    )
    .await;
    assert_eq!(push_webhook(&app, NEW_WEBHOOK_SECRET, &event).await, 200);
    assert_eq!(reads.of(&arns[&Party::Webhook]), 2);

    // A new admin token under 32 characters is not taken: the current one stays.
    rotate(&sm, &arns[&Party::Admin], json!({"ADMIN_TOKEN": "short"})).await;
    assert_eq!(admin_call(&app, "short").await, 401);
    assert_eq!(reads.of(&arns[&Party::Admin]), 2, "read, and refused");
    assert_eq!(admin_call(&app, ADMIN_TOKEN).await, 200);
}

#[tokio::test]
async fn a_function_holds_only_the_secrets_it_is_given_and_a_bad_secret_fails_the_start() {
    let moto = Moto::start();
    let reads = Reads::default();
    let sm = moto.client(&reads);
    let b = Bridge::start(Options::default()).await;
    let arns = create_secrets(&sm).await;
    // The admin function's secrets only: Dataphin's token is not held, so it is refused, and the
    // refusal re-reads nothing (the function has no Dataphin secret to read).
    let admin_only = BTreeMap::from([(Party::Admin, arns[&Party::Admin].clone())]);
    let app = app_from_arns(&b, &admin_only, moto.client(&reads)).await;
    assert_eq!(admin_call(&app, ADMIN_TOKEN).await, 200);
    assert_eq!(connect(&app, ACCESS_TOKEN).await, 401);
    assert_eq!(
        connect(&app, "").await,
        401,
        "an empty token never matches an absent one"
    );
    assert_eq!(admin_call(&app, "").await, 401);
    assert_eq!(reads.of(&arns[&Party::Dataphin]), 0);

    // A secret that is not the JSON object of its variables stops the start, naming its ARN variable.
    let bad = sm
        .create_secret()
        .name(format!("bridge-{}-bad", now_ms()))
        .secret_string("just-a-token")
        .send()
        .await
        .unwrap();
    let mut env = env_from_arns(&b, &arns);
    env.insert("ADMIN_SECRET_ARN".into(), bad.arn().unwrap().to_string());
    let err = App::config_from(&env, &sm).await.unwrap_err();
    assert_eq!(err.variable, "ADMIN_SECRET_ARN", "{err}");
    assert!(err.to_string().contains("ADMIN_TOKEN"), "{err}");
    // So does one missing a value, naming the variable; and an ARN moto does not know.
    let empty = sm
        .create_secret()
        .name(format!("bridge-{}-empty", now_ms()))
        .secret_string("{}")
        .send()
        .await
        .unwrap();
    env.insert("ADMIN_SECRET_ARN".into(), empty.arn().unwrap().to_string());
    let err = App::config_from(&env, &sm).await.unwrap_err();
    assert_eq!(err.variable, "ADMIN_TOKEN", "{err}");
    env.insert(
        "ADMIN_SECRET_ARN".into(),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope".into(),
    );
    let err = App::config_from(&env, &sm).await.unwrap_err();
    assert_eq!(err.variable, "ADMIN_SECRET_ARN", "{err}");
    assert!(!err.to_string().contains(ADMIN_TOKEN));
}

#[tokio::test]
async fn plain_variables_keep_working_without_secrets_manager() {
    // Locally (`make dev`) the secrets are plain variables: no ARN, no Secrets Manager call; the
    // client given points nowhere and is never used.
    let b = Bridge::start(Options::default()).await;
    let nowhere = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::new()
            .behavior_version_latest()
            .endpoint_url("http://127.0.0.1:9")
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
            .build(),
    );
    let config = App::config_from(&b.env, &nowhere)
        .await
        .expect("plain variables");
    assert!(config.secret_arns.is_empty());
    let app = App::build_with_secrets(config, dynamo_client(), Some(nowhere)).unwrap();
    assert!(app.secrets.is_none(), "nothing to re-read");
    assert_eq!(admin_call(&app, ADMIN_TOKEN).await, 200);
    assert_eq!(
        admin_call(&app, "not-the-admin-token-but-32-chars-long").await,
        401
    );
    assert_eq!(connect(&app, ACCESS_TOKEN).await, 200);
}

#[tokio::test]
async fn a_bpm_refusing_the_old_signature_makes_the_bridge_reread_once_and_send_again() {
    let moto = Moto::start();
    let reads = Reads::default();
    let sm = moto.client(&reads);
    let b = Bridge::start(Options {
        backend: Backend::Webhook,
        ..Options::default()
    })
    .await;
    let arns = create_secrets(&sm).await;
    let app = app_from_arns(&b, &arns, moto.client(&reads)).await;
    // The BPM team switched to the new secret before the bridge heard of it.
    rotate(
        &sm,
        &arns[&Party::Webhook],
        json!({"WEBHOOK_SECRET": NEW_WEBHOOK_SECRET}),
    )
    .await;
    b.bpm.set_secret(NEW_WEBHOOK_SECRET);
    let (status, reply) = create(&app, ACCESS_TOKEN, &fixture("02_physical_table_high.json")).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["processInstanceId"].as_str().unwrap();
    assert!(
        b.bpm.instance_for(id).is_some(),
        "the BPM took the resent, newly signed ticket"
    );
    assert_eq!(
        b.bpm.unauthorized(),
        1,
        "one refusal, then the new signature"
    );
    assert_eq!(reads.of(&arns[&Party::Webhook]), 2);
    // Later calls sign with the new secret at once.
    let (status, _) = create(
        &app,
        ACCESS_TOKEN,
        &with_apply_id(&fixture("02_physical_table_high.json"), "after-rotation"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(b.bpm.unauthorized(), 1);
}
