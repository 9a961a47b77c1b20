//! `bridge doctor` against the stand-ins: the real binary, the settings in an env file, the
//! fake DingTalk and Dataphin of infra/sandbox, dynalite, and the bridge's own
//! `/callback/dingtalk` use case behind a real HTTP server. One good setup passes every check;
//! each broken setting fails its own line, names the fix, and makes the run exit non-zero.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use integration_tests::fake_dingtalk::{default_template, FakeComponent};
use integration_tests::harness::{self, Bridge, Options, PROCESS_CODE};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

/// Without the variables cargo sets for this test crate, so the nested build is the workspace's.
fn without_test_crate_env(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            command.env_remove(key);
        }
    }
    command
}

/// The `bridge` binary, built (or found fresh) in this target directory.
fn bridge_binary() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = without_test_crate_env(&mut Command::new(cargo))
            .args(["build", "-q", "-p", "bridge-cli", "--bin", "bridge"])
            .current_dir(repo_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p bridge-cli failed");
    });
    // target/<profile>/deps/doctor-<hash> → target/<profile>/bridge
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("bridge")
}

/// The bridge's DingTalk event route, served over HTTP by the real use case.
async fn serve_callback(bridge: &Bridge) -> SocketAddr {
    async fn handle(
        State(app): State<app::App>,
        Query(q): Query<HashMap<String, String>>,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        match app::callback::dingtalk(&app, &q, &body).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => (
                StatusCode::from_u16(e.status()).unwrap(),
                Json(e.ops_body()),
            )
                .into_response(),
        }
    }
    let router = Router::new()
        .route("/callback/dingtalk", post(handle))
        .with_state(bridge.app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

struct Run {
    code: i32,
    out: String,
}

impl Run {
    fn is_line_of(line: &str, name: &str) -> bool {
        line.split_once("] ")
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{name}:")))
    }
    fn line(&self, name: &str) -> &str {
        self.out
            .lines()
            .find(|l| Run::is_line_of(l, name))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{}", self.out))
    }
    fn assert_fails(&self, name: &str, fix_mentions: &str) {
        let line = self.line(name);
        assert!(
            line.starts_with("[FAIL]"),
            "{name} should fail:\n{}",
            self.out
        );
        assert!(
            line.contains(fix_mentions),
            "{name} should say {fix_mentions:?}: {line}"
        );
        assert_eq!(self.code, 1, "a failed check exits 1:\n{}", self.out);
        let others_failing = self
            .out
            .lines()
            .filter(|l| l.starts_with("[FAIL]") && !Run::is_line_of(l, name))
            .count();
        assert_eq!(others_failing, 0, "only {name} is broken:\n{}", self.out);
    }
}

/// Runs `bridge doctor` with `env` written into an env file (overrides over the good settings).
async fn doctor(bridge: &Bridge, bridge_url: &str, overrides: &[(&str, &str)]) -> Run {
    doctor_with(bridge, bridge_url, overrides, true).await
}

/// `doctor`, with the AWS keys in the process environment or, like `make dev`'s settings, only
/// in the env file.
async fn doctor_with(
    bridge: &Bridge,
    bridge_url: &str,
    overrides: &[(&str, &str)],
    keys_in_process_env: bool,
) -> Run {
    let mut env = bridge.env.clone();
    env.insert(
        "AWS_ENDPOINT_URL_DYNAMODB".into(),
        harness::dynamo_endpoint(),
    );
    for (k, v) in overrides {
        env.insert((*k).into(), (*v).into());
    }
    // One file per run: tests run side by side, and two of them can start in the same millisecond.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!(
        "doctor-{}-{}-{run}.env",
        std::process::id(),
        harness::now_ms()
    ));
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let binary = bridge_binary();
    let url = bridge_url.to_owned();
    let path = file.clone();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(binary);
        command
            .arg("doctor")
            .arg("--env-file")
            .arg(&path)
            .arg("--bridge-url")
            .arg(&url)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("BRIDGE_ENV_FILE");
        if keys_in_process_env {
            command
                .env("AWS_ACCESS_KEY_ID", "local")
                .env("AWS_SECRET_ACCESS_KEY", "local")
                .env("AWS_REGION", "us-east-1");
        } else {
            command
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_PROFILE")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
                .env("AWS_CONFIG_FILE", "/nonexistent");
        }
        command.output().expect("run bridge doctor")
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&file);
    Run {
        code: output.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    }
}

