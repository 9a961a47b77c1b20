//! `make dev` as a newcomer runs it (SPEC 10 and 11): the real `infra/scripts/dev.sh` with the
//! sample settings, its own dynalite, `cargo lambda watch` and the sandbox. Two stacks run side by
//! side on other ports and data folders, one with the sample (DingTalk) and one with a copy of it
//! set to `BACKEND=webhook`; on each, fixture 02 submitted at the sandbox and approved by every
//! approver through its API reaches the sandbox's Dataphin as APPROVED. SIGTERM stops everything.
//!
//! Needs `cargo lambda` and dynalite (`make test` installs both).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// dev.sh builds the workspace first; on a cold target directory that is minutes.
const READY_TIMEOUT: Duration = Duration::from_secs(900);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

fn listening(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn unique(prefix: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()))
}

/// The variables `cargo test` sets for this crate would look like changed settings to the
/// nested cargo's build scripts (see local_router.rs).
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

/// One `make dev`; dropping it sends SIGTERM to dev.sh (which stops what it started), then
/// kills whatever is left of its group.
struct Dev {
    child: Child,
    invoke_port: u16,
    sandbox_port: u16,
    dynamo_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Set once the stack was killed to be started again on the same data.
    keep_data: bool,
}

impl Dev {
    fn start(env_file: Option<&Path>) -> Dev {
        let data_dir = unique("bridge-dev");
        Dev::start_on(
            env_file,
            data_dir,
            (free_port(), free_port(), free_port()),
            "5",
        )
    }

    /// `make dev` on these ports and data folder, the schedule every `dispatch_every` seconds.
    fn start_on(
        env_file: Option<&Path>,
        data_dir: PathBuf,
        (invoke_port, sandbox_port, dynamo_port): (u16, u16, u16),
        dispatch_every: &str,
    ) -> Dev {
        std::fs::create_dir_all(&data_dir).unwrap();
        let log_path = data_dir.join("make-dev.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = Command::new("bash");
        without_test_crate_env(&mut command)
            .arg("infra/scripts/dev.sh")
            .current_dir(repo_root())
            .env("INVOKE_PORT", invoke_port.to_string())
            .env("SANDBOX_PORT", sandbox_port.to_string())
            .env("DYNAMO_PORT", dynamo_port.to_string())
            .env("BRIDGE_DATA_DIR", &data_dir)
            .env("DISPATCH_EVERY_SECONDS", dispatch_every)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        if let Some(file) = env_file {
            command.env("BRIDGE_ENV_FILE", file);
        }
        let child = command.spawn().expect("run infra/scripts/dev.sh");
        Dev {
            child,
            invoke_port,
            sandbox_port,
            dynamo_port,
            data_dir,
            log_path,
            keep_data: false,
        }
    }

    /// SIGKILL to every process of the stack (the groups dev.sh lists in stack.pids), as a
    /// machine that loses power would; the data folder is kept.
    fn kill_all(&mut self) {
        let pids = std::fs::read_to_string(self.data_dir.join("stack.pids")).unwrap_or_default();
        for pgid in pids.lines().chain([self.child.id().to_string().as_str()]) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
        self.keep_data = true;
    }

    fn log(&self) -> String {
        let mut file = match File::open(&self.log_path) {
            Ok(f) => f,
            Err(e) => return format!("(no log: {e})"),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(6000)));
        let mut tail = String::new();
        let _ = file.read_to_string(&mut tail);
        tail
    }

    /// Until dev.sh prints that it is ready; returns how long that took.
    fn wait_ready(&mut self, started: Instant) -> Duration {
        self.wait_ready_again(started, 0)
    }

    /// Until dev.sh has printed that it is ready more than `readies_before` times (a restart on
    /// the same data folder appends to its log).
    fn wait_ready_again(&mut self, started: Instant, readies_before: usize) -> Duration {
        loop {
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            if log.matches("Ready in").count() > readies_before {
                return started.elapsed();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("make dev exited with {status}:\n{}", self.log());
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "make dev not ready within {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn sandbox(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.sandbox_port)
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "make dev did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- make dev log (tail) ---\n{}", self.log());
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http
        .request(method.parse().unwrap(), url)
        .header("content-type", "application/json");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}")),
    )
}

