//! Issue 13: a list page costs the same DynamoDB reads whatever the table holds. The tickets are
//! written straight through the store (fast); the pages are read through the API by a bridge whose
//! DynamoDB client goes through a counting proxy, and the bytes DynamoDB sent back for a page at
//! 10,000 tickets are compared with the same page at 1,000. Not timed: bytes and calls only.

use std::collections::BTreeMap;
use std::sync::Arc;

use integration_tests::fault_proxy::FaultProxy;
use integration_tests::harness::*;
use models::ticket::Ticket;
use serde_json::{json, Value};

const OTHER_TENANT: &str = "300080001";
const BASE: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;
const STATUSES: [&str; 4] = ["PENDING", "APPROVED", "REJECTED", "WITHDRAWN"];

/// Ticket `i`: nine in ten in `TENANT`, four statuses in turn, two proposers, one minute apart.
fn ticket(i: usize) -> Ticket {
    let tenant = if i % 10 == 9 { OTHER_TENANT } else { TENANT };
    let status = STATUSES[i % 4];
    let (user_id, user_name) = if i.is_multiple_of(3) {
        ("300000913", "alice.wang")
    } else {
        ("300000914", "bob.li")
    };
    let start = BASE + i as i64 * MINUTE;
    let apply_id = format!("grow-{i:06}");
    serde_json::from_value(json!({
        "id": app::tickets::ticket_id(tenant, &apply_id),
        "tenant_id": tenant,
        "apply_id": apply_id,
        "title": format!("Table permission {i}"),
        "submission_type": "AUTH",
        "reason_for_request": "monthly report",
        "applicant": {"user_id": user_id, "user_name": user_name},
        "status": status,
        "reason": (status != "PENDING").then_some("decided in the test"),
        "created_at": start,
        "finished_at": (status != "PENDING").then_some(start + 30 * MINUTE),
        "expire_at": start + 168 * 3_600_000,
        "version": 1,
        "revision": 0,
        "nodes": [],
        "last_event_at": start,
    }))
    .unwrap()
}

