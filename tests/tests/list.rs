//! End-to-end: the ops list (`GET /approvals`, seed 001), the ops detail (`GET /approvals/{id}`, seed
//! 002) and Dataphin's get, checked against an in-memory model of what was written.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, Region};
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::query::QueryInput;
use aws_sdk_dynamodb::operation::scan::ScanInput;
use integration_tests::harness::*;
use models::ticket::{Delivery, Dispatch, IntegrationMethod, Node, NodeOrigin, Person, Ticket};
use models::{DispatchStatus, Relation, TicketStatus};
use serde_json::{json, Value};

/// Records every DynamoDB call the bridge makes, so a test can prove the list never scans.
#[derive(Debug, Clone, Default)]
struct DynamoCalls(Arc<Mutex<Vec<String>>>);

impl DynamoCalls {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for DynamoCalls {
    fn name(&self) -> &'static str {
        "dynamodb-call-recorder"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let input = context.input();
        let call = if input.downcast_ref::<ScanInput>().is_some() {
            "Scan".to_string()
        } else if let Some(q) = input.downcast_ref::<QueryInput>() {
            let partition = q
                .expression_attribute_values()
                .and_then(|v| v.get(":pk"))
                .and_then(|v| v.as_s().ok());
            format!(
                "Query {} {}",
                q.index_name().unwrap_or("<table>"),
                partition.map_or("-", String::as_str)
            )
        } else if let Some(g) = input.downcast_ref::<GetItemInput>() {
            let key = |k: &str| {
                g.key()
                    .and_then(|key| key.get(k))
                    .and_then(|v| v.as_s().ok())
                    .map_or("-", String::as_str)
                    .to_string()
            };
            format!("GetItem {}/{}", key("pk"), key("sk"))
        } else {
            "Other".to_string()
        };
        self.0.lock().unwrap().push(call);
        Ok(())
    }
}

