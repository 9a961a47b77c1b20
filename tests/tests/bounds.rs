//! Bounds (SPEC 4 and 8): every oversized or malformed input is refused with `InvalidField` naming
//! the field, before the bridge asks DynamoDB anything (0 calls, counted on the bridge's client).

mod common;

use common::counting_bridge;
use integration_tests::harness::*;
use serde_json::{json, Value};

fn base() -> Value {
    serde_json::from_slice(&fixture("02_physical_table_high.json")).unwrap()
}

fn user(i: usize) -> Value {
    json!({"userId": format!("u{i}"), "userSourceId": format!("s{i}"), "userName": format!("user {i}")})
}

fn node(order: usize, users: Vec<Value>) -> Value {
    json!({"approveOrder": order.to_string(), "approveUsers": users, "approveOperator": "AND"})
}

/// Submissions that break one bound each, with the field the error must name.
fn bad_submissions() -> Vec<(&'static str, Value)> {
    let long = "9".repeat(129);
    let mut cases = Vec::new();
    let mut v = base();
    v["approveNodes"] = json!((1..=21).map(|i| node(i, vec![user(i)])).collect::<Vec<_>>());
    cases.push(("approveNodes", v));
    let mut v = base();
    v["approveNodes"] = json!([node(1, (0..101).map(user).collect())]);
    cases.push(("approveNodes[0].approveUsers", v));
    let mut v = base();
    // 3 nodes of 70: each node within bounds, 210 distinct users in all.
    v["approveNodes"] = json!((0..3)
        .map(|n| node(n + 1, (n * 70..n * 70 + 70).map(user).collect()))
        .collect::<Vec<_>>());
    cases.push(("approveNodes", v));
    let mut v = base();
    v["tenantId"] = json!(long);
    cases.push(("tenantId", v));
    let mut v = base();
    v["applyId"] = json!("7206#426532800002");
    cases.push(("applyId", v));
    let mut v = base();
    v["applyId"] = json!("72064\u{0001}26532800002");
    cases.push(("applyId", v));
    let mut v = base();
    v["applyUserInfo"]["userId"] = json!(long);
    cases.push(("applyUserInfo.userId", v));
    let mut v = base();
    v["approveNodes"][0]["approveUsers"][1]["userSourceId"] = json!("0917#452163");
    cases.push(("approveNodes[0].approveUsers[1].userSourceId", v));
    let mut v = base();
    v["approveNodes"][1]["approveUsers"][0]["userId"] = json!("3000\n00925");
    cases.push(("approveNodes[1].approveUsers[0].userId", v));
    let mut v = base();
    v["title"] = json!("t".repeat(1001));
    cases.push(("title", v));
    cases
}

fn assert_names(body: &Value, key: &str, field: &str) {
    let msg = body[key].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(&format!("{field}:")) || msg.starts_with(&format!("{field} ")),
        "error names {field}: {body}"
    );
}

#[tokio::test]
async fn oversized_submissions_are_refused_by_field_without_a_dynamodb_call() {
    let (b, calls) = counting_bridge(Options::default()).await;
    for (field, v) in bad_submissions() {
        let (status, body) = b.create(v.to_string().as_bytes()).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["errorCode"], "InvalidField", "{field}: {body}");
        assert_names(&body, "errorMessage", field);
        assert_eq!(
            calls.take(),
            Vec::<&str>::new(),
            "{field} made DynamoDB calls"
        );
    }
    // At the bounds exactly, the same shapes are accepted (they fail later, on mapping, as they
    // should: those users are not mapped), so the bounds refuse no legitimate submission.
    let mut v = base();
    v["approveNodes"] = json!((0..20)
        .map(|n| node(n + 1, (n * 10..n * 10 + 10).map(user).collect()))
        .collect::<Vec<_>>());
    v["applyUserInfo"]["userId"] = json!("u0");
    v["title"] = json!("t".repeat(1000));
    v["applyId"] = json!("7".repeat(128));
    let (status, body) = b.create(v.to_string().as_bytes()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorCode"], "UnmappedUser", "{body}");
    assert!(!calls.take().is_empty());
}

