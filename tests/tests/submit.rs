//! Submit end to end: Dataphin's create and connect against the fake DingTalk and the fake BPM, with
//! real handlers and real tables. Every assertion is on what a caller or a backend can observe: HTTP
//! status and body, what the fakes received, and the ticket as the ops API shows it.

use std::sync::Arc;

use integration_tests::harness::*;
use serde_json::{json, Value};

/// What each submission fixture must look like once forwarded: its approval nodes (Dataphin relation and
/// approvers' Dataphin ids, in `approveOrder`) and facts of its scenario that approvers must be shown.
struct Scenario {
    file: &'static str,
    nodes: &'static [(&'static str, &'static [&'static str])],
    facts: &'static [&'static str],
}

const BOB: &str = "300000914";
const CAROL: &str = "300000920";
const DAVE: &str = "300000925";

const SCENARIOS: [Scenario; 17] = [
    Scenario {
        file: "01_physical_table_low.json",
        nodes: &[("OR", &[BOB])],
        facts: &[
            "dim_store",
            "store_id",
            "store_name",
            "SELECT",
            "L1",
            "PROD",
            "Weekly store report",
            "2026-12-24",
        ],
    },
    Scenario {
        file: "02_physical_table_high.json",
        nodes: &[("AND", &[BOB, CAROL]), ("OR", &[DAVE])],
        facts: &[
            "ods_customer",
            "id_card_no",
            "mobile",
            "L4",
            "SELECT, UPDATE",
            "Churn model needs contact data",
        ],
    },
    Scenario {
        file: "03_datasource_table.json",
        nodes: &[("OR", &[BOB])],
        facts: &[
            "crm_mysql",
            "orders",
            "order_id",
            "SELECT",
            "Reconcile order counts",
        ],
    },
    Scenario {
        file: "04_code_review.json",
        nodes: &[("OR", &[CAROL])],
        facts: &[
            "etl_daily_sales",
            "INSERT OVERWRITE TABLE dws_sales",
            "GROUP BY store_id",
            "bizdate",
        ],
    },
    Scenario {
        file: "05_release.json",
        nodes: &[("OR", &[CAROL]), ("OR", &[DAVE])],
        facts: &[
            "etl_daily_sales",
            "gmv_7d",
            "MAX_COMPUTE_SQL",
            "DERIVED_INDEX",
            "Ship Q4 sales metrics",
        ],
    },
    Scenario {
        file: "06_data_service.json",
        nodes: &[("OR", &[BOB])],
        facts: &[
            "sales_portal",
            "USE",
            "MIDDLE",
            "Dashboard backend",
            "2026-12-24",
        ],
    },
    Scenario {
        file: "07_datasource.json",
        nodes: &[("OR", &[BOB])],
        facts: &["crm_mysql", "SYNC_READ", "Nightly sync"],
    },
    Scenario {
        file: "08_conceptual_design.json",
        nodes: &[("OR", &[CAROL])],
        facts: &["store_visit", "门店到访", "arrive,leave", "traffic"],
    },
    Scenario {
        file: "09_global_param.json",
        nodes: &[("OR", &[BOB])],
        facts: &["fx_rate_date", "USE", "FX conversion job"],
    },
    Scenario {
        file: "10_secret_key.json",
        nodes: &[("OR", &[DAVE])],
        facts: &["pii_key", "SECRET_KEY_VIEW", "Rotate key"],
    },
    Scenario {
        file: "11_function.json",
        nodes: &[("OR", &[BOB])],
        facts: &["mask_mobile", "SELECT", "Mask phone numbers"],
    },
    Scenario {
        file: "12_change_owner.json",
        nodes: &[("OR", &[DAVE])],
        facts: &[
            "alice.wang",
            "bob.li",
            "Alice moves to the finance team",
            "p_5512",
        ],
    },
    Scenario {
        file: "13_standard_review.json",
        nodes: &[("OR", &[CAROL])],
        facts: &[
            "std_771",
            "Mainland mobile number",
            "New contact standard",
            "carrier",
            "2027-12-31",
        ],
    },
    Scenario {
        file: "14_data_download.json",
        nodes: &[("OR", &[BOB]), ("OR", &[DAVE])],
        facts: &[
            "SELECT city, mobile FROM ods_customer LIMIT 1000",
            "ods_customer",
            "L3",
            "Sample for vendor QA",
        ],
    },
    Scenario {
        file: "15_asset_topic.json",
        nodes: &[("OR", &[CAROL])],
        facts: &["Sales", "Orders", "Refunds", "Order facts"],
    },
    Scenario {
        file: "16_row_permission.json",
        nodes: &[("OR", &[BOB])],
        facts: &[
            "orders_by_region",
            "East",
            "North",
            "dwd_order",
            "Regional dashboard",
        ],
    },
    Scenario {
        file: "17_plain_text_content.json",
        nodes: &[("OR", &[BOB])],
        facts: &["Please approve the quarterly access review."],
    },
];

