//! A bridge under test: real function handlers, real DynamoDB-compatible server (dynalite, started by
//! `make test`), fresh tables per bridge, and fake DingTalk / Dataphin / BPM servers on 127.0.0.1.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use app::App;
use aws_sdk_dynamodb::config::{Credentials, Region};
use lambda_http::{Body, Request};
use serde_json::{json, Value};

pub use sandbox::streams::{Invoke, Mapping, StreamRunner};

use crate::fake_bpm::FakeBpm;
use crate::fake_dataphin::FakeDataphin;
use crate::fake_dingtalk::FakeDingTalk;

pub const ACCESS_TOKEN: &str = "test-dataphin-access-token-0123456789";
pub const DATAPHIN_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const ADMIN_TOKEN: &str = "test-admin-bearer-token-0123456789abc";
pub const APP_KEY: &str = "dingtestappkey";
pub const APP_SECRET: &str = "test-app-secret";
pub const PROCESS_CODE: &str = "PROC-DEFAULT";
pub const CALLBACK_TOKEN: &str = "test-callback-token";
pub const CALLBACK_AES_KEY: &str = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij";
pub const WEBHOOK_SECRET: &str = "test-webhook-hmac-secret-0123456789ab";
pub const TENANT: &str = "300073302";

/// Dataphin users of the fixtures and the DingTalk / BPM ids they map to.
pub const FIXTURE_USERS: [(&str, &str, &str, &str); 5] = [
    ("300000913", "0917452163-1398", "alice.wang", "dt-alice"),
    ("300000914", "0917452163-2044", "bob.li", "dt-bob"),
    ("300000920", "0917452163-3310", "carol.zhao", "dt-carol"),
    ("300000925", "0917452163-4471", "dave.sun", "dt-dave"),
    ("300000930", "0917452163-5000", "erin.sec", "dt-erin"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    DingTalk,
    Webhook,
}

/// Which Lambda function handles a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Submit,
    Callback,
    Query,
    Withdraw,
    Admin,
}

pub struct Options {
    pub backend: Backend,
    pub integration_method: &'static str,
    pub env: Vec<(String, String)>,
    pub seed_mappings: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::DingTalk,
            integration_method: "FINAL_RESULT",
            env: Vec::new(),
            seed_mappings: true,
        }
    }
}

pub struct Bridge {
    pub app: App,
    pub env: HashMap<String, String>,
    pub dingtalk: FakeDingTalk,
    pub dataphin: FakeDataphin,
    pub bpm: FakeBpm,
    /// The dispatch function's stream event source over this bridge's tickets table.
    pub stream: tokio::sync::Mutex<StreamRunner>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where the test run's local DynamoDB writes its tables' stream records (`--streams`).
pub fn streams_dir() -> PathBuf {
    std::env::var("BRIDGE_TEST_DYNAMODB_STREAMS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            panic!("BRIDGE_TEST_DYNAMODB_STREAMS is not set: run the tests with `make test`, which starts dynalite with --streams")
        })
}

/// The stream runner of a tickets table, with the template's filter and a quick first retry.
pub fn stream_runner(tickets_table: &str) -> StreamRunner {
    let mut mapping = Mapping::new(&app::stream::FILTER_PATTERNS, "dispatch");
    mapping.retry_pause = std::time::Duration::from_millis(50);
    StreamRunner::new(
        streams_dir().join(format!("{tickets_table}.jsonl")),
        None,
        mapping,
    )
}

/// Invokes the dispatch function's handler in-process with `app`, as Lambda invokes it.
pub fn dispatch_invoke(app: &App) -> Invoke {
    let app = app.clone();
    std::sync::Arc::new(move |event: Value| {
        let app = app.clone();
        Box::pin(async move {
            dispatch::handle(&app, event, None)
                .await
                .map_err(|e| e.to_string())
        })
    })
}

/// The DynamoDB-compatible server of this test run.
pub fn dynamo_endpoint() -> String {
    std::env::var("BRIDGE_TEST_DYNAMODB").unwrap_or_else(|_| {
        panic!("BRIDGE_TEST_DYNAMODB is not set: run the tests with `make test`, which starts dynalite")
    })
}

