//! The local stack as `make dev` runs it: the real `cargo lambda watch` with the workspace's
//! router, the sample environment of `infra/local.env`, and a DynamoDB-compatible server.
//!
//! Needs `BRIDGE_TEST_DYNAMODB` (the endpoint of the dynalite `make test` starts) and
//! `cargo lambda` on the PATH (`make test` installs it).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use serde_json::{json, Value};

/// First start compiles nothing (the test builds the binaries first) but a cold machine can be
/// slow to link; the watch server itself starts in well under a minute.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

fn dynamodb_endpoint() -> String {
    std::env::var("BRIDGE_TEST_DYNAMODB").unwrap_or_else(|_| {
        panic!(
            "BRIDGE_TEST_DYNAMODB is not set: run the tests with `make test`, which starts a \
             DynamoDB-compatible server (dynalite) and points this variable at it"
        )
    })
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// `infra/local.env` with the table names, endpoint and rules path of this test run.
/// `cargo lambda watch` gives its env file precedence over its own environment, so overrides
/// have to be written into the file.
fn env_file(tickets: &str, mappings: &str, endpoint: &str) -> String {
    let root = repo_root();
    let sample = std::fs::read_to_string(root.join("infra/local.env")).expect("infra/local.env");
    let overrides = [
        ("TICKETS_TABLE", tickets.to_owned()),
        ("USER_MAPPINGS_TABLE", mappings.to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.to_owned()),
        (
            "RULES_FILE",
            root.join("infra/rules.sample.json").display().to_string(),
        ),
    ];
    // The sample's `${...}` placeholders are what `make dev` fills from its knobs.
    let sample = sample
        .replace("${SANDBOX_PORT}", "9400")
        .replace("${INVOKE_PORT}", "9000")
        .replace("${DYNAMO_ENDPOINT}", endpoint);
    let mut lines: Vec<String> = sample
        .lines()
        .filter(|line| {
            !overrides
                .iter()
                .any(|(key, _)| line.starts_with(&format!("{key}=")))
        })
        .map(str::to_owned)
        .collect();
    lines.extend(
        overrides
            .iter()
            .map(|(key, value)| format!("{key}={value}")),
    );
    lines.join("\n") + "\n"
}

/// One value of `infra/local.env`.
fn sample_setting(key: &str) -> String {
    let sample =
        std::fs::read_to_string(repo_root().join("infra/local.env")).expect("infra/local.env");
    sample
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("infra/local.env has no {key}"))
        .to_owned()
}

/// A running `cargo lambda watch`; dropping it stops its whole process group (the watch server,
/// `cargo run` and the function processes), also when the test panics.
struct Watch {
    child: Child,
    port: u16,
    log_path: PathBuf,
    env_path: PathBuf,
}

impl Watch {
    fn start(env: &str) -> Watch {
        let port = free_port();
        let tmp = std::env::temp_dir();
        let env_path = tmp.join(format!("{}.env", unique("bridge-router")));
        let log_path = tmp.join(format!("{}.log", unique("bridge-router")));
        std::fs::write(&env_path, env).expect("write the env file");
        let log = File::create(&log_path).expect("create the watch log");
        let child = without_test_crate_env(&mut Command::new("cargo"))
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "--invoke-address",
                "127.0.0.1",
            ])
            .arg("--invoke-port")
            .arg(port.to_string())
            .arg("--env-file")
            .arg(&env_path)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect(
                "start `cargo lambda watch` (is cargo-lambda installed? `make test` installs it)",
            );
        let mut watch = Watch {
            child,
            port,
            log_path,
            env_path,
        };
        watch.wait_listening();
        watch
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Some(status) = self.child.try_wait().expect("poll the watch process") {
                panic!("cargo lambda watch exited with {status} before listening");
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "cargo lambda watch did not listen on {} within {READY_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    fn log_tail(&self) -> String {
        let mut file = match File::open(&self.log_path) {
            Ok(file) => file,
            Err(e) => return format!("(no log: {e})"),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(8000)));
        let mut tail = String::new();
        let _ = file.read_to_string(&mut tail);
        tail
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- cargo lambda watch log (tail) ---\n{}", self.log_tail());
        }
        let group = format!("-{}", self.child.id());
        let kill = |signal: &str| {
            // The group may already be gone; that is the goal, not an error.
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        kill("-KILL");
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.env_path);
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// Removes the variables `cargo test` sets for this test crate. Inherited by a nested cargo they
/// look like changed settings to build scripts that watch them (ring watches
/// `CARGO_MANIFEST_DIR`), and dependencies would be rebuilt for nothing.
fn without_test_crate_env(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let per_crate = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            );
        if per_crate {
            command.env_remove(key);
        }
    }
    command
}

/// Builds the function binaries the test calls, so the first invocation through the watch
/// server starts them instead of compiling them inside the request. Built by `--bin` from the
/// workspace root, as `cargo lambda watch` runs them, so features resolve the same way and the
/// watch server finds the artifacts fresh.
fn build_functions(binaries: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    without_test_crate_env(&mut command)
        .arg("build")
        .current_dir(repo_root());
    for binary in binaries {
        command.args(["--bin", binary]);
    }
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "cargo build of {binaries:?} failed");
}

async fn create_tables(endpoint: &str, tickets: &str, mappings: &str) {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    store::schema::create_tables(&client, tickets, mappings)
        .await
        .expect("create the test tables");
}

async fn post_connect(
    client: &reqwest::Client,
    watch: &Watch,
    token: &str,
    timestamp: u128,
) -> (u16, Value) {
    let url = watch.url(&format!(
        "/dataphin/bpms/check/connect?accessToken={token}&timestamp={timestamp}"
    ));
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(json!({"checkEvent": "connectivity"}).to_string())
        .send()
        .await
        .expect("connect answers through the local router");
    let status = response.status().as_u16();
    let text = response.text().await.expect("connect body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("connect body is not JSON ({e}): {text}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn dataphin_test_connection_through_the_local_router() {
    let endpoint = dynamodb_endpoint();
    let tickets = unique("router-tickets");
    let mappings = unique("router-mappings");
    create_tables(&endpoint, &tickets, &mappings).await;
    build_functions(&["submit"]);

    let watch = Watch::start(&env_file(&tickets, &mappings, &endpoint));
    let client = reqwest::Client::builder()
        .timeout(READY_TIMEOUT)
        .build()
        .expect("http client");

    let access_token = sample_setting("DATAPHIN_ACCESS_TOKEN");
    let (status, body) = post_connect(&client, &watch, &access_token, now_ms()).await;
    assert_eq!(status, 200, "connect with the configured token: {body}");
    assert_eq!(body["checkResult"], "success", "{body}");

    let (status, body) = post_connect(&client, &watch, "not-the-token", now_ms()).await;
    assert_eq!(status, 401, "connect with a wrong token: {body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["errorCode"], "InvalidAccessToken", "{body}");
    assert_eq!(body["checkResult"], "failure", "{body}");

    let an_hour_ago = now_ms() - 3_600_000;
    let (status, body) = post_connect(&client, &watch, &access_token, an_hour_ago).await;
    assert_eq!(status, 401, "connect with a stale timestamp: {body}");
    assert_eq!(body["errorCode"], "StaleTimestamp", "{body}");
    assert_eq!(body["checkResult"], "failure", "{body}");
}