fn parsed(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

/// The scenarios in fixture order; fails when a fixture has no expectations here.
fn scenarios() -> Vec<(&'static Scenario, Vec<u8>)> {
    let fixtures = submission_fixtures();
    let names: Vec<&str> = fixtures.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = SCENARIOS.iter().map(|s| s.file).collect();
    assert_eq!(
        names, expected,
        "every submission fixture has a scenario here"
    );
    SCENARIOS
        .iter()
        .zip(fixtures)
        .map(|(s, (_, body))| (s, body))
        .collect()
}

/// Whether the content sent equals the submitted one, where the bridge may have parsed a value that
/// Dataphin sends as a JSON string (e.g. `approveUserNames`) and left out empty lists.
fn same_content(sent: &Value, submitted: &Value) -> bool {
    match (sent, submitted) {
        (Value::Object(a), Value::Object(b)) => {
            let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
            a.keys().all(|k| b.contains_key(k))
                && b.iter()
                    .all(|(k, v)| a.get(k).map_or(empty(v), |x| same_content(x, v)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_content(x, y))
        }
        (x, Value::String(text)) if !x.is_string() => {
            serde_json::from_str::<Value>(text).is_ok_and(|parsed| same_content(x, &parsed))
        }
        (x, y) => x == y,
    }
}

/// `GET /approvals/{id}` as the ops API answers it.
async fn detail(b: &Bridge, id: &str) -> (u16, Value) {
    b.ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await
}

async fn ticket_count(b: &Bridge) -> u64 {
    let (status, list) = b
        .ops(
            Function::Query,
            "GET",
            &format!("/approvals?workspace_id={TENANT}&limit=100"),
            b"",
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["total"].as_u64().expect("total")
}

/// Checks a rendered form (DingTalk `formComponentValues` or the webhook `form`): strings only, at most
/// 150 entries, the title first, every fact of the scenario shown, and no raw JSON dumped.
fn assert_form(file: &str, form: &Value, title: &str, facts: &[&str]) {
    let entries = form
        .as_array()
        .unwrap_or_else(|| panic!("{file}: form is a list: {form}"));
    assert!(
        !entries.is_empty() && entries.len() <= 150,
        "{file}: {} form entries",
        entries.len()
    );
    let mut text = String::new();
    for e in entries {
        let name = e["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: name is a string: {e}"));
        let value = e["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: value is a string: {e}"));
        assert!(!name.trim().is_empty(), "{file}: empty field name: {e}");
        assert!(
            !value.contains("{\"") && !value.contains("\":"),
            "{file}: raw JSON shown to approvers: {value}"
        );
        text.push_str(name);
        text.push_str(": ");
        text.push_str(value);
        text.push('\n');
    }
    assert!(
        entries.iter().any(|e| e["value"] == title),
        "{file}: the title is shown: {text}"
    );
    assert!(
        text.contains("alice.wang"),
        "{file}: the applicant is shown: {text}"
    );
    for fact in facts {
        assert!(text.contains(fact), "{file}: form shows {fact:?}:\n{text}");
    }
}

#[tokio::test]
async fn every_fixture_becomes_one_dingtalk_instance() {
    let b = Bridge::start(Options::default()).await;
    for (n, (scenario, body)) in scenarios().into_iter().enumerate() {
        let file = scenario.file;
        let sub = parsed(&body);
        let (status, reply) = b.create(&body).await;
        assert_eq!(status, 200, "{file}: {reply}");
        let id = Bridge::ticket_id_of(&body);
        assert_eq!(
            reply,
            json!({"success": true, "processInstanceId": id, "status": "PENDING"}),
            "{file}"
        );

        let creates = b.dingtalk.creates();
        assert_eq!(
            creates.len(),
            n + 1,
            "{file}: exactly one DingTalk create per submission"
        );
        let create = &creates[n];
        assert_eq!(create["originatorUserId"], "dt-alice", "{file}");
        assert_eq!(
            create["deptId"], 1001,
            "{file}: the applicant's mapped department"
        );
        assert_eq!(create["microappAgentId"], 4242, "{file}");
        assert_eq!(create["processCode"], PROCESS_CODE, "{file}");
        let approvers: Vec<Value> = scenario
            .nodes
            .iter()
            .map(|(relation, users)| {
                let action = if users.len() == 1 { "NONE" } else { relation };
                json!({"actionType": action, "userIds": users.iter().map(|u| backend_id(u)).collect::<Vec<_>>()})
            })
            .collect();
        assert_eq!(
            create["approvers"],
            json!(approvers),
            "{file}: approvers in approveOrder"
        );
        assert_form(
            file,
            &create["formComponentValues"],
            sub["title"].as_str().unwrap(),
            scenario.facts,
        );

        // The ticket is linked to the instance DingTalk created for it.
        let instance = b.dingtalk.instance_ids().last().cloned().expect("instance");
        let (status, view) = detail(&b, &id).await;
        assert_eq!(status, 200, "{file}: {view}");
        assert_eq!(view["instance_id"], instance.as_str(), "{file}");
        assert_eq!(view["approval_dispatch_status"], "0", "{file}");
        assert_eq!(view["approval_dispatch_error_msg"], Value::Null, "{file}");
        assert_eq!(view["status"], "WAITING_APPROVE", "{file}");
        assert_eq!(view["apply_id"], sub["applyId"], "{file}");
        assert_eq!(
            view["workflow_nodes"].as_array().map(Vec::len),
            Some(scenario.nodes.len()),
            "{file}"
        );
    }
    assert_eq!(ticket_count(&b).await, 17, "one ticket per fixture");
    assert_eq!(
        b.dingtalk.token_calls(),
        1,
        "the token is cached across creates"
    );
}

#[tokio::test]
async fn every_fixture_becomes_one_signed_bpm_ticket() {
    let b = Bridge::start(Options {
        backend: Backend::Webhook,
        ..Options::default()
    })
    .await;
    for (n, (scenario, body)) in scenarios().into_iter().enumerate() {
        let file = scenario.file;
        let sub = parsed(&body);
        let before = now_ms();
        let (status, reply) = b.create(&body).await;
        assert_eq!(status, 200, "{file}: {reply}");
        let id = Bridge::ticket_id_of(&body);
        assert_eq!(
            reply,
            json!({"success": true, "processInstanceId": id, "status": "PENDING"}),
            "{file}"
        );

        let requests = b.bpm.requests();
        assert_eq!(
            requests.len(),
            n + 1,
            "{file}: exactly one BPM request per submission"
        );
        let req = &requests[n];
        assert_eq!(
            req.idempotency_key.as_deref(),
            Some(id.as_str()),
            "{file}: Idempotency-Key is the ticket id"
        );
        let e = &req.event;
        assert_eq!(e["event"], "ticket.created", "{file}");
        assert_eq!(e["ticket_id"], id.as_str(), "{file}");
        assert_eq!(e["apply_id"], sub["applyId"], "{file}");
        assert_eq!(e["tenant_id"], TENANT, "{file}");
        assert_eq!(e["type"], sub["type"], "{file}");
        assert_eq!(e["title"], sub["title"], "{file}");
        assert_eq!(
            e["applicant"],
            json!({"user_id": "300000913", "user_name": "alice.wang", "backend_user_id": "dt-alice"}),
            "{file}"
        );
        let nodes = e["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), scenario.nodes.len(), "{file}: {e}");
        for (i, (node, (relation, users))) in nodes.iter().zip(scenario.nodes).enumerate() {
            assert!(
                node["node_id"].as_str().is_some_and(|s| !s.is_empty()),
                "{file}: node_id: {node}"
            );
            assert_eq!(node["order"], i + 1, "{file}");
            assert_eq!(node["relation"], relation.to_ascii_lowercase(), "{file}");
            let approvers: Vec<Value> = users
                .iter()
                .map(|u| {
                    let name = FIXTURE_USERS.iter().find(|f| f.0 == *u).unwrap().2;
                    json!({"backend_user_id": backend_id(u), "user_name": name})
                })
                .collect();
            assert_eq!(node["approvers"], json!(approvers), "{file}");
        }
        assert_form(
            file,
            &e["form"],
            sub["title"].as_str().unwrap(),
            scenario.facts,
        );
        // JSON content goes out parsed (nested JSON strings too), free text as it is.
        let content = sub["content"].as_str().unwrap();
        let expected_content =
            serde_json::from_str::<Value>(content).unwrap_or_else(|_| json!(content));
        assert!(
            same_content(&e["content"], &expected_content),
            "{file}: content {} is not {expected_content}",
            e["content"]
        );
        assert_eq!(
            e["content"].is_string(),
            file.starts_with("17_"),
            "{file}: only free text stays text"
        );
        let expire = e["expire_time"].as_i64().expect("expire_time");
        let week = 168 * 3_600_000;
        assert!(
            expire >= before + week && expire <= now_ms() + week,
            "{file}: expire_time {expire}"
        );

        let instance = b.bpm.instance_for(&id).expect("BPM created an instance");
        let (status, view) = detail(&b, &id).await;
        assert_eq!(status, 200, "{file}: {view}");
        assert_eq!(
            view["instance_id"],
            instance.as_str(),
            "{file}: the ticket stores the BPM instance"
        );
        assert_eq!(view["approval_dispatch_status"], "0", "{file}");
    }
    assert_eq!(b.bpm.unauthorized(), 0, "every request was signed right");
    assert_eq!(b.bpm.instances_created(), 17);
    assert_eq!(ticket_count(&b).await, 17);
    assert!(
        b.dingtalk.calls().is_empty(),
        "the webhook backend never calls DingTalk"
    );
}

/// A change that makes a valid submission invalid.
type Edit = Box<dyn Fn(&mut Value)>;

/// (fixture, expected field in `errorMessage`, whether `InvalidJson` is an acceptable code).
const INVALID: [(&str, &str, bool); 9] = [
    ("approve_nodes_not_a_list.json", "approveNodes", false),
    ("auth_content_not_json.json", "content", false),
    ("empty_apply_id.json", "applyId", false),
    ("missing_apply_id.json", "applyId", false),
    ("no_applicant.json", "applyUserInfo", false),
    (
        "node_without_approvers.json",
        "approveNodes[0].approveUsers",
        false,
    ),
    ("not_an_object.json", "object", true),
    ("truncated_json.json", "JSON", true),
    (
        "unknown_approve_operator.json",
        "approveNodes[0].approveOperator",
        false,
    ),
];

async fn assert_refused(b: &Bridge, name: &str, body: &[u8], field: &str, json_ok: bool) {
    let (status, reply) = b.create(body).await;
    assert_eq!(status, 400, "{name}: {reply}");
    assert_eq!(reply["success"], false, "{name}: {reply}");
    let code = reply["errorCode"].as_str().unwrap_or_default();
    let allowed: &[&str] = if json_ok {
        &["InvalidJson", "InvalidField"]
    } else {
        &["InvalidField"]
    };
    assert!(allowed.contains(&code), "{name}: errorCode {code}: {reply}");
    let message = reply["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains(field),
        "{name}: errorMessage names {field:?}: {message}"
    );
}

#[tokio::test]
async fn invalid_submissions_are_refused_and_nothing_is_stored_or_sent() {
    let b = Bridge::start(Options::default()).await;
    let fixtures = invalid_fixtures();
    let names: Vec<&str> = fixtures.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        INVALID.map(|i| i.0).to_vec(),
        "every invalid fixture has an expectation here"
    );
    for ((name, body), (_, field, json_ok)) in fixtures.iter().zip(INVALID) {
        assert_refused(&b, name, body, field, json_ok).await;
    }
    // Inputs beyond the fixtures, built from a valid submission.
    let good = parsed(&fixture("01_physical_table_low.json"));
    let variants: Vec<(&str, Edit, &str)> = vec![
        (
            "tenantId missing",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("tenantId");
            }),
            "tenantId",
        ),
        (
            "applicant without userId",
            Box::new(|v| {
                v["applyUserInfo"].as_object_mut().unwrap().remove("userId");
            }),
            "applyUserInfo.userId",
        ),
        (
            "approveNodes empty",
            Box::new(|v| v["approveNodes"] = json!([])),
            "approveNodes",
        ),
        (
            "approveOrder not a number",
            Box::new(|v| v["approveNodes"][0]["approveOrder"] = json!("first")),
            "approveNodes[0].approveOrder",
        ),
        (
            "approver without userId",
            Box::new(|v| v["approveNodes"][0]["approveUsers"] = json!([{"userName": "bob.li"}])),
            "approveNodes[0].approveUsers[0].userId",
        ),
        (
            "content list that does not parse",
            Box::new(|v| v["content"] = json!("[{\"resourceType\": ")),
            "content",
        ),
        (
            "content of another type",
            Box::new(|v| v["content"] = json!(42)),
            "content",
        ),
        (
            "several approvers without operator",
            Box::new(|v| {
                v["approveNodes"][0]["approveUsers"] = json!([{"userId": BOB, "userName": "bob.li"}, {"userId": CAROL, "userName": "carol.zhao"}]);
                v["approveNodes"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("approveOperator");
            }),
            "approveNodes[0].approveOperator",
        ),
    ];
    for (label, change, field) in variants {
        let mut v = good.clone();
        change(&mut v);
        assert_refused(&b, label, &serde_json::to_vec(&v).unwrap(), field, false).await;
    }
    assert_refused(&b, "empty body", b"", "JSON", true).await;

    // Every invalid input uses applyId 7206426532800001: no ticket exists under it, none at all.
    let id = app::tickets::ticket_id(TENANT, "7206426532800001");
    let (status, view) = detail(&b, &id).await;
    assert_eq!(status, 404, "{view}");
    assert_eq!(view["error_code"], "NotFound");
    assert_eq!(ticket_count(&b).await, 0);
    assert!(
        b.dingtalk.calls().is_empty(),
        "no DingTalk call at all: {:?}",
        b.dingtalk.calls()
    );
    assert!(b.dataphin.documents().is_empty());
}