pub fn dynamo_client() -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version_latest()
        .endpoint_url(dynamo_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

pub fn now_ms() -> i64 {
    app::http::now_ms()
}

/// The repository's copy of the contract fixtures (`fixtures/`).
pub fn contract_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = contract_dir().join("fixtures/submissions").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dir_files(sub: &str) -> Vec<(String, Vec<u8>)> {
    let dir = contract_dir().join(sub);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Every submission fixture, by file name.
pub fn submission_fixtures() -> Vec<(String, Vec<u8>)> {
    dir_files("fixtures/submissions")
}

/// Every input the bridge must refuse, by file name.
pub fn invalid_fixtures() -> Vec<(String, Vec<u8>)> {
    dir_files("fixtures/invalid")
}

/// A fixture with another applyId (so several tickets can come from one file).
pub fn with_apply_id(body: &[u8], apply_id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    v["applyId"] = json!(apply_id);
    serde_json::to_vec(&v).unwrap()
}

pub fn backend_id(dataphin_user_id: &str) -> &'static str {
    FIXTURE_USERS
        .iter()
        .find(|u| u.0 == dataphin_user_id)
        .map(|u| u.3)
        .expect("fixture user")
}

impl Bridge {
    pub async fn start(opts: Options) -> Bridge {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("it{}x{n}", std::process::id());
        let tickets = format!("{prefix}-tickets");
        let mappings = format!("{prefix}-mappings");
        let client = dynamo_client();
        store::schema::create_tables(&client, &tickets, &mappings)
            .await
            .expect("create tables");
        let dingtalk = FakeDingTalk::start(APP_KEY, APP_SECRET).await;
        dingtalk.add_process_code(PROCESS_CODE);
        dingtalk.add_process_code("PROC-PII");
        dingtalk.set_agent_id(4242);
        let dataphin = FakeDataphin::start(ACCESS_TOKEN, DATAPHIN_AES_KEY).await;
        let bpm = FakeBpm::start(WEBHOOK_SECRET).await;
        let mut env: HashMap<String, String> = [
            ("TICKETS_TABLE", tickets.as_str()),
            ("USER_MAPPINGS_TABLE", mappings.as_str()),
            ("DATAPHIN_ACCESS_TOKEN", ACCESS_TOKEN),
            ("DATAPHIN_AES_KEY", DATAPHIN_AES_KEY),
            ("DATAPHIN_INTEGRATION_METHOD", opts.integration_method),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("DINGTALK_APP_KEY", APP_KEY),
            ("DINGTALK_APP_SECRET", APP_SECRET),
            ("DINGTALK_AGENT_ID", "4242"),
            ("DINGTALK_PROCESS_CODE", PROCESS_CODE),
            ("DINGTALK_CALLBACK_TOKEN", CALLBACK_TOKEN),
            ("DINGTALK_CALLBACK_AES_KEY", CALLBACK_AES_KEY),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.insert("DATAPHIN_CALLBACK_URL".into(), dataphin.url());
        env.insert("DINGTALK_API_BASE".into(), dingtalk.base_url());
        env.insert("WEBHOOK_URL".into(), bpm.url());
        env.insert(
            "BACKEND".into(),
            match opts.backend {
                Backend::DingTalk => "dingtalk",
                Backend::Webhook => "webhook",
            }
            .into(),
        );
        for (k, v) in opts.env {
            env.insert(k, v);
        }
        let config = app::Config::from_source(&env).expect("test configuration is valid");
        let app = App::build(config, client).expect("app builds");
        let bridge = Bridge {
            app,
            stream: tokio::sync::Mutex::new(stream_runner(&tickets)),
            env,
            dingtalk,
            dataphin,
            bpm,
        };
        if opts.seed_mappings {
            bridge.seed_fixture_mappings().await;
        }
        bridge
    }

    pub async fn seed_fixture_mappings(&self) {
        for (user_id, source, name, backend) in FIXTURE_USERS {
            self.app
                .store
                .put_mapping(&store::Mapping {
                    tenant_id: TENANT.into(),
                    user_id: user_id.into(),
                    user_source_id: source.into(),
                    user_name: name.into(),
                    backend_user_id: backend.into(),
                    backend_dept_id: Some("1001".into()),
                })
                .await
                .expect("seed mapping");
        }
    }

    /// Sends one HTTP request to a function's handler, as API Gateway would, then lets the
    /// stream hand over the work the request's writes started (see [`Bridge::settle`]).
    pub async fn request(
        &self,
        function: Function,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let answer = self
            .answer(function, method, path_and_query, headers, body)
            .await;
        self.settle().await;
        answer
    }

    /// The answer alone: the work after it is left on the stream (a later [`Bridge::settle`]).
    pub async fn answer(
        &self,
        function: Function,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        call(&self.app, function, method, path_and_query, headers, body).await
    }

    /// Hands every stream record written so far (and those the work writes) to the dispatch
    /// function, as Lambda's event source mapping does; returns how many passed the filter.
    pub async fn settle(&self) -> usize {
        let invoke = dispatch_invoke(&self.app);
        self.stream.lock().await.drain(&invoke).await
    }

    /// `accessToken` and a fresh `timestamp`, as Dataphin sends them.
    pub fn auth_query(&self) -> String {
        format!("accessToken={ACCESS_TOKEN}&timestamp={}", now_ms())
    }

    pub async fn create(&self, body: &[u8]) -> (u16, Value) {
        let answer = self.create_answer(body).await;
        self.settle().await;
        answer
    }

    /// Dataphin's create and its answer alone; the work after it waits on the stream.
    pub async fn create_answer(&self, body: &[u8]) -> (u16, Value) {
        let path = format!(
            "/dataphin/bpms/processinstance/create?{}",
            self.auth_query()
        );
        self.answer(
            Function::Submit,
            "POST",
            &path,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// An ops API call with the admin bearer token.
    pub async fn ops(
        &self,
        function: Function,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.request(
            function,
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    /// Encrypts one DingTalk event as DingTalk does and posts it to `/callback/dingtalk`, then lets
    /// the stream hand over the work it started.
    pub async fn push_dingtalk_event(&self, event: &Value) -> (u16, Value) {
        let answer = self.answer_dingtalk_event(event).await;
        self.settle().await;
        answer
    }

    /// DingTalk's push and the bridge's answer alone; the work after it waits on the stream.
    pub async fn answer_dingtalk_event(&self, event: &Value) -> (u16, Value) {
        let crypto = crypto::MessageCrypto::new(CALLBACK_TOKEN, CALLBACK_AES_KEY, APP_KEY).unwrap();
        let sealed = crypto.seal_now(event.to_string().as_bytes());
        let path = format!(
            "/callback/dingtalk?signature={}&timestamp={}&nonce={}",
            sealed.signature, sealed.timestamp, sealed.nonce
        );
        let body = json!({"encrypt": sealed.encrypt}).to_string();
        self.answer(
            Function::Callback,
            "POST",
            &path,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await
    }

    /// Pushes every event the fake DingTalk produced since the last call, in order; each must be
    /// acknowledged with the encrypted `success`.
    pub async fn push_pending_dingtalk_events(&self) -> usize {
        let events = self.dingtalk.take_events();
        for e in &events {
            let (status, body) = self.push_dingtalk_event(e).await;
            assert_eq!(status, 200, "event {e} answered {body}");
            assert!(body.get("encrypt").is_some(), "ack is encrypted: {body}");
        }
        events.len()
    }

    /// Posts a signed BPM event to `/callback/webhook`.
    pub async fn push_webhook_event(&self, event: &Value) -> (u16, Value) {
        let body = event.to_string();
        let (ts, sig) = crate::fake_bpm::signed_callback(WEBHOOK_SECRET, body.as_bytes());
        self.request(
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
    }

    /// One run of the scheduled dispatcher at `now`.
    pub async fn run_dispatcher(&self, now: i64) -> app::dispatch::RunReport {
        let report = app::dispatch::run(&self.app, now)
            .await
            .expect("dispatcher run");
        self.settle().await;
        report
    }

    pub async fn ticket(&self, id: &str) -> models::ticket::Ticket {
        self.app
            .store
            .get_ticket(id, false)
            .await
            .expect("read")
            .expect("ticket exists")
            .ticket
    }

    /// The ticket id for a fixture body (derived from tenantId and applyId).
    pub fn ticket_id_of(body: &[u8]) -> String {
        let v: Value = serde_json::from_slice(body).unwrap();
        app::tickets::ticket_id(
            v["tenantId"].as_str().unwrap(),
            v["applyId"].as_str().unwrap(),
        )
    }
}

/// Sends one HTTP request to a function's handler running with `app`, as API Gateway would.
pub async fn call(
    app: &App,
    function: Function,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut builder = http_builder().method(method).uri(path_and_query);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req: Request = builder
        .body(if body.is_empty() {
            Body::Empty
        } else {
            Body::Binary(body.to_vec())
        })
        .expect("request builds");
    let resp = match function {
        Function::Submit => submit::handle(app, req).await,
        Function::Callback => callback::handle(app, req).await,
        Function::Query => query::handle(app, req).await,
        Function::Withdraw => withdraw::handle(app, req).await,
        Function::Admin => admin::handle(app, req).await,
    };
    let status = resp.status().as_u16();
    let bytes: &[u8] = match resp.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(bytes)))
    };
    (status, value)
}

fn http_builder() -> lambda_http::http::request::Builder {
    lambda_http::http::Request::builder()
}
