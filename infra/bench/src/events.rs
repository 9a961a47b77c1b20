//! The event path (issue 10), in process against the project's dynalite with its stream log
//! (`infra/dynalite/server.js --streams`) and the stream runner `make dev` uses:
//!
//! - the answer to a backend event while Dataphin hangs (its 30 s delay outlasts the bridge's
//!   5 s timeout): the answer records the event and returns; the fold and the hanging delivery
//!   run on the stream meanwhile, in the same process;
//! - a deciding event to its result at Dataphin, with the schedule never running: only the
//!   stream can carry it.
//!
//! Both against one raw DynamoDB GetItem measured in the same run.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandbox::fake_bpm::{signed_callback, FakeBpm};
use sandbox::fake_dataphin::FakeDataphin;
use sandbox::streams::{Invoke, Mapping, StreamRunner};
use serde_json::{json, Value};

use crate::error::BenchError;
use crate::handlers::{call, Function};
use crate::stack::{self, ChildGuard};

pub struct EventResults {
    /// Answers to a deciding event while Dataphin hangs.
    pub answers: Vec<Duration>,
    /// From a deciding event's push to its result acknowledged by Dataphin.
    pub to_dataphin: Vec<Duration>,
    /// One raw GetItem, the unit of the ratios.
    pub get_item: Vec<Duration>,
}

const ACCESS_TOKEN: &str = "bench-dataphin-access-token-0123456789";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const WEBHOOK_SECRET: &str = "bench-webhook-hmac-secret-0123456789ab";