/// A bridge whose DynamoDB client records its calls.
async fn recording_bridge() -> (Bridge, DynamoCalls) {
    let mut b = Bridge::start(Options::default()).await;
    let calls = DynamoCalls::default();
    let config = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version_latest()
        .endpoint_url(dynamo_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
        .interceptor(calls.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    b.app = app::App::build(app::Config::from_source(&b.env).unwrap(), client).unwrap();
    (b, calls)
}

const TENANTS: [&str; 3] = [TENANT, "300080001", "300080002"];
const APPLICANTS: [(&str, &str); 5] = [
    ("300000913", "alice.wang"),
    ("300000914", "bob.li"),
    ("300000920", "carol.zhao"),
    ("310000001", "frank.wu"),
    ("310000002", "grace.he"),
];
const STORE_TICKETS: usize = 540;
const BASE: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

/// What the list must show of one ticket.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    tenant: String,
    list_status: &'static str,
    proposer: String,
    start: i64,
    end: Option<i64>,
    row: Value,
}

impl Row {
    fn of(t: &Ticket) -> Row {
        Row {
            id: t.id.clone(),
            tenant: t.tenant_id.clone(),
            list_status: t.status.list_status(),
            proposer: t.applicant.user_name.clone(),
            start: t.created_at,
            end: t.finished_at,
            row: app::views::list_row(t),
        }
    }
}

fn person(user: (&str, &str), backend: &str) -> Person {
    Person {
        user_id: user.0.into(),
        user_name: user.1.into(),
        backend_user_id: backend.into(),
    }
}

/// A ticket as the submit use case would have stored it, forwarded to DingTalk (or not, when
/// `dispatch_failed`).
fn store_ticket(
    tenant: &str,
    apply_id: &str,
    applicant: (&str, &str),
    created_at: i64,
    dispatch_failed: bool,
) -> Ticket {
    let approver = person(("300000925", "dave.sun"), "dt-dave");
    let mut t = Ticket {
        id: app::tickets::ticket_id(tenant, apply_id),
        tenant_id: tenant.into(),
        apply_id: apply_id.into(),
        title: format!("Table permission {apply_id}"),
        submission_type: "AUTH".into(),
        reason_for_request: format!("report {apply_id}"),
        applicant: person(applicant, &format!("dt-{}", applicant.0)),
        status: TicketStatus::Pending,
        reason: None,
        created_at,
        finished_at: None,
        expire_at: created_at + 168 * 3_600_000,
        version: 1,
        revision: 0,
        history_archived: 0,
        stored_status: None,
        nodes: vec![Node::new(
            1,
            "Approval 1".into(),
            Relation::Or,
            NodeOrigin::Submission,
            vec![approver],
        )],
        decision: None,
        process_code: Some(PROCESS_CODE.into()),
        backend: Some("dingtalk".into()),
        instance_id: (!dispatch_failed).then(|| format!("inst-{apply_id}")),
        dispatch: Some(if dispatch_failed {
            Dispatch {
                status: DispatchStatus::Failed,
                error: Some("DingTalk: connection refused".into()),
                attempts: 1,
                at: created_at,
            }
        } else {
            Dispatch {
                status: DispatchStatus::Forwarded,
                error: None,
                attempts: 1,
                at: created_at,
            }
        }),
        dispatch_lease_until: None,
        delivery: Delivery::default(),
        backend_cancel: None,
        last_event_at: created_at,
        last_reconciled_at: None,
        quiet_reads: 0,
        withdraw_request: None,
        seen_events: Vec::new(),
        history: Vec::new(),
    };
    t.record(
        created_at,
        "submitted",
        format!("submitted by {}", applicant.1),
        Value::Null,
    );
    t
}

/// Writes `STORE_TICKETS` tickets straight through the store: 3 tenants, 5 applicants, every
/// canonical status, start and end times with many ties.
async fn seed_store(b: &Bridge) -> Vec<Row> {
    let statuses = [
        TicketStatus::Pending,
        TicketStatus::Approved,
        TicketStatus::Rejected,
        TicketStatus::Withdrawn,
        TicketStatus::Expired,
    ];
    let mut tasks = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(24));
    for i in 0..STORE_TICKETS {
        let app = b.app.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            let tenant = TENANTS[i % 3];
            let applicant = APPLICANTS[(i / 3) % 5];
            let status = statuses[(i / 15) % 5];
            let start = BASE + ((i * 7919) % 311) as i64 * MINUTE;
            let mut t = store_ticket(
                tenant,
                &format!("list-{i:04}"),
                applicant,
                start,
                i % 11 == 0,
            );
            let row = app::views::list_row(&t);
            let created = app
                .store
                .create_ticket(&mut t, &row, "{}", "h", None)
                .await
                .unwrap();
            assert_eq!(created, store::CreateOutcome::Created);
            if status != TicketStatus::Pending {
                let end = start + (((i * 31) % 53) as i64 + 1) * MINUTE;
                assert!(t.finish(
                    status,
                    Some(format!("{} by test", status.as_str())),
                    end,
                    IntegrationMethod::FinalResult
                ));
                app::tickets::save(&app, &mut t).await.unwrap();
            }
            Row::of(&t)
        });
    }
    let mut rows = Vec::new();
    while let Some(r) = tasks.join_next().await {
        rows.push(r.unwrap());
    }
    rows
}