#[tokio::test]
async fn access_token_timestamp_and_size_are_checked() {
    let b = Bridge::start(Options::default()).await;
    let body = fixture("01_physical_table_low.json");
    let path = |query: String| format!("/dataphin/bpms/processinstance/create?{query}");
    let send = |query: String, body: Vec<u8>| {
        let b = &b;
        async move {
            b.request(
                Function::Submit,
                "POST",
                &path(query),
                &[("content-type", "application/json")],
                &body,
            )
            .await
        }
    };
    let now = now_ms();
    let refused: Vec<(String, u16, &str)> = vec![
        (
            format!("accessToken=wrong-token&timestamp={now}"),
            401,
            "InvalidAccessToken",
        ),
        (
            format!("accessToken={ACCESS_TOKEN}x&timestamp={now}"),
            401,
            "InvalidAccessToken",
        ),
        (format!("timestamp={now}"), 401, "InvalidAccessToken"),
        (format!("accessToken={ACCESS_TOKEN}"), 401, "StaleTimestamp"),
        (
            format!("accessToken={ACCESS_TOKEN}&timestamp=yesterday"),
            401,
            "StaleTimestamp",
        ),
        (
            format!("accessToken={ACCESS_TOKEN}&timestamp={}", now - 301_000),
            401,
            "StaleTimestamp",
        ),
        (
            format!("accessToken={ACCESS_TOKEN}&timestamp={}", now + 301_000),
            401,
            "StaleTimestamp",
        ),
        // Seconds instead of milliseconds are far outside the window.
        (
            format!("accessToken={ACCESS_TOKEN}&timestamp={}", now / 1000),
            401,
            "StaleTimestamp",
        ),
    ];
    for (query, status, code) in refused {
        let (got, reply) = send(query.clone(), body.clone()).await;
        assert_eq!(
            (got, reply["errorCode"].as_str()),
            (status, Some(code)),
            "{query}: {reply}"
        );
        assert_eq!(reply["success"], false);
        let text = reply.to_string();
        assert!(
            !text.contains(ACCESS_TOKEN) && !text.contains("wrong-token"),
            "no token echoed: {text}"
        );
    }
    assert_eq!(ticket_count(&b).await, 0, "refused requests store nothing");
    assert!(b.dingtalk.creates().is_empty());

    // Over 1 MiB is refused before anything else; 1 MiB of free text is a valid submission otherwise.
    let mut big = parsed(&body);
    big["content"] = json!("x".repeat(1024 * 1024 + 1));
    let (status, reply) = b.create(&serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(
        (status, reply["errorCode"].as_str()),
        (413, Some("PayloadTooLarge")),
        "{reply}"
    );
    assert_eq!(ticket_count(&b).await, 0);

    // Inside the skew window the create goes through.
    let (status, reply) = send(
        format!("accessToken={ACCESS_TOKEN}&timestamp={}", now - 290_000),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.dingtalk.creates().len(), 1);
}

#[tokio::test]
async fn skew_window_follows_configuration() {
    let b = Bridge::start(Options {
        env: vec![("TIMESTAMP_SKEW_SECONDS".into(), "10".into())],
        ..Options::default()
    })
    .await;
    let body = fixture("01_physical_table_low.json");
    let stale = format!(
        "/dataphin/bpms/processinstance/create?accessToken={ACCESS_TOKEN}&timestamp={}",
        now_ms() - 20_000
    );
    let (status, reply) = b
        .request(Function::Submit, "POST", &stale, &[], &body)
        .await;
    assert_eq!(
        (status, reply["errorCode"].as_str()),
        (401, Some("StaleTimestamp")),
        "{reply}"
    );
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test]
async fn connect_answers_check_result() {
    let b = Bridge::start(Options::default()).await;
    let connect = |query: String| {
        let b = &b;
        async move {
            let path = format!("/dataphin/bpms/check/connect?{query}");
            b.request(
                Function::Submit,
                "POST",
                &path,
                &[("content-type", "application/json")],
                br#"{"checkEvent": "connectivity"}"#,
            )
            .await
        }
    };
    let (status, reply) = connect(b.auth_query()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["checkResult"], "success", "{reply}");

    let (status, reply) = connect(format!("accessToken=nope&timestamp={}", now_ms())).await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["checkResult"], "failure");
    assert_eq!(reply["errorCode"], "InvalidAccessToken");
    assert_eq!(reply["success"], false);

    let (status, reply) = connect(format!(
        "accessToken={ACCESS_TOKEN}&timestamp={}",
        now_ms() - 3_600_000
    ))
    .await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["checkResult"], "failure");
    assert_eq!(reply["errorCode"], "StaleTimestamp");

    // Connect proves the table answers: without it the check fails.
    dynamo_client()
        .delete_table()
        .table_name(&b.env["TICKETS_TABLE"])
        .send()
        .await
        .expect("drop table");
    let (status, reply) = connect(b.auth_query()).await;
    assert!(status >= 500, "{status} {reply}");
    assert_eq!(reply["checkResult"], "failure", "{reply}");
    assert!(!reply.to_string().contains(ACCESS_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_repeats_create_one_ticket_and_one_instance() {
    let b = Arc::new(Bridge::start(Options::default()).await);
    let body = Arc::new(fixture("02_physical_table_high.json"));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (b, body) = (b.clone(), body.clone());
        set.spawn(async move { b.create(&body).await });
    }
    let replies: Vec<(u16, Value)> = set.join_all().await;
    let id = Bridge::ticket_id_of(&body);
    let first = json!({"success": true, "processInstanceId": id, "status": "PENDING"});
    for (status, reply) in &replies {
        assert_eq!((*status, reply), (200, &first));
    }
    assert_eq!(
        b.dingtalk.creates().len(),
        1,
        "one DingTalk instance for 20 creates"
    );
    assert_eq!(ticket_count(&b).await, 1);

    // A later repeat, even laid out differently, gets the same reply and sends nothing.
    let pretty = serde_json::to_vec_pretty(&parsed(&body)).unwrap();
    let (status, reply) = b.create(&pretty).await;
    assert_eq!((status, &reply), (200, &first));
    assert_eq!(b.dingtalk.creates().len(), 1);
    let (_, view) = detail(&b, &id).await;
    assert_eq!(view["instance_id"], b.dingtalk.instance_ids()[0].as_str());
}

#[tokio::test]
async fn same_apply_id_with_another_body_is_a_conflict() {
    let b = Bridge::start(Options::default()).await;
    let body = fixture("01_physical_table_low.json");
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    let id = Bridge::ticket_id_of(&body);
    let (_, before) = detail(&b, &id).await;

    let mut other = parsed(&body);
    other["title"] = json!("Table permission: sales_dw.dim_store (SELECT, UPDATE)");
    other["approveNodes"][0]["approveUsers"][0] =
        json!({"userId": DAVE, "userSourceId": "0917452163-4471", "userName": "dave.sun"});
    let (status, reply) = b.create(&serde_json::to_vec(&other).unwrap()).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["errorCode"], "Conflict");
    assert!(
        reply["errorMessage"]
            .as_str()
            .unwrap()
            .contains("7206426532800001"),
        "{reply}"
    );

    let (_, after) = detail(&b, &id).await;
    assert_eq!(after, before, "the ticket is untouched");
    assert_eq!(b.dingtalk.creates().len(), 1);
    assert_eq!(ticket_count(&b).await, 1);
    // The original body still gets its reply.
    let (status, reply) = b.create(&body).await;
    assert_eq!(
        (status, reply["processInstanceId"].as_str()),
        (200, Some(id.as_str()))
    );
}