/// `tickets` tickets decided while Dataphin hangs, then as many decided with it answering.
pub async fn event_path(
    local: &BTreeMap<String, String>,
    port: u16,
    tickets: usize,
) -> Result<EventResults, BenchError> {
    let root = stack::workspace_root();
    let streams = std::env::temp_dir().join(format!("bridge-bench-streams-{}", std::process::id()));
    let _dynalite = start_dynalite(&root, port, &streams).await?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = stack::dynamo_client(&endpoint);
    let (t, m) = ("bench-events-tickets", "bench-events-mappings");
    stack::prepare_tables(&client, t, m).await?;
    let dataphin = FakeDataphin::start(ACCESS_TOKEN, AES_KEY).await;
    let bpm = FakeBpm::start(WEBHOOK_SECRET).await;
    let mut env: HashMap<String, String> = local.clone().into_iter().collect();
    for (k, v) in [
        ("TICKETS_TABLE", t.to_string()),
        ("USER_MAPPINGS_TABLE", m.to_string()),
        ("BACKEND", "webhook".into()),
        ("WEBHOOK_URL", bpm.url()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("DATAPHIN_CALLBACK_URL", dataphin.url()),
        ("DATAPHIN_ACCESS_TOKEN", ACCESS_TOKEN.into()),
        ("DATAPHIN_AES_KEY", AES_KEY.into()),
        ("DATAPHIN_INTEGRATION_METHOD", "FINAL_RESULT".into()),
    ] {
        env.insert(k.into(), v);
    }
    env.remove("RULES_FILE");
    let config = app::Config::from_source(&env).map_err(|e| BenchError::Setup(e.to_string()))?;
    let app = app::App::build(config, client.clone())
        .map_err(|e| BenchError::Setup(format!("build the app: {e}")))?;

    // The stream's event source, polling as `make dev`'s runner does.
    let runner = StreamRunner::new(
        streams.join(format!("{t}.jsonl")),
        None,
        Mapping::new(&app::stream::FILTER_PATTERNS, "dispatch"),
    );
    let invoke: Invoke = {
        let app = app.clone();
        std::sync::Arc::new(move |event: Value| {
            let app = app.clone();
            Box::pin(async move {
                app::stream::handle(&app, event, None)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    };
    let poller = tokio::spawn(runner.run(Duration::from_millis(20), invoke));

    let mut get_item = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let _ = app.store.get_ticket("none", false).await;
        get_item.push(started.elapsed());
    }

    dataphin.set_delay(Duration::from_secs(30));
    let mut answers = Vec::new();
    for i in 0..tickets {
        let instance = create(&app, &bpm, &format!("hang-{i}")).await?;
        let started = Instant::now();
        push_final(&app, &instance, &format!("hang-{i}")).await?;
        answers.push(started.elapsed());
    }
    dataphin.set_delay(Duration::ZERO);
    let mut to_dataphin = Vec::new();
    for i in 0..tickets {
        let apply = format!("ok-{i}");
        let instance = create(&app, &bpm, &apply).await?;
        let id = app::tickets::ticket_id(stack::TENANT, &apply);
        let started = Instant::now();
        push_final(&app, &instance, &apply).await?;
        let deadline = started + Duration::from_secs(30);
        while dataphin
            .latest(&id)
            .is_none_or(|d| d["status"] != "APPROVED")
        {
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!("{id} never reached Dataphin")));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        to_dataphin.push(started.elapsed());
    }
    poller.abort();
    let _ = std::fs::remove_dir_all(&streams);
    Ok(EventResults {
        answers,
        to_dataphin,
        get_item,
    })
}

async fn start_dynalite(root: &Path, port: u16, streams: &Path) -> Result<ChildGuard, BenchError> {
    let child = Command::new("node")
        .arg(root.join("infra/dynalite/server.js"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--createTableMs", "20", "--streams"])
        .arg(streams)
        .env("DYNALITE_DIR", root.join("infra/node_modules/dynalite"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(BenchError::io(
            "start infra/dynalite/server.js (npm ci --prefix infra)",
        ))?;
    let guard = ChildGuard(child);
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(guard);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(BenchError::Setup(
        "the streams dynalite did not start".into(),
    ))
}

/// Dataphin's create of fixture 01 (routed to the BPM: no rules); returns the BPM instance.
async fn create(app: &app::App, bpm: &FakeBpm, apply_id: &str) -> Result<String, BenchError> {
    let fixture = std::fs::read(
        stack::workspace_root().join("fixtures/submissions/01_physical_table_low.json"),
    )
    .map_err(BenchError::io("read fixture 01"))?;
    let mut body: Value =
        serde_json::from_slice(&fixture).map_err(|e| BenchError::Setup(e.to_string()))?;
    body["applyId"] = json!(apply_id);
    let path = format!(
        "/dataphin/bpms/processinstance/create?accessToken={ACCESS_TOKEN}&timestamp={}",
        app::http::now_ms()
    );
    let (status, reply) = call(
        app,
        Function::Submit,
        "POST",
        &path,
        &[],
        body.to_string().as_bytes(),
    )
    .await?;
    if status != 200 {
        return Err(BenchError::Setup(format!(
            "create {apply_id}: {status} {reply}"
        )));
    }
    let id = reply["processInstanceId"].as_str().unwrap_or_default();
    bpm.instance_for(id)
        .ok_or_else(|| BenchError::Setup(format!("{apply_id} did not reach the BPM")))
}

/// The BPM's signed event that decides the instance; answered 200 or an error.
async fn push_final(app: &app::App, instance: &str, apply_id: &str) -> Result<(), BenchError> {
    let event = json!({"event_id": format!("final-{apply_id}"), "instance_id": instance,
        "node_id": "node-1", "node_status": "APPROVED",
        "operator": {"backend_user_id": "dt-bob", "reason": "ok"},
        "final_status": "APPROVED", "occurred_at": app::http::now_ms()});
    let body = event.to_string();
    let (ts, sig) = signed_callback(WEBHOOK_SECRET, body.as_bytes());
    let headers = [
        ("x-bridge-timestamp", ts.as_str()),
        ("x-bridge-signature", sig.as_str()),
    ];
    let (status, reply) = call(
        app,
        Function::Callback,
        "POST",
        "/callback/webhook",
        &headers,
        body.as_bytes(),
    )
    .await?;
    if status != 200 {
        return Err(BenchError::Setup(format!(
            "event {apply_id}: {status} {reply}"
        )));
    }
    Ok(())
}