async fn setup() -> (Bridge, String) {
    let bridge = Bridge::start(Options::default()).await;
    let rules = std::fs::read(repo_root().join("infra/rules.sample.json")).unwrap();
    app::admin::put_rules(&bridge.app, &rules)
        .await
        .expect("the sample rules are stored");
    // One ticket, so the DingTalk call meter has something to show.
    let (status, reply) = bridge
        .create(&harness::with_apply_id(
            &harness::fixture("02_physical_table_high.json"),
            "doctor-meter-1",
        ))
        .await;
    assert_eq!(status, 200, "{reply}");
    let addr = serve_callback(&bridge).await;
    (bridge, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_setup_passes_every_check() {
    let (bridge, url) = setup().await;
    let run = doctor(&bridge, &url, &[]).await;
    println!("{}", run.out);
    assert_eq!(run.code, 0, "good setup:\n{}", run.out);
    for name in [
        "settings",
        "dingtalk token",
        "dingtalk agent id",
        "dingtalk template",
        "dingtalk event subscription",
        "dataphin callback",
        "tickets table",
        "user mappings table",
        "rules",
        "rule users mapped",
    ] {
        assert!(
            run.line(name).starts_with("[ok]"),
            "{name} is ok:\n{}",
            run.out
        );
    }
    // What the API cannot tell is said, not claimed.
    let revoke = run.line("dingtalk revoke");
    assert!(revoke.starts_with("[?]"), "dingtalk revoke:\n{}", run.out);
    // The bridge's own DingTalk call meter (issue 9): the ticket submitted in setup cost 3 calls
    // (token, template schema, create).
    let calls = run.line("dingtalk calls this month");
    assert!(calls.starts_with("[ok]"), "{}", run.out);
    assert!(calls.contains("spent 3 DingTalk API calls"), "{calls}");
    assert!(run.out.contains("all checks passed"));
    // The test document reached Dataphin, decrypted and signed as a real callback.
    assert!(bridge
        .dataphin
        .documents()
        .iter()
        .any(|d| d["applyId"] == "bridge-doctor-test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_setting_fails_its_own_check_with_the_fix() {
    let (bridge, url) = setup().await;

    let run = doctor(&bridge, &url, &[("DINGTALK_APP_SECRET", "not-the-secret")]).await;
    run.assert_fails("dingtalk token", "DINGTALK_APP_SECRET");

    let run = doctor(&bridge, &url, &[("DINGTALK_PROCESS_CODE", "PROC-NOPE")]).await;
    run.assert_fails("dingtalk template", "DINGTALK_PROCESS_CODE");

    // A template with a required component the bridge cannot fill.
    let mut template = default_template();
    template.push(FakeComponent::new("DDSelectField", "Cost center", true));
    bridge.dingtalk.set_template("PROC-SELECT", template);
    let run = doctor(&bridge, &url, &[("DINGTALK_PROCESS_CODE", "PROC-SELECT")]).await;
    run.assert_fails("dingtalk template", "Cost center (DDSelectField)");
    assert!(PROCESS_CODE != "PROC-SELECT");

    // The subscription's Token differs from the bridge's: the bridge refuses the signature.
    let run = doctor(
        &bridge,
        &url,
        &[("DINGTALK_CALLBACK_TOKEN", "another-token")],
    )
    .await;
    run.assert_fails("dingtalk event subscription", "DINGTALK_CALLBACK_TOKEN");
    // Nothing listens at the URL.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let run = doctor(&bridge, &closed, &[]).await;
    run.assert_fails("dingtalk event subscription", "does not answer");

    // Another valid Encoding AES Key than Dataphin's: Dataphin cannot decrypt the document.
    let run = doctor(
        &bridge,
        &url,
        &[(
            "DATAPHIN_AES_KEY",
            "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut",
        )],
    )
    .await;
    run.assert_fails("dataphin callback", "DATAPHIN_AES_KEY");

    let run = doctor(&bridge, &url, &[("TICKETS_TABLE", "no-such-table")]).await;
    let line = run.line("tickets table");
    assert!(
        line.starts_with("[FAIL]") && line.contains("TICKETS_TABLE"),
        "{}",
        run.out
    );
    assert_eq!(run.code, 1);

    // A malformed setting stops at the settings line, naming the variable.
    let run = doctor(&bridge, &url, &[("DATAPHIN_AES_KEY", "short")]).await;
    run.assert_fails("settings", "DATAPHIN_AES_KEY");

    // A rule naming an approver nobody mapped.
    let rules = br#"{"securityLevels": ["L1","L2","L3","L4"], "rules": [
        {"id": "pii", "when": {"minSecurityLevel": "L4"},
         "then": {"action": "ROUTE", "addNodes": [{"users": ["300000930", "ghost-user-1"], "relation": "and"}]}}]}"#;
    app::admin::put_rules(&bridge.app, rules).await.unwrap();
    let run = doctor(&bridge, &url, &[]).await;
    run.assert_fails("rule users mapped", "ghost-user-1");
    assert!(!run.line("rule users mapped").contains("300000930"));
}

/// The AgentId is checked against DingTalk's list of the organisation's apps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_id_must_be_an_enabled_app_of_the_organisation() {
    let (bridge, url) = setup().await;
    let good = doctor(&bridge, &url, &[]).await;
    assert!(
        good.line("dingtalk agent id").starts_with("[ok]")
            && good.line("dingtalk agent id").contains("4242"),
        "{}",
        good.out
    );

    // An AgentId no app of the organisation has.
    let run = doctor(&bridge, &url, &[("DINGTALK_AGENT_ID", "987654")]).await;
    run.assert_fails("dingtalk agent id", "DINGTALK_AGENT_ID");
    assert!(run.line("dingtalk agent id").contains("987654"));

    // The app was disabled in the developer console.
    bridge.dingtalk.disable_app();
    let run = doctor(&bridge, &url, &[]).await;
    run.assert_fails("dingtalk agent id", "disabled");
}

/// Without the permission to read the app list the line says what to grant, and does not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_app_list_is_said_not_guessed() {
    let (bridge, url) = setup().await;
    bridge.dingtalk.withhold_app_list_permission();
    let run = doctor(&bridge, &url, &[("DINGTALK_AGENT_ID", "987654")]).await;
    let line = run.line("dingtalk agent id");
    assert!(
        line.starts_with("[?]") && line.contains("qyapi_get_microapp_list"),
        "{}",
        run.out
    );
    assert_eq!(run.code, 0, "{}", run.out);
}

