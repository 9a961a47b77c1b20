//! What is measured in process: each request type the functions serve, and the ops list as the
//! tickets table grows.

use std::time::Duration;

use app::App;
use serde_json::{json, Value};
use store::StoredTicket;

use crate::error::BenchError;
use crate::handlers::{call, encode, expect, measure, Apps, Function, OpResult};
use crate::proxy::CountingProxy;
use crate::stack::{self, Responder, TENANT};

/// Submission fixtures of the contract: one the sample rules route to the BPM, one they approve.
const ROUTED_FIXTURE: &str = "02_physical_table_high.json";
const AUTO_FIXTURE: &str = "01_physical_table_low.json";

/// Secrets of the sample environment the requests authenticate with.
pub struct Tokens {
    pub access: String,
    pub admin: String,
}

pub struct Sizes {
    /// Timed runs of single-item operations (connect, get, detail, the baseline read).
    pub fast: usize,
    /// Timed runs of each kind of create.
    pub create: usize,
    /// Timed runs of each list shape at each table size.
    pub list: usize,
}

/// The tickets the list benchmark copies: one waiting (routed), one finished (auto-approved).
pub struct Templates(pub Vec<StoredTicket>);

fn fixture(name: &str) -> Result<Vec<u8>, BenchError> {
    let path = stack::workspace_root()
        .join("fixtures/submissions")
        .join(name);
    std::fs::read(&path).map_err(BenchError::io(format!("read {}", path.display())))
}

fn with_apply_id(body: &[u8], apply_id: &str) -> Result<Vec<u8>, BenchError> {
    let mut v: Value =
        serde_json::from_slice(body).map_err(|e| BenchError::Setup(e.to_string()))?;
    v["applyId"] = json!(apply_id);
    serde_json::to_vec(&v).map_err(|e| BenchError::Setup(e.to_string()))
}

fn auth_query(tokens: &Tokens) -> String {
    format!(
        "accessToken={}&timestamp={}",
        tokens.access,
        app::http::now_ms()
    )
}