#[tokio::test]
async fn ops_and_dataphin_parameters_are_bounded_without_a_dynamodb_call() {
    let (b, calls) = counting_bridge(Options::default()).await;
    let long = "x".repeat(129);
    let ops_cases: Vec<(Function, &str, String, Vec<u8>, &str)> = vec![
        (
            Function::Query,
            "GET",
            "/approvals?offset=10001".into(),
            vec![],
            "offset",
        ),
        (
            Function::Query,
            "GET",
            "/approvals?offset=1000000000".into(),
            vec![],
            "offset",
        ),
        (
            Function::Query,
            "GET",
            format!("/approvals?workspace_id={long}"),
            vec![],
            "workspace_id",
        ),
        (
            Function::Query,
            "GET",
            "/approvals?approval_id=tk%23x".into(),
            vec![],
            "approval_id",
        ),
        (
            Function::Query,
            "GET",
            format!("/approvals/{long}"),
            vec![],
            "id",
        ),
        (
            Function::Withdraw,
            "POST",
            "/approvals/tk-000000000000000000000000/withdraw".into(),
            json!({"operator": long, "reason": "duplicate"})
                .to_string()
                .into_bytes(),
            "operator",
        ),
        (
            Function::Withdraw,
            "POST",
            "/approvals/tk-000000000000000000000000/withdraw".into(),
            json!({"operator": "ops.jane", "reason": long})
                .to_string()
                .into_bytes(),
            "reason",
        ),
        (
            Function::Admin,
            "PUT",
            format!("/user-mappings/{TENANT}/{long}"),
            json!({"backend_user_id": "dt-x"}).to_string().into_bytes(),
            "userId",
        ),
        (
            Function::Admin,
            "GET",
            format!("/user-mappings/{long}/300000913"),
            vec![],
            "tenantId",
        ),
        (
            Function::Admin,
            "DELETE",
            format!("/user-mappings/{TENANT}/a%23b"),
            vec![],
            "userId",
        ),
    ];
    for (function, method, path, body, field) in ops_cases {
        let (status, reply) = b.ops(function, method, &path, &body).await;
        assert_eq!(status, 400, "{method} {path}: {reply}");
        assert_eq!(reply["error_code"], "InvalidField", "{path}: {reply}");
        assert_names(&reply, "error_msg", field);
        assert_eq!(
            calls.take(),
            Vec::<&str>::new(),
            "{method} {path} made DynamoDB calls"
        );
    }
    // offset 10,000 itself is a page (of nothing here).
    let (status, reply) = b
        .ops(Function::Query, "GET", "/approvals?offset=10000", b"")
        .await;
    assert_eq!(status, 200, "{reply}");
    calls.take();

    // Dataphin's terminate: ids and operator bounded like the rest.
    let path = format!(
        "/dataphin/bpms/processinstance/terminate?{}",
        b.auth_query()
    );
    for (body, field) in [
        (
            json!({"tenantId": TENANT, "applyId": long, "operatorUserId": "300000913", "reason": "r"}),
            "applyId",
        ),
        (
            json!({"tenantId": "a#b", "applyId": "1", "operatorUserId": "300000913", "reason": "r"}),
            "tenantId",
        ),
        (
            json!({"tenantId": TENANT, "applyId": "1", "operatorUserId": long, "reason": "r"}),
            "operatorUserId",
        ),
        (
            json!({"tenantId": TENANT, "applyId": "1", "operatorUserId": "300000913", "reason": long}),
            "reason",
        ),
    ] {
        let (status, reply) = b
            .request(
                Function::Withdraw,
                "POST",
                &path,
                &[("content-type", "application/json")],
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(status, 400, "{field}: {reply}");
        assert_eq!(reply["errorCode"], "InvalidField", "{reply}");
        assert_names(&reply, "errorMessage", field);
        assert_eq!(
            calls.take(),
            Vec::<&str>::new(),
            "terminate with bad {field} made DynamoDB calls"
        );
    }
}

#[tokio::test]
async fn imports_are_bounded_in_rows_and_key_sizes_without_a_dynamodb_call() {
    let (b, calls) = counting_bridge(Options::default()).await;
    let header = "tenant_id,user_id,user_source_id,user_name,backend_user_id,backend_dept_id\n";
    let mut csv = header.to_string();
    for i in 0..10_001 {
        csv.push_str(&format!("{TENANT},u{i},s{i},user {i},dt-{i},\n"));
    }
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
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error_code"], "InvalidField", "{reply}");
    assert!(
        reply["error_msg"].as_str().unwrap().contains("10000"),
        "{reply}"
    );
    assert_eq!(calls.take(), Vec::<&str>::new());

    let rows: Vec<Value> = (0..10_001)
        .map(|i| json!({"tenant_id": TENANT, "user_id": format!("u{i}"), "backend_user_id": "x"}))
        .collect();
    let (status, reply) = b
        .ops(
            Function::Admin,
            "POST",
            "/user-mappings/import",
            json!({"mappings": rows}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error_msg"]
            .as_str()
            .unwrap()
            .starts_with("mappings:"),
        "{reply}"
    );
    assert_eq!(calls.take(), Vec::<&str>::new());

    // Keys beyond DynamoDB's sizes (or with the separator) are reported by line and field.
    let long = "k".repeat(600);
    let rows = json!({"mappings": [
        {"tenant_id": TENANT, "user_id": "ok1", "backend_user_id": "dt-ok"},
        {"tenant_id": TENANT, "user_id": long, "backend_user_id": "dt-1"},
        {"tenant_id": TENANT, "user_id": "u2", "user_source_id": "a#b", "backend_user_id": "dt-2"},
        {"tenant_id": TENANT, "user_id": "u3", "backend_user_id": long},
        {"tenant_id": TENANT, "user_id": "u4", "backend_user_id": "dt-4", "user_name": long},
    ]});
    let (status, reply) = b
        .ops(
            Function::Admin,
            "POST",
            "/user-mappings/import",
            rows.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    let errors: Vec<(u64, String)> = reply["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            (2, "user_id".to_string()),
            (3, "user_source_id".to_string()),
            (4, "backend_user_id".to_string()),
            (5, "user_name".to_string()),
        ],
        "{reply}"
    );
    assert_eq!(calls.take(), Vec::<&str>::new());

    // 10,000 rows exactly are imported.
    let mut csv = header.to_string();
    for i in 0..10_000 {
        csv.push_str(&format!("{TENANT},u{i},s{i},user {i},dt-{i},\n"));
    }
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
    assert_eq!(reply["imported"], 10_000);
}