/// A failed forward leaves a ticket with dispatch status 1; the retried create forwards it once.
async fn assert_failed_then_retried(
    b: &Bridge,
    body: &[u8],
    heal: impl FnOnce(),
    instances: impl Fn() -> usize,
) {
    let id = Bridge::ticket_id_of(body);
    let (status, reply) = b.create(body).await;
    assert_eq!(status, 502, "{reply}");
    assert_eq!(reply["errorCode"], "BackendUnavailable");
    assert_eq!(reply["success"], false);
    let text = reply.to_string();
    for secret in [APP_SECRET, WEBHOOK_SECRET, ACCESS_TOKEN] {
        assert!(!text.contains(secret), "no secret in {text}");
    }
    let (status, view) = detail(b, &id).await;
    assert_eq!(status, 200, "the ticket exists: {view}");
    assert_eq!(view["approval_dispatch_status"], "1", "{view}");
    assert!(
        view["approval_dispatch_error_msg"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{view}"
    );
    assert_eq!(view["instance_id"], Value::Null);
    assert_eq!(view["status"], "WAITING_APPROVE");
    assert_eq!(instances(), 0);

    heal();
    let (status, reply) = b.create(body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"success": true, "processInstanceId": id, "status": "PENDING"})
    );
    let (_, view) = detail(b, &id).await;
    assert_eq!(view["approval_dispatch_status"], "0", "{view}");
    assert_eq!(view["approval_dispatch_error_msg"], Value::Null, "{view}");
    assert!(view["instance_id"].is_string(), "{view}");
    assert_eq!(instances(), 1);

    // Once forwarded, repeats send nothing more.
    let (status, again) = b.create(body).await;
    assert_eq!((status, again), (200, reply));
    assert_eq!(instances(), 1);
    assert_eq!(ticket_count(b).await, 1);
}