async fn create(app: &App, tokens: &Tokens, body: &[u8]) -> Result<(u16, Value), BenchError> {
    let path = format!(
        "/dataphin/bpms/processinstance/create?{}",
        auth_query(tokens)
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

/// The baseline read, then connect, three kinds of create, get and detail.
pub async fn handler_ops(
    apps: &Apps,
    proxy: &CountingProxy,
    responder: &Responder,
    tokens: &Tokens,
    sizes: &Sizes,
) -> Result<(Vec<OpResult>, Templates), BenchError> {
    let routed = fixture(ROUTED_FIXTURE)?;
    let auto = fixture(AUTO_FIXTURE)?;
    // Seeds: the first create also stores the rules document from RULES_FILE, a one-off cost.
    let mut seeds = Vec::new();
    for (body, apply_id) in [(&routed, "bench-seed-routed"), (&auto, "bench-seed-auto")] {
        let body = with_apply_id(body, apply_id)?;
        let answer = create(&apps.timed, tokens, &body).await?;
        expect("seed create", &answer, |v| {
            v["processInstanceId"].is_string()
        })?;
        let id = answer.1["processInstanceId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let status = answer.1["status"].as_str().unwrap_or_default().to_string();
        seeds.push((id, status, body));
    }
    let (seed_id, routed_status, seed_body) = seeds[0].clone();
    let auto_status = seeds[1].1.clone();
    // The baseline goes first: warm dynalite and the connection pool up so it is not penalised.
    for _ in 0..50 {
        let _ = apps.timed.store.ping().await;
    }
    let mut results = Vec::new();
    results.push(
        measure(
            "DynamoDB GetItem (baseline)",
            apps,
            proxy,
            responder,
            sizes.fast,
            async |app: &App, _| {
                app.store.ping().await.map_err(|e| BenchError::WrongAnswer {
                    operation: "GetItem".into(),
                    problem: e.to_string(),
                })
            },
        )
        .await?,
    );
    results.push(
        measure(
            "connect (Test Connection)",
            apps,
            proxy,
            responder,
            sizes.fast,
            async |app: &App, _| {
                let path = format!("/dataphin/bpms/check/connect?{}", auth_query(tokens));
                let answer = call(app, Function::Submit, "POST", &path, &[], &[]).await?;
                expect("connect", &answer, |v| v["checkResult"] == "success")
            },
        )
        .await?,
    );
    let name = format!("create, routed to the BPM ({ROUTED_FIXTURE} -> {routed_status})");
    results.push(
        measure(
            name,
            apps,
            proxy,
            responder,
            sizes.create,
            async |app: &App, run| {
                let body = with_apply_id(&routed, &format!("bench-routed-{run}"))?;
                let answer = create(app, tokens, &body).await?;
                expect("routed create", &answer, |v| {
                    v["status"] == routed_status.as_str()
                })
            },
        )
        .await?,
    );
    let name = format!("create, decided by a rule ({AUTO_FIXTURE} -> {auto_status})");
    results.push(
        measure(
            name,
            apps,
            proxy,
            responder,
            sizes.create,
            async |app: &App, run| {
                let body = with_apply_id(&auto, &format!("bench-auto-{run}"))?;
                let answer = create(app, tokens, &body).await?;
                expect("auto create", &answer, |v| {
                    v["status"] == auto_status.as_str()
                })
            },
        )
        .await?,
    );
    results.push(
        measure(
            "create, repeated (idempotent replay)",
            apps,
            proxy,
            responder,
            sizes.create,
            async |app: &App, _| {
                let answer = create(app, tokens, &seed_body).await?;
                expect("repeated create", &answer, |v| {
                    v["processInstanceId"] == seed_id.as_str()
                })
            },
        )
        .await?,
    );
    results.push(
        measure(
            "get (Dataphin processinstance/get)",
            apps,
            proxy,
            responder,
            sizes.fast,
            async |app: &App, _| {
                let path = format!(
                    "/dataphin/bpms/processinstance/get?{}&processInstanceId={seed_id}",
                    auth_query(tokens)
                );
                let answer = call(app, Function::Query, "GET", &path, &[], &[]).await?;
                expect("get", &answer, |v| v["success"] == true)
            },
        )
        .await?,
    );
    let bearer = format!("Bearer {}", tokens.admin);
    results.push(
        measure(
            "detail (ops GET /approvals/{id})",
            apps,
            proxy,
            responder,
            sizes.fast,
            async |app: &App, _| {
                let path = format!("/approvals/{seed_id}");
                let answer = call(
                    app,
                    Function::Query,
                    "GET",
                    &path,
                    &[("authorization", &bearer)],
                    &[],
                )
                .await?;
                expect("detail", &answer, |v| v.is_object())
            },
        )
        .await?,
    );

    let mut templates = Vec::new();
    for (id, _, _) in &seeds {
        let stored = apps
            .timed
            .store
            .get_ticket(id, true)
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        templates
            .push(stored.ok_or_else(|| BenchError::Setup(format!("seed ticket {id} is missing")))?);
    }
    Ok((results, Templates(templates)))
}

/// One list shape at one table size.
pub struct ListResult {
    pub tickets: usize,
    pub op: OpResult,
    /// `total` the list answered (checked against what was inserted where it must match).
    pub total: u64,
}

/// Copies of the templates (alternating), inserted through the store as a create would store them,
/// numbered `from..to`, one minute apart going back from now.
async fn insert_tickets(
    app: &App,
    templates: &Templates,
    from: usize,
    to: usize,
) -> Result<(), BenchError> {
    const WORKERS: usize = 8;
    let now = app::http::now_ms();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let app = app.clone();
        let templates = templates.0.clone();
        workers.spawn(async move {
            for i in (from + w..to).step_by(WORKERS) {
                let template = &templates[i % templates.len()];
                let mut t = template.ticket.clone();
                t.apply_id = format!("bench-list-{i}");
                t.id = app::tickets::ticket_id(&t.tenant_id, &t.apply_id);
                t.created_at = now - i as i64 * 60_000;
                t.expire_at = t.created_at + app.config.ticket_timeout_hours * 3_600_000;
                t.finished_at = t.finished_at.map(|_| t.created_at + 30_000);
                let mut submission: Value =
                    serde_json::from_str(template.submission.as_deref().unwrap_or("{}"))
                        .unwrap_or_default();
                submission["applyId"] = json!(t.apply_id);
                let due = app::tickets::next_due(&app, &t);
                let row = app::views::list_row(&t);
                app.store
                    .create_ticket(
                        &mut t,
                        &row,
                        &submission.to_string(),
                        &template.body_hash,
                        due,
                    )
                    .await
                    .map_err(|e| BenchError::Setup(format!("insert ticket {i}: {e}")))?;
            }
            Ok::<(), BenchError>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| BenchError::Setup(format!("insert worker: {e}")))??;
    }
    Ok(())
}

/// The ops list (`GET /approvals`) in several shapes, at each table size in `sizes_tickets`.
pub async fn list_growth(
    apps: &Apps,
    proxy: &CountingProxy,
    responder: &Responder,
    templates: &Templates,
    tokens: &Tokens,
    sizes_tickets: &[usize],
    runs: usize,
) -> Result<Vec<ListResult>, BenchError> {
    let bearer = format!("Bearer {}", tokens.admin);
    let headers = [("authorization", bearer.as_str())];
    let mut results = Vec::new();
    let mut inserted = 0;
    for &size in sizes_tickets {
        insert_tickets(&apps.timed, templates, inserted, size).await?;
        inserted = size;
        let first = call(
            &apps.timed,
            Function::Query,
            "GET",
            "/approvals",
            &headers,
            &[],
        )
        .await?;
        expect("list", &first, |v| v["total"] == size as u64)?;
        let token = first.1["next_token"]
            .as_str()
            .map(encode)
            .unwrap_or_default();
        let tenant_first = call(
            &apps.timed,
            Function::Query,
            "GET",
            &format!("/approvals?workspace_id={TENANT}"),
            &headers,
            &[],
        )
        .await?;
        let tenant_token = tenant_first.1["next_token"]
            .as_str()
            .map(encode)
            .unwrap_or_default();
        let shapes = [
            ("workspace", format!("/approvals?workspace_id={TENANT}")),
            (
                "workspace + WAITING_APPROVE",
                format!("/approvals?workspace_id={TENANT}&status_list=WAITING_APPROVE"),
            ),
            (
                "proposer alice.wang (first page counts its total)",
                "/approvals?proposer_name=alice.wang".to_string(),
            ),
            (
                "workspace, page 2 by next_token",
                format!("/approvals?workspace_id={TENANT}&next_token={tenant_token}"),
            ),
            ("newest 20, every workspace", "/approvals".to_string()),
            (
                "ordered by end time",
                "/approvals?order_by=END_TIME".to_string(),
            ),
            ("page 5 by offset", "/approvals?offset=80".to_string()),
            (
                "every workspace, page 2 by next_token",
                format!("/approvals?next_token={token}"),
            ),
        ];
        for (shape, path) in shapes {
            let answer = call(&apps.timed, Function::Query, "GET", &path, &headers, &[]).await?;
            expect(shape, &answer, |v| {
                v["approvals"].as_array().is_some_and(|a| !a.is_empty())
            })?;
            let total = answer.1["total"].as_u64().unwrap_or_default();
            let op = measure(shape, apps, proxy, responder, runs, async |app: &App, _| {
                let answer = call(app, Function::Query, "GET", &path, &headers, &[]).await?;
                expect(shape, &answer, |v| v["total"] == total)
            })
            .await?;
            results.push(ListResult {
                tickets: size,
                op,
                total,
            });
        }
    }
    Ok(results)
}

/// Median of a result's samples (shorthand for the report).
pub fn p50(op: &OpResult) -> Duration {
    crate::stats::median(&op.samples)
}
