//! The sandbox's JSON API (SPEC 11) end to end: a submission goes in at the sandbox's Dataphin, the
//! bridge (real handlers on dynalite, served over HTTP on 127.0.0.1) forwards it to the sandbox's
//! DingTalk or BPM, approvers act through the API, the sandbox pushes the real encrypted or signed
//! events, and the decrypted result shows up at the sandbox's Dataphin. Restarting the sandbox on
//! the same data folder keeps everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use integration_tests::harness::{self, Backend, Bridge, Function, Options};
use sandbox::config::SandboxConfig;
use sandbox::server::{self, Sandbox};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Which function serves a path, as the workspace router of `cargo lambda watch` says.
fn function_for(path: &str) -> Function {
    if path.starts_with("/callback/") || path.ends_with("/redeliver") {
        Function::Callback
    } else if path.ends_with("/terminate") || path.ends_with("/withdraw") {
        Function::Withdraw
    } else if path.starts_with("/dataphin/bpms/processinstance/get")
        || path.starts_with("/approvals")
    {
        Function::Query
    } else if path.starts_with("/dataphin/") {
        Function::Submit
    } else {
        Function::Admin
    }
}

/// Serves the harness's in-process handlers over HTTP, as the local router does.
async fn bridge_http(State(bridge): State<Arc<Bridge>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 2 << 20).await.unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let (status, value) = bridge
        .request(
            function_for(parts.uri.path()),
            parts.method.as_str(),
            &path_and_query,
            &header_refs,
            &bytes,
        )
        .await;
    let mut response = (
        axum::http::StatusCode::from_u16(status).unwrap(),
        value.to_string(),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    response
}

fn unique_dir(name: &str) -> std::path::PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("{name}-{}-{nanos}", std::process::id()))
}

struct Running {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the sandbox the way Ctrl-C does (graceful shutdown, state saved).
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the sandbox stops within 10 s")
            .expect("the sandbox task ends cleanly");
    }
}

