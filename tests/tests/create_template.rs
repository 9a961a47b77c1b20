//! `bridge create-template` against the fake DingTalk: the real binary makes a template through
//! `POST /v1.0/workflow/forms`, prints the process code, and a bridge configured with that code
//! fills every component of it on its first ticket.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration_tests::harness::{self, Bridge, Options};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

/// The `bridge` binary, built (or found fresh) in this target directory; the nested build runs
/// without the variables cargo sets for this test crate.
fn bridge_binary() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
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
        let status = command
            .args(["build", "-q", "-p", "bridge-cli", "--bin", "bridge"])
            .current_dir(repo_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p bridge-cli failed");
    });
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("bridge")
}

async fn create_template(bridge: &Bridge, args: &[&str], secret: &str) -> Output {
    let file = std::env::temp_dir().join(format!(
        "create-template-{}-{}.env",
        std::process::id(),
        harness::now_ms()
    ));
    let text = format!(
        "DINGTALK_API_BASE={}\nDINGTALK_APP_KEY={}\nDINGTALK_APP_SECRET={secret}\n",
        bridge.dingtalk.base_url(),
        harness::APP_KEY
    );
    std::fs::write(&file, text).unwrap();
    let binary = bridge_binary();
    let mut all = vec!["create-template".to_string(), "--env-file".into()];
    all.push(file.to_string_lossy().into_owned());
    all.extend(args.iter().map(|a| a.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .args(&all)
            .env_remove("BRIDGE_ENV_FILE")
            .env_remove("DINGTALK_APP_SECRET")
            .output()
            .expect("run bridge create-template")
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&file);
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_it_creates_is_filled_completely_by_the_bridge() {
    let mut bridge = Bridge::start(Options::default()).await;
    let out = create_template(&bridge, &["--name", "数据权限审批"], harness::APP_SECRET).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DINGTALK_PROCESS_CODE="))
        .unwrap_or_else(|| panic!("the process code is printed: {stdout}"))
        .trim()
        .to_string();
    assert!(stdout.contains("允许提交人撤销审批中的审批单"), "{stdout}");
    let template = bridge.dingtalk.template(&code).expect("DingTalk has it");
    let kinds: Vec<(&str, &str, bool)> = template
        .iter()
        .map(|c| (c.kind.as_str(), c.label.as_str(), c.required))
        .collect();
    assert!(
        kinds.contains(&("TextareaField", "审批内容", true)),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("TextField", "工单号", true)), "{kinds:?}");

    // The bridge configured with it: every component is filled, nothing else is sent.
    bridge
        .env
        .insert("DINGTALK_PROCESS_CODE".into(), code.clone());
    let config = app::Config::from_source(&bridge.env).expect("valid settings");
    bridge.app = app::App::build(config, harness::dynamo_client()).expect("app builds");
    let body = harness::with_apply_id(
        &harness::fixture("02_physical_table_high.json"),
        "create-template-1",
    );
    let (status, reply) = bridge.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    let creates = bridge.dingtalk.creates();
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["processCode"], code.as_str());
    let sent: Vec<(String, String)> = creates[0]["formComponentValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (kind, label, _) in &kinds {
        let value = sent
            .iter()
            .find(|(n, _)| n == label)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{label} is filled: {sent:?}"));
        assert!(!value.trim().is_empty(), "{label} is filled: {sent:?}");
        if *kind == "TextField" {
            assert!(!value.contains('\n'), "{label} is one line: {value:?}");
        }
    }
    assert_eq!(
        sent.len(),
        kinds.len(),
        "no name the template lacks: {sent:?}"
    );
    let ticket = Bridge::ticket_id_of(&body);
    assert!(sent
        .iter()
        .any(|(n, v)| n == "工单号" && v.contains(&ticket)));

    // Wrong credentials: DingTalk's reason, exit non-zero, nothing made.
    let before = bridge.dingtalk.calls().len();
    let out = create_template(&bridge, &[], "wrong-secret").await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalidClientIdOrSecret"), "{stderr}");
    assert!(bridge.dingtalk.calls().len() > before);
    assert!(!bridge
        .dingtalk
        .calls()
        .iter()
        .skip(before)
        .any(|(_, p)| p == "/v1.0/workflow/forms"));
}