#[tokio::test]
async fn dingtalk_error_leaves_dispatch_status_1_and_a_retry_forwards() {
    let b = Bridge::start(Options::default()).await;
    b.dingtalk.fail_creates(1);
    assert_failed_then_retried(
        &b,
        &fixture("04_code_review.json"),
        || {},
        || b.dingtalk.creates().len(),
    )
    .await;
}

#[tokio::test]
async fn dingtalk_unreachable_leaves_dispatch_status_1_and_a_retry_forwards() {
    let b = Bridge::start(Options::default()).await;
    b.dingtalk.set_down(true);
    assert_failed_then_retried(
        &b,
        &fixture("14_data_download.json"),
        || b.dingtalk.set_down(false),
        || b.dingtalk.creates().len(),
    )
    .await;
}

#[tokio::test]
async fn bpm_unavailable_leaves_dispatch_status_1_and_a_retry_forwards() {
    let b = Bridge::start(Options {
        backend: Backend::Webhook,
        ..Options::default()
    })
    .await;
    b.bpm.set_down(true);
    let body = fixture("05_release.json");
    assert_failed_then_retried(
        &b,
        &body,
        || b.bpm.set_down(false),
        || b.bpm.instances_created(),
    )
    .await;
    let id = Bridge::ticket_id_of(&body);
    assert!(b
        .bpm
        .requests()
        .iter()
        .all(|r| r.idempotency_key.as_deref() == Some(id.as_str())));
}