/// A handful through the real create API: approved, refused and withdrawn in DingTalk / ops.
async fn seed_api(b: &Bridge) -> Vec<Row> {
    let files = [
        "01_physical_table_low.json",
        "03_datasource_table.json",
        "04_code_review.json",
        "06_data_service.json",
        "07_datasource.json",
        "09_global_param.json",
    ];
    let mut ids = Vec::new();
    for (k, f) in files.iter().enumerate() {
        let body = with_apply_id(&fixture(f), &format!("list-api-{k}"));
        let (status, reply) = b.create(&body).await;
        assert_eq!(status, 200, "{f}: {reply}");
        assert_eq!(reply["status"], "PENDING", "{f}: {reply}");
        ids.push(reply["processInstanceId"].as_str().unwrap().to_string());
    }
    let approved = b.ticket(&ids[0]).await.instance_id.expect("forwarded");
    b.dingtalk
        .act(&approved, "dt-bob", true, "fine for reporting")
        .unwrap();
    let refused = b.ticket(&ids[2]).await.instance_id.expect("forwarded");
    b.dingtalk
        .act(&refused, "dt-carol", false, "not this sprint")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let (status, reply) = b
        .ops(
            Function::Withdraw,
            "POST",
            &format!("/approvals/{}/withdraw", ids[1]),
            br#"{"reason":"duplicate","operator":"ops.jane"}"#,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let mut rows = Vec::new();
    for id in &ids {
        rows.push(Row::of(&b.ticket(id).await));
    }
    let by_status: Vec<&str> = rows.iter().map(|r| r.list_status).collect();
    assert_eq!(
        by_status,
        [
            "APPROVED",
            "REVOKE",
            "REJECT",
            "WAITING_APPROVE",
            "WAITING_APPROVE",
            "WAITING_APPROVE"
        ]
    );
    rows
}

/// One list request's filters, as the model applies them and as the query string spells them.
#[derive(Debug, Clone, Default)]
struct Filter {
    tenant: Option<&'static str>,
    /// Spelled as sent (`status_list`), duplicates and all.
    statuses: Vec<&'static str>,
    proposer: Option<&'static str>,
    from: Option<i64>,
    to: Option<i64>,
    by_end: bool,
    ascending: bool,
    /// Spell the defaults out (`order_by=START_TIME`, `order_by_desc=true`) instead of omitting them.
    explicit: bool,
}

impl Filter {
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(t) = self.tenant {
            q.push(format!("workspace_id={t}"));
        }
        if !self.statuses.is_empty() {
            q.push(format!("status_list={}", self.statuses.join(",")));
        }
        if let Some(p) = self.proposer {
            q.push(format!("proposer_name={p}"));
        }
        if let Some(f) = self.from {
            q.push(format!("application_start_time={f}"));
        }
        if let Some(t) = self.to {
            q.push(format!("application_end_time={t}"));
        }
        if self.by_end {
            q.push("order_by=END_TIME".into());
        } else if self.explicit {
            q.push("order_by=START_TIME".into());
        }
        if self.ascending {
            q.push("order_by_desc=false".into());
        } else if self.explicit {
            q.push("order_by_desc=true".into());
        }
        q.join("&")
    }

    /// The ids the list must return, in order. Ties are broken by id; `END_TIME` lists finished
    /// tickets only (README: PENDING tickets have no end time).
    fn expect(&self, rows: &[Row]) -> Vec<String> {
        let mut hits: Vec<(i64, &str)> = rows
            .iter()
            .filter(|r| self.tenant.is_none_or(|t| r.tenant == t))
            .filter(|r| self.statuses.is_empty() || self.statuses.contains(&r.list_status))
            .filter(|r| self.proposer.is_none_or(|p| r.proposer == p))
            .filter(|r| {
                self.from.is_none_or(|f| r.start >= f) && self.to.is_none_or(|t| r.start <= t)
            })
            .filter_map(|r| {
                if self.by_end {
                    r.end.map(|e| (e, r.id.as_str()))
                } else {
                    Some((r.start, r.id.as_str()))
                }
            })
            .collect();
        hits.sort();
        if !self.ascending {
            hits.reverse();
        }
        hits.into_iter().map(|(_, id)| id.to_string()).collect()
    }
}

async fn get_list(b: &Bridge, query: &str) -> Value {
    let (status, reply) = b
        .ops(Function::Query, "GET", &format!("/approvals?{query}"), b"")
        .await;
    assert_eq!(status, 200, "{query}: {reply}");
    reply
}