/// The local stack's settings carry their own AWS keys (infra/local.env); the doctor uses them as
/// the functions do, with none in its own environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_env_files_aws_keys_reach_the_tables() {
    let (bridge, url) = setup().await;
    let keys = [
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_REGION", "us-east-1"),
    ];
    let run = doctor_with(&bridge, &url, &keys, false).await;
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(run.line("tickets table").starts_with("[ok]"), "{}", run.out);
}

/// DingTalk has no read of the template's revoke setting; its own records prove it: an instance of
/// the template revoked by its submitter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitters_revoke_in_dingtalks_records_proves_the_template_allows_it() {
    let (bridge, url) = setup().await;
    // No instance revoked yet: said, not claimed.
    let run = doctor(&bridge, &url, &[]).await;
    let line = run.line("dingtalk revoke");
    assert!(
        line.starts_with("[?]") && line.contains("allow the submitter to revoke"),
        "{}",
        run.out
    );

    // The applicant withdraws in Dataphin: the bridge terminates the instance as its originator.
    let body = harness::with_apply_id(&harness::fixture("02_physical_table_high.json"), "rv-1");
    let (status, reply) = bridge.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    bridge.push_pending_dingtalk_events().await;
    let path = format!(
        "/dataphin/bpms/processinstance/terminate?{}",
        bridge.auth_query()
    );
    let terminate = serde_json::json!({"tenantId": harness::TENANT, "applyId": "rv-1",
        "operatorUserId": "300000913", "reason": "not needed"});
    let (status, reply) = bridge
        .request(
            harness::Function::Withdraw,
            "POST",
            &path,
            &[("content-type", "application/json")],
            terminate.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let instance = bridge
        .ticket(&Bridge::ticket_id_of(&body))
        .await
        .instance_id
        .expect("forwarded to DingTalk");

    // The sample rules route this L4 request to PROC-PII: that template's records prove it.
    let revoked_code = bridge.dingtalk.instance(&instance).unwrap().process_code;
    assert_eq!(revoked_code, "PROC-PII");
    let run = doctor(&bridge, &url, &[("DINGTALK_PROCESS_CODE", "PROC-PII")]).await;
    let line = run.line("dingtalk revoke");
    assert!(
        line.starts_with("[ok]") && line.contains(&instance),
        "{}",
        run.out
    );
    // Another template's history proves nothing about this one.
    let run = doctor(&bridge, &url, &[]).await;
    assert!(
        run.line("dingtalk revoke").starts_with("[?]"),
        "{}",
        run.out
    );
}