#[tokio::test]
async fn dingtalk_token_is_cached_and_refreshed_once_when_revoked() {
    let b = Bridge::start(Options::default()).await;
    let body = fixture("01_physical_table_low.json");
    for n in 1..=3 {
        let (status, reply) = b
            .create(&with_apply_id(&body, &format!("72064265328100{n:02}")))
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    assert_eq!(b.dingtalk.token_calls(), 1, "one token for three creates");
    assert_eq!(b.dingtalk.creates().len(), 3);

    b.dingtalk.expire_tokens();
    let (status, reply) = b.create(&with_apply_id(&body, "7206426532810004")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.dingtalk.token_calls(), 2, "refreshed exactly once");
    assert_eq!(b.dingtalk.creates().len(), 4);
    let create_calls = b
        .dingtalk
        .calls()
        .iter()
        .filter(|(m, p)| m == "POST" && p == "/v1.0/workflow/processInstances")
        .count();
    assert_eq!(create_calls, 5, "the refused create was sent again once");

    let (status, _) = b.create(&with_apply_id(&body, "7206426532810005")).await;
    assert_eq!(status, 200);
    assert_eq!(b.dingtalk.token_calls(), 2, "the new token is cached too");
}

#[tokio::test]
async fn unmapped_users_are_all_named_and_nothing_is_stored_or_sent() {
    let b = Bridge::start(Options::default()).await;
    for user in [CAROL, DAVE] {
        let (status, reply) = b
            .ops(
                Function::Admin,
                "DELETE",
                &format!("/user-mappings/{TENANT}/{user}"),
                b"",
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    let body = fixture("02_physical_table_high.json");
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["errorCode"], "UnmappedUser");
    let message = reply["errorMessage"].as_str().unwrap();
    for named in ["carol.zhao", CAROL, "dave.sun", DAVE] {
        assert!(message.contains(named), "{named} is named: {message}");
    }
    assert!(
        !message.contains("bob.li") && !message.contains("alice.wang"),
        "only unresolved users: {message}"
    );
    let (status, _) = detail(&b, &Bridge::ticket_id_of(&body)).await;
    assert_eq!(status, 404, "nothing stored");
    assert!(
        b.dingtalk.calls().is_empty(),
        "nothing sent: {:?}",
        b.dingtalk.calls()
    );

    // An unmapped applicant is named too.
    let (status, _) = b
        .ops(
            Function::Admin,
            "DELETE",
            &format!("/user-mappings/{TENANT}/300000913"),
            b"",
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = b.create(&fixture("01_physical_table_low.json")).await;
    assert_eq!(status, 422, "{reply}");
    assert!(
        reply["errorMessage"]
            .as_str()
            .unwrap()
            .contains("alice.wang"),
        "{reply}"
    );
    assert_eq!(ticket_count(&b).await, 0);

    // Once mapped again the same submission goes through.
    for (user, source, name, backend) in FIXTURE_USERS
        .iter()
        .filter(|u| [CAROL, DAVE].contains(&u.0))
    {
        let row = json!({"user_source_id": source, "user_name": name, "backend_user_id": backend, "backend_dept_id": "1001"});
        let (status, reply) = b
            .ops(
                Function::Admin,
                "PUT",
                &format!("/user-mappings/{TENANT}/{user}"),
                row.to_string().as_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    let (status, _) = b
        .ops(
            Function::Admin,
            "DELETE",
            &format!("/user-mappings/{TENANT}/300000913"),
            b"",
        )
        .await;
    assert_eq!(status, 404, "already deleted");
    b.seed_fixture_mappings().await;
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.dingtalk.creates().len(), 1);
}

#[tokio::test]
async fn source_id_fallback_uses_user_source_id() {
    let b = Bridge::start(Options {
        env: vec![("USER_MAPPING_FALLBACK".into(), "source_id".into())],
        ..Options::default()
    })
    .await;
    let (status, _) = b
        .ops(
            Function::Admin,
            "DELETE",
            &format!("/user-mappings/{TENANT}/{BOB}"),
            b"",
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = b.create(&fixture("02_physical_table_high.json")).await;
    assert_eq!(status, 200, "{reply}");
    let create = &b.dingtalk.creates()[0];
    assert_eq!(
        create["approvers"],
        json!([{"actionType": "AND", "userIds": ["0917452163-2044", "dt-carol"]}, {"actionType": "NONE", "userIds": ["dt-dave"]}])
    );
    assert_eq!(create["originatorUserId"], "dt-alice");

    // With no mapping at all, everyone is their userSourceId and the applicant lands in the root department.
    let bare = Bridge::start(Options {
        env: vec![("USER_MAPPING_FALLBACK".into(), "source_id".into())],
        seed_mappings: false,
        ..Options::default()
    })
    .await;
    let (status, reply) = bare.create(&fixture("14_data_download.json")).await;
    assert_eq!(status, 200, "{reply}");
    let create = &bare.dingtalk.creates()[0];
    assert_eq!(create["originatorUserId"], "0917452163-1398");
    assert_eq!(create["deptId"], -1);
    assert_eq!(
        create["approvers"],
        json!([{"actionType": "NONE", "userIds": ["0917452163-2044"]}, {"actionType": "NONE", "userIds": ["0917452163-4471"]}])
    );
}

#[tokio::test]
async fn users_resolve_by_user_source_id_when_user_id_is_not_mapped() {
    let b = Bridge::start(Options::default()).await;
    // Alice and Bob were mapped under older Dataphin user ids; only their userSourceId still matches.
    for (user, legacy, source, name, backend, dept) in [
        (
            "300000913",
            "legacy-alice",
            "0917452163-1398",
            "alice.wang",
            "dt-alice-2",
            "2002",
        ),
        (
            BOB,
            "legacy-bob",
            "0917452163-2044",
            "bob.li",
            "dt-bob-2",
            "2003",
        ),
    ] {
        let (status, _) = b
            .ops(
                Function::Admin,
                "DELETE",
                &format!("/user-mappings/{TENANT}/{user}"),
                b"",
            )
            .await;
        assert_eq!(status, 200);
        let row = json!({"user_source_id": source, "user_name": name, "backend_user_id": backend, "backend_dept_id": dept});
        let (status, reply) = b
            .ops(
                Function::Admin,
                "PUT",
                &format!("/user-mappings/{TENANT}/{legacy}"),
                row.to_string().as_bytes(),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    let (status, reply) = b.create(&fixture("02_physical_table_high.json")).await;
    assert_eq!(status, 200, "{reply}");
    let create = &b.dingtalk.creates()[0];
    assert_eq!(create["originatorUserId"], "dt-alice-2");
    assert_eq!(
        create["deptId"], 2002,
        "the department of the mapping found by userSourceId"
    );
    assert_eq!(
        create["approvers"][0]["userIds"],
        json!(["dt-bob-2", "dt-carol"])
    );

    // The ticket still speaks of Dataphin's user ids.
    let id = reply["processInstanceId"].as_str().unwrap();
    let (_, view) = detail(&b, id).await;
    assert_eq!(view["proposer_id"], "300000913");
    assert_eq!(
        view["workflow_nodes"][0]["audit_user_id_list"],
        json!([BOB, CAROL])
    );

    // A mapping of another tenant with the same userSourceId does not count.
    let (status, _) = b
        .ops(
            Function::Admin,
            "DELETE",
            &format!("/user-mappings/{TENANT}/{CAROL}"),
            b"",
        )
        .await;
    assert_eq!(status, 200);
    let row = json!({"user_source_id": "0917452163-3310", "user_name": "carol.zhao", "backend_user_id": "dt-carol-elsewhere"});
    let (status, _) = b
        .ops(
            Function::Admin,
            "PUT",
            "/user-mappings/999999/300000920",
            row.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = b.create(&fixture("04_code_review.json")).await;
    assert_eq!(status, 422, "{reply}");
    assert!(
        reply["errorMessage"]
            .as_str()
            .unwrap()
            .contains("carol.zhao"),
        "{reply}"
    );
}

#[tokio::test]
async fn lenient_inputs_are_accepted_as_dataphin_sends_them() {
    let b = Bridge::start(Options::default()).await;
    let base = parsed(&fixture("14_data_download.json"));

    // Nodes listed out of order run in approveOrder; numbers are accepted for ids and orders.
    let mut v = base.clone();
    v["applyId"] = json!(7206426532800101_i64);
    let nodes = v["approveNodes"].as_array_mut().unwrap();
    nodes.reverse();
    nodes[0]["approveOrder"] = json!(2);
    let (status, reply) = b.create(&serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["processInstanceId"],
        app::tickets::ticket_id(TENANT, "7206426532800101").as_str()
    );
    assert_eq!(
        b.dingtalk.creates()[0]["approvers"],
        json!([{"actionType": "NONE", "userIds": ["dt-bob"]}, {"actionType": "NONE", "userIds": ["dt-dave"]}])
    );

    // An unknown type is handled as DEFAULT, unknown fields are no reason to refuse, and content may
    // come as an object rather than a string.
    let mut v = base.clone();
    v["applyId"] = json!("7206426532800102");
    v["type"] = json!("SOMETHING_NEW");
    v["futureField"] = json!({"x": 1});
    v["content"] = serde_json::from_str(base["content"].as_str().unwrap()).unwrap();
    let (status, reply) = b.create(&serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    let (_, view) = detail(&b, reply["processInstanceId"].as_str().unwrap()).await;
    assert_eq!(view["approval_type"], "DEFAULT", "{view}");
    let form = &b.dingtalk.creates()[1]["formComponentValues"];
    assert!(
        form.to_string()
            .contains("SELECT city, mobile FROM ods_customer LIMIT 1000"),
        "{form}"
    );

    // Free text that merely contains braces is shown as it is.
    let mut v = base.clone();
    v["applyId"] = json!("7206426532800103");
    v["content"] = json!("Need {all} columns of ods_customer");
    let (status, reply) = b.create(&serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    let form = b.dingtalk.creates()[2]["formComponentValues"].to_string();
    assert!(
        form.contains("Need {all} columns of ods_customer"),
        "{form}"
    );

    // The same applyId in another tenant is another ticket.
    let csv = FIXTURE_USERS
        .iter()
        .map(|(user, source, name, backend)| {
            format!("300073303,{user},{source},{name},{backend},1001\n")
        })
        .collect::<String>();
    let csv = format!(
        "tenant_id,user_id,user_source_id,user_name,backend_user_id,backend_dept_id\n{csv}"
    );
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, reply) = b
        .request(
            Function::Admin,
            "POST",
            "/user-mappings/import",
            &[("authorization", &auth), ("content-type", "text/csv")],
            csv.as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let mut v = base.clone();
    v["applyId"] = json!("7206426532800101");
    v["tenantId"] = json!("300073303");
    let (status, reply) = b.create(&serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["processInstanceId"],
        app::tickets::ticket_id("300073303", "7206426532800101").as_str()
    );
    assert_ne!(
        reply["processInstanceId"],
        app::tickets::ticket_id(TENANT, "7206426532800101").as_str()
    );
    assert_eq!(b.dingtalk.creates().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_after_a_failed_forward_create_one_instance() {
    let b = Arc::new(Bridge::start(Options::default()).await);
    let body = Arc::new(fixture("02_physical_table_high.json"));
    b.dingtalk.fail_creates(1);
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 502, "{reply}");

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (b, body) = (b.clone(), body.clone());
        set.spawn(async move { b.create(&body).await });
    }
    let id = Bridge::ticket_id_of(&body);
    for (status, reply) in set.join_all().await {
        assert_eq!(
            (status, reply),
            (
                200,
                json!({"success": true, "processInstanceId": id, "status": "PENDING"})
            )
        );
    }
    assert_eq!(
        b.dingtalk.creates().len(),
        1,
        "one retry forwarded, the others saw it in flight or done"
    );
    let (_, view) = detail(&b, &id).await;
    assert_eq!(view["approval_dispatch_status"], "0", "{view}");
    assert_eq!(view["instance_id"], b.dingtalk.instance_ids()[0].as_str());
}

#[tokio::test]
async fn long_code_and_long_free_text_are_forwarded() {
    let b = Bridge::start(Options::default()).await;
    // 300 KB of free text: accepted, and the ticket keeps a summary of it as its reason.
    let mut text = parsed(&fixture("17_plain_text_content.json"));
    text["content"] = json!(format!(
        "Please review the attached plan. {}",
        "y".repeat(300 * 1024)
    ));
    let (status, reply) = b.create(&serde_json::to_vec(&text).unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let (_, view) = detail(&b, &id).await;
    let reason = view["approve_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("Please review the attached plan.") && reason.chars().count() <= 1000,
        "{}",
        reason.len()
    );

    // A 250 KB script under code review.
    let mut code = parsed(&fixture("04_code_review.json"));
    let mut content: Value = serde_json::from_str(code["content"].as_str().unwrap()).unwrap();
    content["applyObject"]["codeContent"] = json!(format!(
        "-- nightly rebuild\n{}",
        "SELECT 1;\n".repeat(25 * 1024)
    ));
    code["content"] = json!(content.to_string());
    let (status, reply) = b.create(&serde_json::to_vec(&code).unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    let creates = b.dingtalk.creates();
    assert_eq!(creates.len(), 2);
    for create in &creates {
        let form = create["formComponentValues"].as_array().unwrap();
        assert!(form.len() <= 150 && form.iter().all(|f| f["value"].is_string()));
    }
    assert!(creates[1]["formComponentValues"]
        .to_string()
        .contains("-- nightly rebuild"));
}

#[tokio::test]
async fn bodies_up_to_one_mib_are_stored_compressed_and_read_back() {
    let b = Bridge::start(Options::default()).await;
    // 900 KB of SQL under code review: the SPEC accepts bodies up to 1 MiB.
    let mut code = parsed(&fixture("04_code_review.json"));
    let mut content: Value = serde_json::from_str(code["content"].as_str().unwrap()).unwrap();
    content["applyObject"]["codeContent"] =
        json!("SELECT id, name FROM dim_store;\n".repeat(28 * 1024));
    code["content"] = json!(content.to_string());
    let body = serde_json::to_vec(&code).unwrap();
    assert!(body.len() > 900 * 1024 && body.len() < 1024 * 1024);
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let (status, view) = detail(&b, &id).await;
    assert_eq!(status, 200);
    let code_back = view["content"]["applyObject"]["codeContent"]
        .as_str()
        .unwrap();
    assert_eq!(
        code_back.len(),
        28 * 1024 * "SELECT id, name FROM dim_store;\n".len()
    );
    // The same body again is recognised as the same submission.
    let (status, again) = b.create(&body).await;
    assert_eq!((status, &again), (200, &reply));

    // 600 KB that does not compress cannot be kept in a DynamoDB item: refused, nothing stored.
    use rand::Rng;
    let noise: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(600 * 1024)
        .map(char::from)
        .collect();
    let mut text = parsed(&fixture("17_plain_text_content.json"));
    text["applyId"] = json!("noise-1");
    text["content"] = json!(noise);
    let body = serde_json::to_vec(&text).unwrap();
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["errorCode"], "PayloadTooLarge");
    let (status, _) = detail(&b, &Bridge::ticket_id_of(&body)).await;
    assert_eq!(status, 404);
    assert_eq!(b.dingtalk.creates().len(), 1);
}