fn sandbox_config(bridge_url: &str, data_dir: &std::path::Path) -> SandboxConfig {
    let env: HashMap<String, String> = [
        ("SANDBOX_BRIDGE_URL", bridge_url.to_owned()),
        ("BRIDGE_DATA_DIR", data_dir.display().to_string()),
        ("DATAPHIN_ACCESS_TOKEN", harness::ACCESS_TOKEN.into()),
        ("DATAPHIN_AES_KEY", harness::DATAPHIN_AES_KEY.into()),
        ("DINGTALK_APP_KEY", harness::APP_KEY.into()),
        ("DINGTALK_APP_SECRET", harness::APP_SECRET.into()),
        ("DINGTALK_AGENT_ID", "4242".into()),
        ("DINGTALK_PROCESS_CODE", harness::PROCESS_CODE.into()),
        ("DINGTALK_CALLBACK_TOKEN", harness::CALLBACK_TOKEN.into()),
        (
            "DINGTALK_CALLBACK_AES_KEY",
            harness::CALLBACK_AES_KEY.into(),
        ),
        ("WEBHOOK_SECRET", harness::WEBHOOK_SECRET.into()),
        ("ADMIN_TOKEN", harness::ADMIN_TOKEN.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    SandboxConfig::from_source(&env).expect("sandbox settings")
}

async fn start_sandbox(listener: TcpListener, config: SandboxConfig) -> Running {
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new(config).await.expect("sandbox starts");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server::serve(sandbox, listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("sandbox serves");
    });
    Running {
        base,
        stop: Some(stop),
        task,
    }
}

/// A bridge (harness handlers over HTTP) whose backend and Dataphin are a sandbox.
struct Loop {
    sandbox: Running,
    bridge_url: String,
    data_dir: std::path::PathBuf,
    http: reqwest::Client,
    _bridge_server: tokio::task::JoinHandle<()>,
}

impl Loop {
    async fn start(backend: Backend) -> Loop {
        let sandbox_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox_base = format!("http://{}", sandbox_listener.local_addr().unwrap());
        let bridge_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bridge_url = format!("http://{}", bridge_listener.local_addr().unwrap());
        let bridge = Bridge::start(Options {
            backend,
            env: vec![
                ("DINGTALK_API_BASE".into(), sandbox_base.clone()),
                (
                    "WEBHOOK_URL".into(),
                    format!("{sandbox_base}{}", server::BPM_PATH),
                ),
                (
                    "DATAPHIN_CALLBACK_URL".into(),
                    server::callback_url(&sandbox_base),
                ),
            ],
            ..Options::default()
        })
        .await;
        let app = Router::new()
            .fallback(bridge_http)
            .with_state(Arc::new(bridge));
        let bridge_server = tokio::spawn(async move {
            axum::serve(bridge_listener, app)
                .await
                .expect("bridge serves");
        });
        let data_dir = unique_dir("sandbox-test");
        let sandbox = start_sandbox(sandbox_listener, sandbox_config(&bridge_url, &data_dir)).await;
        Loop {
            sandbox,
            bridge_url,
            data_dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _bridge_server: bridge_server,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.sandbox.base);
        let mut request = self
            .http
            .request(method.parse().unwrap(), &url)
            .header("content-type", "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("the sandbox answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, value)
    }

    async fn instance_of(&self, ticket: &str) -> Value {
        let (status, body) = self.call("GET", "/api/instances", None).await;
        assert_eq!(status, 200, "{body}");
        body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["ticket_id"] == ticket)
            .cloned()
            .unwrap_or_else(|| panic!("no instance for ticket {ticket}: {body}"))
    }

    async fn callback_with(&self, ticket: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = self.call("GET", "/api/dataphin/callbacks", None).await;
            assert_eq!(code, 200, "{body}");
            let found = body["callbacks"].as_array().unwrap().iter().find(|c| {
                c["document"]["processInstanceId"] == ticket && c["document"]["status"] == status
            });
            if let Some(found) = found {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {status} callback for {ticket} within 20 s: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Submits fixture 02 through the sandbox's Dataphin; returns the ticket id.
    async fn submit_fixture_02(&self, apply_id: &str) -> String {
        let fixture = harness::fixture("02_physical_table_high.json");
        let mut body: Value = serde_json::from_slice(&fixture).unwrap();
        body["applyId"] = json!(apply_id);
        let (status, reply) = self.call("POST", "/api/dataphin/submit", Some(body)).await;
        assert_eq!(status, 200, "the bridge's reply, relayed: {reply}");
        assert_eq!(reply["success"], true, "{reply}");
        assert_eq!(reply["status"], "PENDING", "{reply}");
        reply["processInstanceId"].as_str().unwrap().to_owned()
    }

    /// Agrees to every open task until the instance completes (bounded).
    async fn approve_all(&self, ticket: &str) -> Vec<String> {
        let mut approvers = Vec::new();
        for _ in 0..10 {
            let inst = self.instance_of(ticket).await;
            if inst["status"] != "RUNNING" {
                assert_eq!(inst["status"], "COMPLETED", "{inst}");
                assert_eq!(inst["result"], "agree", "{inst}");
                return approvers;
            }
            let open: Vec<Value> = inst["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["status"] == "RUNNING")
                .cloned()
                .collect();
            assert!(
                !open.is_empty(),
                "a running instance has open tasks: {inst}"
            );
            for task in open {
                let path = format!(
                    "/api/instances/{}/tasks/{}",
                    inst["instance_id"].as_str().unwrap(),
                    task["task_id"].as_str().unwrap()
                );
                let (status, body) = self
                    .call(
                        "POST",
                        &path,
                        Some(json!({"action": "agree", "remark": "fine by me"})),
                    )
                    .await;
                assert_eq!(status, 200, "{path}: {body}");
                assert_eq!(body, json!({"ok": true}));
                approvers.push(task["user_id"].as_str().unwrap().to_owned());
            }
        }
        panic!("instance of {ticket} did not complete after 10 rounds");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fixture_02_approved_by_both_approvers_in_the_sandbox_dingtalk_reaches_its_dataphin() {
    let lp = Loop::start(Backend::DingTalk).await;
    let ticket = lp
        .submit_fixture_02(&format!("sbx-dt-{}", harness::now_ms()))
        .await;

    let inst = lp.instance_of(&ticket).await;
    assert_eq!(inst["backend"], "dingtalk", "{inst}");
    assert_eq!(inst["status"], "RUNNING", "{inst}");
    assert_eq!(inst["result"], Value::Null, "{inst}");
    let first: Vec<&str> = inst["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        first,
        ["dt-bob", "dt-carol"],
        "node 1 is bob AND carol: {inst}"
    );
    let form = inst["form"].as_array().unwrap();
    assert!(
        !form.is_empty()
            && form
                .iter()
                .all(|f| f["name"].is_string() && f["value"].is_string()),
        "the form as approvers see it: {inst}"
    );

    // Errors name what is wrong.
    let task_path = format!(
        "/api/instances/{}/tasks/{}",
        inst["instance_id"].as_str().unwrap(),
        inst["tasks"][0]["task_id"].as_str().unwrap()
    );
    let (status, body) = lp
        .call("POST", &task_path, Some(json!({"action": "approve"})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("approve"),
        "{body}"
    );
    let (status, body) = lp
        .call("POST", &task_path, Some(json!({"action": "redirect"})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("to_user"),
        "{body}"
    );
    let (status, body) = lp
        .call(
            "POST",
            "/api/instances/no-such-instance/tasks/1",
            Some(json!({"action": "agree"})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no-such-instance"),
        "{body}"
    );

    let approvers = lp.approve_all(&ticket).await;
    assert_eq!(approvers, ["dt-bob", "dt-carol", "dt-dave"]);
    let callback = lp.callback_with(&ticket, "APPROVED").await;
    assert_eq!(
        callback["status"], 200,
        "the receiver accepted it: {callback}"
    );
    assert_eq!(callback["document"]["tenantId"], harness::TENANT);
    assert!(callback["received_at"].is_i64(), "{callback}");

    // A finished task cannot be acted on again.
    let (status, body) = lp
        .call("POST", &task_path, Some(json!({"action": "refuse"})))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("COMPLETED"),
        "{body}"
    );

    // The ticket as the bridge's ops API shows it.
    let (status, view) = lp
        .call("GET", &format!("/api/tickets/{ticket}"), None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "APPROVED", "{view}");

    // A restart on the same data folder keeps instances, tasks and callbacks.
    let Loop {
        sandbox,
        bridge_url,
        data_dir,
        ..
    } = lp;
    sandbox.stop().await;
    assert!(data_dir.join("sandbox.json").is_file());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let again = start_sandbox(listener, sandbox_config(&bridge_url, &data_dir)).await;
    let http = reqwest::Client::new();
    let instances: Value = http
        .get(format!("{}/api/instances", again.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kept = instances["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ticket_id"] == ticket.as_str())
        .unwrap_or_else(|| panic!("the instance survives a restart: {instances}"));
    assert_eq!(kept["status"], "COMPLETED");
    assert_eq!(kept["tasks"].as_array().unwrap().len(), 3, "{kept}");
    let callbacks: Value = http
        .get(format!("{}/api/dataphin/callbacks", again.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        callbacks["callbacks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["document"]["status"] == "APPROVED"),
        "callbacks survive a restart: {callbacks}"
    );
    again.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn fixture_02_through_the_sandbox_bpm_with_a_transfer_reaches_its_dataphin() {
    let lp = Loop::start(Backend::Webhook).await;
    let ticket = lp
        .submit_fixture_02(&format!("sbx-wh-{}", harness::now_ms()))
        .await;
    let inst = lp.instance_of(&ticket).await;
    assert_eq!(inst["backend"], "webhook", "{inst}");
    assert_eq!(inst["status"], "RUNNING", "{inst}");
    let carol = inst["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["user_id"] == "dt-carol")
        .cloned()
        .unwrap_or_else(|| panic!("carol has a task: {inst}"));
    let path = format!(
        "/api/instances/{}/tasks/{}",
        inst["instance_id"].as_str().unwrap(),
        carol["task_id"].as_str().unwrap()
    );
    let (status, body) = lp
        .call(
            "POST",
            &path,
            Some(json!({"action": "redirect", "remark": "on leave", "to_user": "dt-erin"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let inst = lp.instance_of(&ticket).await;
    assert!(
        inst["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["user_id"] == "dt-erin" && t["status"] == "RUNNING"),
        "erin took over carol's task: {inst}"
    );
    let approvers = lp.approve_all(&ticket).await;
    assert_eq!(approvers, ["dt-bob", "dt-erin", "dt-dave"]);
    let callback = lp.callback_with(&ticket, "APPROVED").await;
    assert_eq!(callback["status"], 200, "{callback}");
    lp.sandbox.stop().await;
    let _ = std::fs::remove_dir_all(&lp.data_dir);
}

/// The page in a real browser (Debian's `chromium`, headless, driven over the DevTools protocol
/// by `tests/browser/drive_sandbox.py`): submit fixture 02, press Agree for every approver, find
/// APPROVED among Dataphin's callbacks and the ticket APPROVED in the bridge. The screenshot is
/// kept as an artefact under the test target's tmp dir.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_in_headless_chromium_submits_approves_and_shows_the_result() {
    let lp = Loop::start(Backend::DingTalk).await;
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-page.png");
    let _ = std::fs::remove_file(&shot);
    let driver = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/drive_sandbox.py");
    let url = format!("{}/", lp.sandbox.base);
    let shot_arg = shot.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(driver)
            .arg(url)
            .arg(shot_arg)
            .output()
            .expect("python3 runs the browser driver")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser driver failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("the driver's JSON line");
    assert_eq!(
        seen["approvers"],
        json!(["dt-bob", "dt-carol", "dt-dave"]),
        "{seen}"
    );
    assert_eq!(seen["instance"], "COMPLETED", "{seen}");
    assert_eq!(seen["callback"], "APPROVED", "{seen}");
    assert_eq!(seen["ticket_status"], "APPROVED", "{seen}");
    let png = std::fs::read(&shot).expect("the screenshot artefact");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    eprintln!("screenshot: {}", shot.display());
    lp.sandbox.stop().await;
    let _ = std::fs::remove_dir_all(&lp.data_dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_dingtalk_adds_approvers_sends_back_and_comments_like_dingtalk() {
    let lp = Loop::start(Backend::DingTalk).await;
    let ticket = lp
        .submit_fixture_02(&format!("sbx-dt-actions-{}", harness::now_ms()))
        .await;
    let inst = lp.instance_of(&ticket).await;
    let instance_id = inst["instance_id"].as_str().unwrap().to_owned();
    let task_of = |inst: &Value, user: &str| -> String {
        inst["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|t| t["user_id"] == user && t["status"] == "RUNNING")
            .unwrap_or_else(|| panic!("{user} has an open task: {inst}"))["task_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let act = |task: String, body: Value| {
        let path = format!("/api/instances/{instance_id}/tasks/{task}");
        let lp = &lp;
        async move { lp.call("POST", &path, Some(body)).await }
    };
    // a comment, then bob agrees and adds erin after himself (node 1 is bob AND carol)
    let bob = task_of(&inst, "dt-bob");
    let (status, body) = act(bob.clone(), json!({"action": "comment"})).await;
    assert_eq!(status, 400, "a comment needs its remark: {body}");
    let (status, body) = act(
        bob.clone(),
        json!({"action": "comment", "remark": "checking the columns"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = act(bob.clone(), json!({"action": "send_back", "to_step": 0})).await;
    assert_eq!(status, 409, "no step before the first: {body}");
    let (status, body) = act(
        bob,
        json!({"action": "add_approvers", "to_users": ["dt-erin"], "remark": "security too"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let inst = lp.instance_of(&ticket).await;
    let open: Vec<&str> = inst["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "RUNNING")
        .map(|t| t["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(open, ["dt-carol", "dt-erin"], "{inst}");
    for user in ["dt-carol", "dt-erin"] {
        let (status, body) = act(
            task_of(&inst, user),
            json!({"action": "agree", "remark": "ok"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // dave sends it back to node 1; everyone agrees again and the ticket ends approved
    let inst = lp.instance_of(&ticket).await;
    let (status, body) = act(
        task_of(&inst, "dt-dave"),
        json!({"action": "send_back", "to_step": 0, "remark": "which columns?"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let inst = lp.instance_of(&ticket).await;
    assert_eq!(inst["status"], "RUNNING", "{inst}");
    task_of(&inst, "dt-bob");
    let approvers = lp.approve_all(&ticket).await;
    assert_eq!(approvers, ["dt-bob", "dt-carol", "dt-dave"]);
    let callback = lp.callback_with(&ticket, "APPROVED").await;
    assert_eq!(callback["status"], 200, "{callback}");
    lp.sandbox.stop().await;
    let _ = std::fs::remove_dir_all(&lp.data_dir);
}