/// Submit fixture 02 at the sandbox, agree to every task, wait for APPROVED at its Dataphin.
async fn run_the_loop(dev: &Dev, backend: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let fixture =
        std::fs::read(repo_root().join("fixtures/submissions/02_physical_table_high.json"))
            .unwrap();
    let mut body: Value = serde_json::from_slice(&fixture).unwrap();
    body["applyId"] = json!(format!("dev-{backend}-{}", std::process::id()));
    let (status, reply) = call(
        &http,
        "POST",
        &dev.sandbox("/api/dataphin/submit"),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{backend}: submit: {reply}");
    assert_eq!(reply["status"], "PENDING", "{reply}");
    let ticket = reply["processInstanceId"].as_str().unwrap().to_owned();

    let mut approved = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = call(&http, "GET", &dev.sandbox("/api/instances"), None).await;
        let inst = list["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["ticket_id"] == ticket.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{backend}: no instance for {ticket}: {list}"));
        assert_eq!(inst["backend"], backend, "{inst}");
        if inst["status"] == "COMPLETED" {
            assert_eq!(inst["result"], "agree", "{inst}");
            break;
        }
        assert_eq!(inst["status"], "RUNNING", "{inst}");
        for task in inst["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] == "RUNNING")
        {
            let url = dev.sandbox(&format!(
                "/api/instances/{}/tasks/{}",
                inst["instance_id"].as_str().unwrap(),
                task["task_id"].as_str().unwrap()
            ));
            let (status, body) = call(
                &http,
                "POST",
                &url,
                Some(json!({"action": "agree", "remark": "ok"})),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            approved.push(task["user_id"].as_str().unwrap().to_owned());
        }
        assert!(
            Instant::now() < deadline,
            "{backend}: instance did not complete: {inst}"
        );
    }
    // Fixture 02 touches L4 columns: the sample rule `pii` adds the security officer (erin).
    assert_eq!(
        approved,
        ["dt-bob", "dt-carol", "dt-dave", "dt-erin"],
        "{backend}"
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, callbacks) =
            call(&http, "GET", &dev.sandbox("/api/dataphin/callbacks"), None).await;
        let seen = callbacks["callbacks"].as_array().unwrap().iter().any(|c| {
            c["status"] == 200
                && c["document"]["processInstanceId"] == ticket.as_str()
                && c["document"]["status"] == "APPROVED"
        });
        if seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{backend}: no APPROVED callback within 90 s: {callbacks}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn make_dev_runs_the_whole_loop_for_dingtalk_and_webhook_side_by_side() {
    let sample = std::fs::read_to_string(repo_root().join("infra/local.env")).unwrap();
    assert!(
        sample.contains("\nBACKEND=dingtalk\n"),
        "the sample backend is DingTalk"
    );
    let webhook_env = unique("bridge-dev-webhook.env");
    std::fs::write(
        &webhook_env,
        sample.replace("\nBACKEND=dingtalk\n", "\nBACKEND=webhook\n"),
    )
    .unwrap();

    let started = Instant::now();
    let mut dingtalk = Dev::start(None);
    let mut webhook = Dev::start(Some(&webhook_env));
    let ready = dingtalk.wait_ready(started);
    let ready_webhook = webhook.wait_ready(started);
    eprintln!(
        "make dev ready after {ready:?} (dingtalk) and {ready_webhook:?} (webhook, side by side)"
    );
    let printed = dingtalk.log();
    assert!(
        printed.contains(&format!("http://127.0.0.1:{}", dingtalk.sandbox_port)),
        "the page's URL is printed:\n{printed}"
    );
    assert!(
        printed.contains("curl -s -X POST"),
        "a ready curl is printed:\n{printed}"
    );

    run_the_loop(&dingtalk, "dingtalk").await;
    run_the_loop(&webhook, "webhook").await;

    for dev in [&mut dingtalk, &mut webhook] {
        dev.terminate();
        for port in [dev.invoke_port, dev.sandbox_port, dev.dynamo_port] {
            assert!(
                !listening(port),
                "port {port} still served after SIGTERM:\n{}",
                dev.log()
            );
        }
        assert!(
            dev.data_dir.join("sandbox.json").is_file(),
            "sandbox state kept"
        );
        assert!(
            dev.data_dir.join("dynalite").is_dir(),
            "dynalite data under BRIDGE_DATA_DIR"
        );
    }
    let _ = std::fs::remove_file(&webhook_env);
}

/// The sandbox's instances of these tickets: ticket id → every instance made for it.
async fn instances_of(
    http: &reqwest::Client,
    dev: &Dev,
    tickets: &[String],
) -> Vec<(String, Vec<Value>)> {
    let (_, list) = call(http, "GET", &dev.sandbox("/api/instances"), None).await;
    tickets
        .iter()
        .map(|t| {
            let of: Vec<Value> = list["instances"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["ticket_id"] == t.as_str())
                .cloned()
                .collect();
            (t.clone(), of)
        })
        .collect()
}

/// Acts on every running task of these tickets' instances: the first approver of an odd ticket
/// refuses, everyone else agrees. Errors (a stack going down) are left for the next round.
async fn act_on_running_tasks(http: &reqwest::Client, dev: &Dev, tickets: &[String]) -> usize {
    let mut acted = 0;
    for (i, (_, instances)) in instances_of(http, dev, tickets)
        .await
        .into_iter()
        .enumerate()
    {
        for inst in instances.iter().filter(|i| i["status"] == "RUNNING") {
            for task in inst["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["status"] == "RUNNING")
            {
                let action = if i % 2 == 1 { "refuse" } else { "agree" };
                let url = dev.sandbox(&format!(
                    "/api/instances/{}/tasks/{}",
                    inst["instance_id"].as_str().unwrap(),
                    task["task_id"].as_str().unwrap()
                ));
                let body = json!({"action": action, "remark": "crash test"}).to_string();
                if let Ok(r) = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    acted += usize::from(r.status().is_success());
                }
            }
        }
    }
    acted
}

/// Issue 10: the whole stack killed with SIGKILL mid-load and started again on the same data,
/// with the schedule set to an hour so that only the restarted stream (and no tick) can finish
/// the work. Every ticket whose create was answered 200 reaches its true final state at Dataphin,
/// no ticket has two backend instances, and the versions Dataphin sees only grow.
#[tokio::test(flavor = "multi_thread")]
async fn a_stack_killed_mid_load_and_restarted_on_the_same_data_loses_nothing() {
    let data_dir = unique("bridge-crash");
    let ports = (free_port(), free_port(), free_port());
    let started = Instant::now();
    let mut dev = Dev::start_on(None, data_dir.clone(), ports, "3600");
    dev.wait_ready(started);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let fixture =
        std::fs::read(repo_root().join("fixtures/submissions/02_physical_table_high.json"))
            .unwrap();
    let mut tickets = Vec::new();
    for n in 0..6 {
        let mut body: Value = serde_json::from_slice(&fixture).unwrap();
        body["applyId"] = json!(format!("crash-{n}-{}", std::process::id()));
        let (status, reply) = call(
            &http,
            "POST",
            &dev.sandbox("/api/dataphin/submit"),
            Some(body),
        )
        .await;
        assert_eq!(status, 200, "submit: {reply}");
        tickets.push(reply["processInstanceId"].as_str().unwrap().to_owned());
    }
    // Mid-load: the first approvers act, their events are on their way and the stream's work is
    // running, when every process of the stack is killed.
    let acted = act_on_running_tasks(&http, &dev, &tickets).await;
    assert!(
        acted >= tickets.len(),
        "every ticket had a running task ({acted} acted)"
    );
    dev.kill_all();
    // SIGKILL is delivered at once, but a killed process's sockets close when the kernel reaps it.
    let closing = Instant::now() + Duration::from_secs(10);
    for port in [ports.0, ports.1, ports.2] {
        while listening(port) {
            assert!(
                Instant::now() < closing,
                "port {port} still served 10 s after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let restarted = Instant::now();
    let readies = std::fs::read_to_string(&dev.log_path)
        .unwrap()
        .matches("Ready in")
        .count();
    let mut dev = Dev::start_on(None, data_dir, ports, "3600");
    dev.wait_ready_again(restarted, readies);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = instances_of(&http, &dev, &tickets).await;
        for (ticket, instances) in &all {
            assert_eq!(
                instances.len(),
                1,
                "{ticket} has one backend instance: {instances:?}"
            );
        }
        if all.iter().all(|(_, i)| i[0]["status"] == "COMPLETED") {
            break;
        }
        act_on_running_tasks(&http, &dev, &tickets).await;
        assert!(
            Instant::now() < deadline,
            "instances did not complete: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, callbacks) =
            call(&http, "GET", &dev.sandbox("/api/dataphin/callbacks"), None).await;
        let callbacks = callbacks["callbacks"].as_array().unwrap().clone();
        let finals: Vec<Option<String>> = tickets
            .iter()
            .map(|t| {
                callbacks
                    .iter()
                    .rfind(|c| {
                        c["status"] == 200 && c["document"]["processInstanceId"] == t.as_str()
                    })
                    .and_then(|c| c["document"]["status"].as_str().map(str::to_owned))
            })
            .collect();
        let expected: Vec<Option<String>> = (0..tickets.len())
            .map(|i| Some(if i % 2 == 1 { "REJECTED" } else { "APPROVED" }.to_string()))
            .collect();
        if finals == expected {
            for t in &tickets {
                let versions: Vec<i64> = callbacks
                    .iter()
                    .filter(|c| {
                        c["status"] == 200 && c["document"]["processInstanceId"] == t.as_str()
                    })
                    .filter_map(|c| c["document"]["version"].as_i64())
                    .collect();
                assert!(
                    versions.windows(2).all(|w| w[0] <= w[1]),
                    "{t}: versions seen by Dataphin only grow: {versions:?}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every ticket reached its final state at Dataphin after the restart: {finals:?}\n{}",
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    dev.terminate();
}