fn ids_of(page: &Value) -> Vec<String> {
    page["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Walks every page by `next_token`; checks page sizes and `total` on each page.
async fn walk_cursor(b: &Bridge, query: &str, limit: usize, expected_total: usize) -> Vec<Value> {
    let mut rows: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..=expected_total / limit + 1 {
        let q = match &token {
            Some(t) => format!("{query}&limit={limit}&next_token={t}"),
            None => format!("{query}&limit={limit}"),
        };
        let page = get_list(b, &q).await;
        assert_eq!(page["total"], expected_total, "{q}");
        let got = page["approvals"].as_array().unwrap();
        assert!(got.len() <= limit, "{q}: {} rows", got.len());
        rows.extend(got.iter().cloned());
        match page["next_token"].as_str() {
            Some(t) => {
                assert_eq!(got.len(), limit, "{q}: a page before the last is full");
                token = Some(t.to_string());
            }
            None => {
                assert!(page["next_token"].is_null(), "{q}");
                return rows;
            }
        }
    }
    panic!(
        "{query}: cursor paging did not end after {} pages",
        expected_total / limit + 2
    );
}

/// Walks every page by `offset`.
async fn walk_offset(b: &Bridge, query: &str, limit: usize, expected_total: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut offset = 0;
    loop {
        let page = get_list(b, &format!("{query}&limit={limit}&offset={offset}")).await;
        assert_eq!(page["total"], expected_total, "{query} offset {offset}");
        let got = ids_of(&page);
        if got.is_empty() {
            return ids;
        }
        assert!(got.len() <= limit);
        offset += got.len();
        ids.extend(got);
        assert!(
            offset <= expected_total + limit,
            "{query}: offset paging runs past the total"
        );
    }
}

fn row_ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn list_filters_orders_and_pages_match_what_was_written() {
    let started = std::time::Instant::now();
    let (b, calls) = recording_bridge().await;
    let mut model = seed_store(&b).await;
    model.extend(seed_api(&b).await);
    assert!(model.len() > 500);
    for status in ["WAITING_APPROVE", "APPROVED", "REJECT", "REVOKE"] {
        for tenant in TENANTS {
            assert!(
                model
                    .iter()
                    .any(|r| r.list_status == status && r.tenant == tenant),
                "{status} in {tenant}"
            );
        }
    }
    assert!(model
        .iter()
        .any(|r| r.row["approval_dispatch_status"] == "1"));
    eprintln!("seeded {} tickets in {:?}", model.len(), started.elapsed());
    calls.take();

    // Everything, newest first by default, every row exactly the stored list row.
    let all = Filter::default();
    let expected = all.expect(&model);
    assert_eq!(expected.len(), model.len());
    let rows = walk_cursor(&b, &all.query(), 100, expected.len()).await;
    assert_eq!(
        row_ids(&rows),
        expected,
        "all tickets, START_TIME desc, by cursor"
    );
    for row in &rows {
        let want = &model.iter().find(|m| m.row["id"] == row["id"]).unwrap().row;
        assert_eq!(row, want);
        for field in [
            "id",
            "approval_type",
            "approve_reason",
            "proposer_id",
            "proposer_name",
            "start_time",
            "end_time",
            "expire_time",
            "status",
            "current_node_name",
            "approval_dispatch_status",
            "approval_dispatch_error_msg",
            "workspace_id",
        ] {
            assert!(
                row.get(field).is_some(),
                "seed 001 field {field} missing in {row}"
            );
        }
    }
    let failed = rows
        .iter()
        .find(|r| r["approval_dispatch_status"] == "1")
        .unwrap();
    assert_eq!(
        failed["approval_dispatch_error_msg"],
        "DingTalk: connection refused"
    );
    let pending = rows
        .iter()
        .find(|r| r["status"] == "WAITING_APPROVE" && r["approval_dispatch_status"] == "0")
        .unwrap();
    assert_eq!(pending["current_node_name"], "Approval 1");
    assert!(pending["end_time"].is_null());
    assert!(
        rows.iter()
            .any(|r| r["status"] == "REJECT" && r["reason"] == "EXPIRED by test"),
        "EXPIRED lists as REJECT"
    );

    // Every filter, alone and combined, in both orders and directions.
    let (mid_from, mid_to) = (BASE + 100 * MINUTE, BASE + 180 * MINUTE);
    let filters = vec![
        Filter {
            tenant: Some(TENANTS[0]),
            ..Filter::default()
        },
        Filter {
            tenant: Some(TENANTS[1]),
            statuses: vec!["APPROVED", "REJECT"],
            explicit: true,
            ..Filter::default()
        },
        Filter {
            statuses: vec!["WAITING_APPROVE"],
            ascending: true,
            ..Filter::default()
        },
        Filter {
            statuses: vec!["REVOKE"],
            ..Filter::default()
        },
        Filter {
            statuses: vec!["REJECT", "REJECT", "APPROVED"],
            ascending: true,
            ..Filter::default()
        },
        Filter {
            statuses: vec!["WAITING_APPROVE", "APPROVED", "REJECT", "REVOKE"],
            ..Filter::default()
        },
        Filter {
            proposer: Some("alice.wang"),
            ..Filter::default()
        },
        Filter {
            proposer: Some("grace.he"),
            tenant: Some(TENANTS[2]),
            statuses: vec!["REJECT", "WAITING_APPROVE"],
            ascending: true,
            ..Filter::default()
        },
        Filter {
            proposer: Some("bob.li"),
            by_end: true,
            ..Filter::default()
        },
        Filter {
            proposer: Some("carol.zhao"),
            from: Some(mid_from),
            to: Some(mid_to),
            ascending: true,
            ..Filter::default()
        },
        Filter {
            proposer: Some("frank.wu"),
            statuses: vec!["APPROVED"],
            by_end: true,
            ascending: true,
            from: Some(mid_from),
            ..Filter::default()
        },
        Filter {
            from: Some(mid_from),
            to: Some(mid_to),
            ..Filter::default()
        },
        Filter {
            from: Some(mid_from),
            ascending: true,
            ..Filter::default()
        },
        Filter {
            to: Some(mid_from),
            tenant: Some(TENANTS[2]),
            ..Filter::default()
        },
        Filter {
            by_end: true,
            ..Filter::default()
        },
        Filter {
            by_end: true,
            ascending: true,
            tenant: Some(TENANTS[0]),
            from: Some(mid_from),
            to: Some(mid_to),
            ..Filter::default()
        },
        Filter {
            by_end: true,
            statuses: vec!["REVOKE", "APPROVED"],
            tenant: Some(TENANTS[1]),
            ..Filter::default()
        },
        Filter {
            by_end: true,
            statuses: vec!["WAITING_APPROVE"],
            ..Filter::default()
        },
        Filter {
            tenant: Some("300099999"),
            ..Filter::default()
        },
        Filter {
            proposer: Some("nobody.here"),
            ..Filter::default()
        },
        // An empty application-time range has nothing in it.
        Filter {
            from: Some(mid_to),
            to: Some(mid_from),
            ..Filter::default()
        },
        Filter {
            from: Some(mid_to),
            to: Some(mid_from),
            proposer: Some("alice.wang"),
            ..Filter::default()
        },
    ];
    for f in &filters {
        let expected = f.expect(&model);
        let query = f.query();
        let limit = if expected.len() > 150 { 61 } else { 23 };
        let got = row_ids(&walk_cursor(&b, &query, limit, expected.len()).await);
        assert_eq!(got, expected, "cursor paging of {query}");
    }
    let empty_range = get_list(
        &b,
        &format!("application_start_time={mid_to}&application_end_time={mid_from}"),
    )
    .await;
    assert_eq!(empty_range["total"], 0);

    // Offset paging walks the same rows as the cursor, limit 1 included.
    for f in [&filters[1], &filters[8], &filters[15]] {
        let expected = f.expect(&model);
        assert_eq!(
            walk_offset(&b, &f.query(), 13, expected.len()).await,
            expected,
            "offset paging of {}",
            f.query()
        );
    }
    let single = Filter {
        tenant: Some(TENANTS[2]),
        proposer: Some("alice.wang"),
        statuses: vec!["REVOKE"],
        ..Filter::default()
    };
    let expected = single.expect(&model);
    assert!(expected.len() > 1);
    assert_eq!(
        walk_offset(&b, &single.query(), 1, expected.len()).await,
        expected
    );
    assert_eq!(
        row_ids(&walk_cursor(&b, &single.query(), 1, expected.len()).await),
        expected
    );
    let past = get_list(
        &b,
        &format!("{}&offset={}", single.query(), expected.len() + 5),
    )
    .await;
    assert_eq!(past["approvals"], json!([]));
    assert_eq!(past["total"], expected.len());

    // Default page size 20, with a cursor to the rest.
    let first = get_list(&b, "").await;
    assert_eq!(ids_of(&first), all.expect(&model)[..20].to_vec());
    assert!(first["next_token"].is_string());

    // approval_id: one ticket, the other filters applied to it.
    let probe = model
        .iter()
        .find(|r| r.tenant == TENANTS[1] && r.list_status == "APPROVED")
        .unwrap();
    let page = get_list(&b, &format!("approval_id={}", probe.id)).await;
    assert_eq!(page["approvals"], json!([probe.row]));
    assert_eq!(page["total"], 1);
    let page = get_list(
        &b,
        &format!(
            "approval_id={}&workspace_id={}&status_list=APPROVED,REJECT",
            probe.id, TENANTS[1]
        ),
    )
    .await;
    assert_eq!(ids_of(&page), std::slice::from_ref(&probe.id));
    for other in [
        format!("workspace_id={}", TENANTS[0]),
        "status_list=WAITING_APPROVE".into(),
        "proposer_name=nobody.here".into(),
    ] {
        let page = get_list(&b, &format!("approval_id={}&{other}", probe.id)).await;
        assert_eq!(page["total"], 0, "{other}");
        assert_eq!(page["approvals"], json!([]));
    }
    let page = get_list(&b, "approval_id=tk-000000000000000000000000").await;
    assert_eq!(
        (page["total"].clone(), page["approvals"].clone()),
        (json!(0), json!([]))
    );

    // Bounds and bad values: 400 InvalidField naming the parameter.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-3", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("status_list=APPROVED,DONE", "status_list"),
        ("order_by=NAME", "order_by"),
        ("order_by_desc=sideways", "order_by_desc"),
        ("application_start_time=yesterday", "application_start_time"),
        ("next_token=not-a-token", "next_token"),
    ] {
        let (status, reply) = b
            .ops(Function::Query, "GET", &format!("/approvals?{query}"), b"")
            .await;
        assert_eq!(status, 400, "{query}: {reply}");
        assert_eq!(reply["error_code"], "InvalidField", "{query}: {reply}");
        assert!(
            reply["error_msg"].as_str().unwrap().contains(field),
            "{query}: {reply}"
        );
    }
    assert_eq!(ids_of(&get_list(&b, "limit=100").await).len(), 100);
    assert_eq!(
        ids_of(&get_list(&b, "limit=1").await),
        all.expect(&model)[..1].to_vec()
    );
    let (status, reply) = b
        .request(Function::Query, "GET", "/approvals", &[], b"")
        .await;
    assert_eq!(status, 401, "{reply}");

    // Never a Scan: every list read is an index query, a read of the status counters (one item
    // per tenant) or, for `approval_id`, a single GetItem of the ticket.
    let made = calls.take();
    assert!(!made.is_empty());
    let list_indexes = [
        "tenant-start-index",
        "tenant-end-index",
        "tenant-status-start-index",
        "tenant-status-end-index",
        "status-start-index",
        "status-end-index",
        "proposer-start-index",
        "proposer-end-index",
    ];
    for call in &made {
        let ok = call.starts_with("GetItem TICKET#")
            || call.starts_with("GetItem COUNTS/")
            || call == "Query <table> COUNTS"
            || call
                .strip_prefix("Query ")
                .and_then(|q| q.split(' ').next())
                .is_some_and(|ix| list_indexes.contains(&ix));
        assert!(ok, "list made a {call}");
    }
    // What each page costs: one Query of the one partition its filters name, and for `total`
    // on a first page one read of the counters or, where they cannot answer (an
    // application-time range), a count of the same partition. Later pages carry the total in
    // their token and make one Query.
    let sorted = |mut made: Vec<String>| {
        made.sort();
        made
    };
    let tenant = TENANTS[1];
    let first = get_list(&b, &format!("workspace_id={tenant}&limit=20")).await;
    assert_eq!(
        sorted(calls.take()),
        [
            format!("GetItem COUNTS/T#{tenant}"),
            format!("Query tenant-start-index {tenant}"),
        ],
        "workspace, first page"
    );
    let token = first["next_token"].as_str().expect("more than one page");
    let second = get_list(
        &b,
        &format!("workspace_id={tenant}&limit=20&next_token={token}"),
    )
    .await;
    assert_eq!(second["total"], first["total"]);
    assert_eq!(
        calls.take(),
        [format!("Query tenant-start-index {tenant}")],
        "workspace, next page"
    );
    get_list(
        &b,
        &format!("workspace_id={tenant}&status_list=APPROVED&limit=100"),
    )
    .await;
    assert_eq!(
        sorted(calls.take()),
        [
            format!("GetItem COUNTS/T#{tenant}"),
            format!("Query tenant-status-start-index {tenant}#APPROVED"),
        ],
        "workspace and one status"
    );
    get_list(&b, "proposer_name=alice.wang&limit=20").await;
    assert_eq!(
        sorted(calls.take()),
        [
            "Query <table> COUNTS",
            "Query proposer-start-index alice.wang"
        ],
        "proposer: the page and the proposer's counters in every tenant"
    );
    get_list(
        &b,
        &format!("proposer_name=alice.wang&workspace_id={tenant}&limit=100&order_by=END_TIME"),
    )
    .await;
    assert_eq!(
        sorted(calls.take()),
        [
            format!("GetItem COUNTS/P#alice.wang#{tenant}"),
            "Query proposer-end-index alice.wang".to_string(),
        ]
    );
    // An application-time range is what the counters cannot answer: the first page counts.
    get_list(
        &b,
        &format!("workspace_id={tenant}&application_start_time={BASE}&limit=5"),
    )
    .await;
    assert_eq!(
        calls.take(),
        [
            format!("Query tenant-start-index {tenant}"),
            format!("Query tenant-start-index {tenant}"),
        ],
        "time range: the page and its count"
    );
    get_list(
        &b,
        "status_list=REVOKE,WAITING_APPROVE&order_by=END_TIME&limit=5",
    )
    .await;
    assert_eq!(
        sorted(calls.take()),
        [
            "Query <table> COUNTS",
            "Query status-end-index REVOKE",
            "Query status-end-index WAITING_APPROVE",
        ]
    );
    eprintln!("list test took {:?}", started.elapsed());
}

/// Seed 002's node fields on one node.
fn assert_node(node: &Value, name: &str, code: &str, audit: &[&str]) {
    for field in [
        "node_name",
        "operator_id",
        "operate_time",
        "operate_comment",
        "audit_user_id_list",
        "workflow_ins_code",
    ] {
        assert!(
            node.get(field).is_some(),
            "seed 002 field {field} missing in {node}"
        );
    }
    assert_eq!(node["node_name"], name, "{node}");
    assert_eq!(node["workflow_ins_code"], code, "{node}");
    assert_eq!(node["audit_user_id_list"], json!(audit), "{node}");
}

#[tokio::test]
async fn detail_shows_nodes_handlers_content_decision_delivery_and_history() {
    let b = Bridge::start(Options::default()).await;
    let body = with_apply_id(&fixture("05_release.json"), "detail-1");
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let instance = b.ticket(&id).await.instance_id.unwrap();
    b.push_pending_dingtalk_events().await;
    b.dingtalk
        .act(&instance, "dt-carol", true, "release notes reviewed")
        .unwrap();
    b.push_pending_dingtalk_events().await;

    let (status, d) = b
        .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["status"], "WAITING_APPROVE");
    assert_eq!(d["workflow_ins_code"], "AUDITING");
    assert_eq!(d["workspace_id"], TENANT);
    assert_eq!(d["proposer_name"], "alice.wang");
    assert_eq!(d["current_node_name"], "Approval 2");
    assert_eq!(d["approval_dispatch_status"], "0");
    let nodes = d["workflow_nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{d}");
    assert_node(&nodes[0], "Approval 1", "APPROVED", &["300000920"]);
    assert_eq!(nodes[0]["operator_id"], "300000920");
    assert_eq!(nodes[0]["operate_comment"], "release notes reviewed");
    assert!(nodes[0]["operate_time"].as_i64().unwrap() >= d["start_time"].as_i64().unwrap());
    assert_node(&nodes[1], "Approval 2", "AUDITING", &["300000925"]);
    assert!(nodes[1]["operator_id"].is_null() && nodes[1]["operate_time"].is_null());
    assert_eq!(
        d["current_handlers"],
        json!([{"id": "300000925", "nick_name": "dave.sun", "backend_user_id": "dt-dave"}])
    );
    // The content parsed, not a JSON string; the form approvers see.
    assert!(d["content"].is_object(), "content parsed: {}", d["content"]);
    assert_eq!(d["content"]["applyReason"], "Ship Q4 sales metrics");
    assert_eq!(
        d["content"]["publishRecords"][0]["objectName"],
        "etl_daily_sales"
    );
    assert_eq!(
        d["content"]["approveUserNames"],
        json!(["carol.zhao"]),
        "nested JSON strings are parsed too"
    );
    assert!(!d["form"].as_array().unwrap().is_empty());
    assert_eq!(
        d["rule_decision"]["decision"], "FORWARD",
        "{}",
        d["rule_decision"]
    );
    assert!(d["rule_decision"]["rule_id"].is_null());
    assert!(d["rule_decision"].get("rules_version").is_some());
    assert_eq!(
        d["delivery"]["state"], "NONE",
        "FINAL_RESULT reports nothing before the end: {}",
        d["delivery"]
    );

    // Withdrawn by ops while Dataphin fails once: the delivery is retried by the dispatcher.
    b.dataphin.fail_next(1);
    let (status, reply) = b
        .ops(
            Function::Withdraw,
            "POST",
            &format!("/approvals/{id}/withdraw"),
            br#"{"reason":"release cancelled","operator":"ops.jane"}"#,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(b.dataphin.latest(&id).is_none());
    let (_, d) = b
        .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    assert_eq!(d["delivery"]["state"], "DUE", "{}", d["delivery"]);
    assert_eq!(d["delivery"]["attempts"], 1);
    assert!(d["delivery"]["last_error"].is_string());
    b.run_dispatcher(now_ms() + 60_000).await;
    let delivered = b.dataphin.latest(&id).expect("delivered by the dispatcher");
    assert_eq!(delivered["status"], "WITHDRAWN");

    let (status, d) = b
        .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"], "REVOKE");
    assert_eq!(d["workflow_ins_code"], "CANCEL");
    assert_eq!(d["reason"], "release cancelled");
    assert!(d["end_time"].is_i64());
    assert_eq!(d["current_handlers"], json!([]));
    assert!(d["current_node_name"].is_null());
    let nodes = d["workflow_nodes"].as_array().unwrap();
    assert_node(&nodes[0], "Approval 1", "APPROVED", &["300000920"]);
    assert_node(&nodes[1], "Approval 2", "CANCEL", &["300000925"]);
    assert_eq!(d["delivery"]["state"], "DELIVERED", "{}", d["delivery"]);
    assert_eq!(d["delivery"]["delivered_version"], d["version"]);
    assert_eq!(d["delivery"]["delivered_version"], delivered["version"]);
    let kinds: Vec<&str> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "submitted",
        "rules",
        "dispatch",
        "decision",
        "withdraw",
        "status",
        "delivery",
    ] {
        assert!(kinds.contains(&kind), "history has no {kind}: {kinds:?}");
    }
    let summaries: Vec<&str> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["summary"].as_str().unwrap())
        .collect();
    assert!(
        summaries.iter().any(|s| s.contains("carol.zhao agreed")),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("withdrawn by ops.jane: release cancelled")),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("delivery attempt 1 failed")),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("Dataphin acknowledged version")),
        "{summaries:?}"
    );
    let times: Vec<i64> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["at"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "history in time order: {times:?}"
    );

    let (status, reply) = b
        .ops(
            Function::Query,
            "GET",
            "/approvals/tk-000000000000000000000000",
            b"",
        )
        .await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(reply["error_code"], "NotFound");
    let (status, _) = b
        .request(
            Function::Query,
            "GET",
            &format!("/approvals/{id}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn dataphin_get_replies_the_callback_document() {
    let b = Bridge::start(Options::default()).await;
    let body = with_apply_id(&fixture("01_physical_table_low.json"), "get-1");
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let bridge = &b;
    let get = |query: String| async move {
        let path = format!(
            "/dataphin/bpms/processinstance/get?{}&{query}",
            bridge.auth_query()
        );
        bridge
            .request(Function::Query, "GET", &path, &[], b"")
            .await
    };

    // While PENDING: the document as it stands.
    let (status, doc) = get(format!("tenantId={TENANT}&applyId=get-1")).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["success"], true);
    assert_eq!(doc["status"], "PENDING");
    assert_eq!(doc["processInstanceId"], id.as_str());
    assert_eq!(doc["applyId"], "get-1");
    assert!(doc["finishTime"].is_null());

    let instance = b.ticket(&id).await.instance_id.unwrap();
    b.dingtalk.act(&instance, "dt-bob", true, "ok").unwrap();
    b.push_pending_dingtalk_events().await;
    let mut delivered = b.dataphin.latest(&id).expect("callback sent");
    delivered["success"] = json!(true);
    for query in [
        format!("tenantId={TENANT}&applyId=get-1"),
        format!("processInstanceId={id}"),
        format!("processInstanceId={id}&tenantId={TENANT}"),
    ] {
        let (status, doc) = get(query.clone()).await;
        assert_eq!(status, 200, "{query}: {doc}");
        assert_eq!(
            doc, delivered,
            "{query}: get replies what the callback carried"
        );
    }

    for query in [
        format!("tenantId={TENANT}&applyId=never-submitted"),
        "processInstanceId=tk-000000000000000000000000".to_string(),
        format!("processInstanceId={id}&tenantId=300099999"),
        "tenantId=300099999&applyId=get-1".to_string(),
    ] {
        let (status, reply) = get(query.clone()).await;
        assert_eq!(status, 404, "{query}: {reply}");
        assert_eq!(reply["success"], false);
        assert_eq!(reply["errorCode"], "NotFound", "{query}: {reply}");
    }
    let (status, reply) = get(format!("tenantId={TENANT}")).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["errorCode"], "InvalidField");
    let (status, reply) = b
        .request(Function::Query, "GET", &format!("/dataphin/bpms/processinstance/get?accessToken=wrong&timestamp={}&processInstanceId={id}", now_ms()), &[], b"")
        .await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["errorCode"], "InvalidAccessToken");
}