/// Writes tickets `from..to` through the store, 16 at a time.
async fn seed(writer: &app::App, from: usize, to: usize) {
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in from..to {
        let app = writer.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            let mut t = ticket(i);
            let row = app::views::list_row(&t);
            let created = app
                .store
                .create_ticket(&mut t, &row, "{}", "h", None)
                .await
                .unwrap();
            assert_eq!(created, store::CreateOutcome::Created);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// What one list request cost: calls and bytes DynamoDB sent back, and its reply.
struct Cost {
    calls: u64,
    bytes: u64,
    reply: Value,
}

async fn cost(measured: &Bridge, proxy: &FaultProxy, query: &str) -> Cost {
    let before = proxy.injected();
    let (status, reply) = measured
        .ops(Function::Query, "GET", &format!("/approvals?{query}"), b"")
        .await;
    assert_eq!(status, 200, "{query}: {reply}");
    let after = proxy.injected();
    Cost {
        calls: after.forwarded - before.forwarded,
        bytes: after.response_bytes - before.response_bytes,
        reply,
    }
}

/// The pages measured: first pages (the counters answer their totals) and next pages.
async fn pages(measured: &Bridge, proxy: &FaultProxy) -> BTreeMap<&'static str, Cost> {
    let mut out = BTreeMap::new();
    let shapes = [
        ("workspace", format!("workspace_id={TENANT}")),
        (
            "workspace + WAITING_APPROVE",
            format!("workspace_id={TENANT}&status_list=WAITING_APPROVE"),
        ),
        (
            "workspace + APPROVED by end time",
            format!("workspace_id={TENANT}&status_list=APPROVED&order_by=END_TIME"),
        ),
        (
            "workspace + two statuses",
            format!("workspace_id={TENANT}&status_list=REJECT,REVOKE"),
        ),
        ("every workspace", String::new()),
        ("proposer", "proposer_name=alice.wang".to_string()),
        (
            "proposer in a workspace",
            format!("proposer_name=alice.wang&workspace_id={TENANT}"),
        ),
        (
            "workspace, offset 100",
            format!("workspace_id={TENANT}&offset=100"),
        ),
    ];
    for (name, query) in shapes {
        out.insert(name, cost(measured, proxy, &query).await);
    }
    for (name, query) in [
        ("workspace, next page", format!("workspace_id={TENANT}")),
        (
            "proposer, next page",
            "proposer_name=alice.wang".to_string(),
        ),
    ] {
        let first = cost(measured, proxy, &query).await;
        let token = first.reply["next_token"].as_str().expect("a second page");
        let next = cost(measured, proxy, &format!("{query}&next_token={token}")).await;
        assert_eq!(next.reply["total"], first.reply["total"], "{name}");
        out.insert(name, next);
    }
    out
}

/// How many of the first `n` tickets match.
fn expected(n: usize, keep: impl Fn(&Ticket) -> bool) -> usize {
    (0..n).map(ticket).filter(|t| keep(t)).count()
}

#[tokio::test]
async fn a_list_page_reads_the_same_at_10000_tickets_as_at_1000() {
    let started = std::time::Instant::now();
    let mut measured = Bridge::start(Options::default()).await;
    let proxy = FaultProxy::start(&dynamo_endpoint()).await;
    // The tickets are written directly; the measured bridge reads the same tables through the proxy.
    let writer = measured.app.clone();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::new()
            .behavior_version_latest()
            .endpoint_url(proxy.endpoint())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local", "local", None, None, "tests",
            ))
            .build(),
    );
    measured.app = app::App::build(app::Config::from_source(&measured.env).unwrap(), client)
        .expect("app builds");

    seed(&writer, 0, 1_000).await;
    let small = pages(&measured, &proxy).await;
    seed(&writer, 1_000, 10_000).await;
    eprintln!("seeded 10,000 tickets in {:?}", started.elapsed());
    let large = pages(&measured, &proxy).await;

    // The totals are exact at both sizes (counters moved with every write).
    for (n, costs) in [(1_000, &small), (10_000, &large)] {
        let in_tenant = |t: &Ticket| t.tenant_id == TENANT;
        assert_eq!(costs["workspace"].reply["total"], expected(n, in_tenant));
        assert_eq!(
            costs["workspace + WAITING_APPROVE"].reply["total"],
            expected(n, |t| in_tenant(t) && t.status.as_str() == "PENDING")
        );
        assert_eq!(
            costs["workspace + APPROVED by end time"].reply["total"],
            expected(n, |t| in_tenant(t) && t.status.as_str() == "APPROVED")
        );
        assert_eq!(
            costs["workspace + two statuses"].reply["total"],
            expected(n, |t| in_tenant(t)
                && ["REJECTED", "WITHDRAWN"].contains(&t.status.as_str()))
        );
        assert_eq!(costs["every workspace"].reply["total"], n);
        let alice = |t: &Ticket| t.applicant.user_name == "alice.wang";
        assert_eq!(costs["proposer"].reply["total"], expected(n, alice));
        assert_eq!(
            costs["proposer in a workspace"].reply["total"],
            expected(n, |t| alice(t) && in_tenant(t))
        );
        assert_eq!(
            costs["proposer, next page"].reply["total"],
            expected(n, alice)
        );
        for (name, c) in costs.iter() {
            assert_eq!(
                c.reply["approvals"].as_array().unwrap().len(),
                20,
                "{name} at {n}"
            );
        }
    }
    // The newest first: the last ticket of the tenant written leads the page.
    assert_eq!(
        large["workspace"].reply["approvals"][0]["id"],
        app::tickets::ticket_id(TENANT, "grow-009998")
    );

    for (name, s) in &small {
        let l = &large[name];
        let ratio = l.bytes as f64 / s.bytes as f64;
        eprintln!(
            "{name}: {} calls, {} bytes at 1,000; {} calls, {} bytes at 10,000 ({ratio:.2}x)",
            s.calls, s.bytes, l.calls, l.bytes
        );
        assert_eq!(l.calls, s.calls, "{name}: calls");
        assert!(
            ratio <= 1.2,
            "{name}: {} bytes at 10,000 tickets against {} at 1,000 ({ratio:.2}x)",
            l.bytes,
            s.bytes
        );
    }
    // The pages issue 13 names take at most 2 DynamoDB calls. (A proposer in a workspace filters
    // the proposer's partition by tenant: another Query when the first read came short.)
    for name in [
        "workspace",
        "workspace + WAITING_APPROVE",
        "proposer",
        "workspace, next page",
        "proposer, next page",
    ] {
        assert!(
            large[name].calls <= 2,
            "{name}: {} calls",
            large[name].calls
        );
    }
    eprintln!("list growth test took {:?}", started.elapsed());
}
