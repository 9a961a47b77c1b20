//! User mapping ops API end to end (SPEC 7): one row at a time, paged listing, bulk import (CSV and
//! JSON, all or nothing), admin auth, and the mappings actually steering a create.

use std::collections::HashSet;

use integration_tests::harness::*;
use serde_json::{json, Value};

const HEADER: &str = "tenant_id,user_id,user_source_id,user_name,backend_user_id,backend_dept_id";

async fn admin(b: &Bridge, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    b.ops(Function::Admin, method, path, body).await
}

async fn import(b: &Bridge, content_type: &str, body: &[u8]) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    b.request(
        Function::Admin,
        "POST",
        "/user-mappings/import",
        &[("authorization", &auth), ("content-type", content_type)],
        body,
    )
    .await
}

async fn get(b: &Bridge, tenant: &str, user: &str) -> (u16, Value) {
    admin(b, "GET", &format!("/user-mappings/{tenant}/{user}"), b"").await
}

#[tokio::test]
async fn put_get_delete_one_mapping() {
    let b = Bridge::start(Options {
        seed_mappings: false,
        ..Options::default()
    })
    .await;
    let (status, reply) = get(&b, TENANT, "300000999").await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(reply["error_code"], "NotFound");

    let row = json!({"user_source_id": "0917452163-9999", "user_name": "frank.wu", "backend_user_id": "dt-frank", "backend_dept_id": "3001"});
    let (status, reply) = admin(
        &b,
        "PUT",
        &format!("/user-mappings/{TENANT}/300000999"),
        row.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let expected = json!({"tenant_id": TENANT, "user_id": "300000999", "user_source_id": "0917452163-9999",
                          "user_name": "frank.wu", "backend_user_id": "dt-frank", "backend_dept_id": "3001"});
    assert_eq!(reply, expected);
    let (status, reply) = get(&b, TENANT, "300000999").await;
    assert_eq!((status, reply), (200, expected));

    // PUT replaces the whole row: the department is optional and goes away when left out.
    let row = json!({"user_source_id": "0917452163-9999", "user_name": "frank.wu", "backend_user_id": "dt-frank-2"});
    let (status, reply) = admin(
        &b,
        "PUT",
        &format!("/user-mappings/{TENANT}/300000999"),
        row.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (_, reply) = get(&b, TENANT, "300000999").await;
    assert_eq!(reply["backend_user_id"], "dt-frank-2");
    assert_eq!(reply["backend_dept_id"], Value::Null);

    // Tenants are separate.
    let (status, _) = get(&b, "other-tenant", "300000999").await;
    assert_eq!(status, 404);

    let (status, reply) = admin(
        &b,
        "DELETE",
        &format!("/user-mappings/{TENANT}/300000999"),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = get(&b, TENANT, "300000999").await;
    assert_eq!(status, 404, "{reply}");
    let (status, reply) = admin(
        &b,
        "DELETE",
        &format!("/user-mappings/{TENANT}/300000999"),
        b"",
    )
    .await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(reply["error_code"], "NotFound");
}

#[tokio::test]
async fn put_refuses_a_bad_row_naming_the_field() {
    let b = Bridge::start(Options {
        seed_mappings: false,
        ..Options::default()
    })
    .await;
    let path = format!("/user-mappings/{TENANT}/300000999");
    let cases: [(Value, &str); 4] = [
        (
            json!({"user_source_id": "s", "user_name": "frank.wu"}),
            "backend_user_id",
        ),
        (
            json!({"user_name": "frank.wu", "backend_user_id": "  "}),
            "backend_user_id",
        ),
        (
            json!({"backend_user_id": "dt-frank", "backend_dept_id": "sales"}),
            "backend_dept_id",
        ),
        (
            json!({"backend_user_id": "dt-frank", "backend_userid": "typo"}),
            "backend_userid",
        ),
    ];
    for (row, field) in cases {
        let (status, reply) = admin(&b, "PUT", &path, row.to_string().as_bytes()).await;
        assert_eq!(status, 400, "{row}: {reply}");
        assert_eq!(reply["error_code"], "InvalidField", "{reply}");
        assert!(
            reply["error_msg"].as_str().unwrap().contains(field),
            "{row}: names {field}: {reply}"
        );
    }
    let (status, reply) = admin(&b, "PUT", &path, b"{\"backend_user_id\": ").await;
    assert_eq!(
        (status, reply["error_code"].as_str()),
        (400, Some("InvalidJson")),
        "{reply}"
    );
    let (status, _) = get(&b, TENANT, "300000999").await;
    assert_eq!(status, 404, "nothing written");
}

#[tokio::test]
async fn list_pages_through_every_mapping_once() {
    let b = Bridge::start(Options::default()).await;
    let rows: Vec<Value> = (0..12)
        .map(|i| json!({"tenant_id": TENANT, "user_id": format!("4000000{i:02}"), "user_source_id": format!("src-{i}"),
                        "user_name": format!("user{i}"), "backend_user_id": format!("dt-user{i}")}))
        .chain((0..3).map(|i| json!({"tenant_id": "other-tenant", "user_id": format!("5000000{i:02}"), "backend_user_id": format!("dt-other{i}")})))
        .collect();
    let (status, reply) = import(
        &b,
        "application/json",
        json!({"mappings": rows}).to_string().as_bytes(),
    )
    .await;
    assert_eq!((status, &reply), (200, &json!({"imported": 15})));

    let page_through = |filter: &'static str| {
        let b = &b;
        async move {
            let mut seen: Vec<String> = Vec::new();
            let mut token: Option<String> = None;
            for _ in 0..20 {
                let mut path = format!("/user-mappings?limit=4{filter}");
                if let Some(t) = &token {
                    path.push_str(&format!("&next_token={t}"));
                }
                let (status, page) = admin(b, "GET", &path, b"").await;
                assert_eq!(status, 200, "{page}");
                let items = page["mappings"].as_array().expect("mappings");
                assert!(items.len() <= 4, "limit holds: {page}");
                seen.extend(items.iter().map(|m| {
                    format!(
                        "{}/{}",
                        m["tenant_id"].as_str().unwrap(),
                        m["user_id"].as_str().unwrap()
                    )
                }));
                match page["next_token"].as_str() {
                    Some(t) => token = Some(t.to_string()),
                    None => return seen,
                }
            }
            panic!("paging does not end: {seen:?}");
        }
    };
    let all = page_through("").await;
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no repeats: {all:?}");
    assert_eq!(all.len(), 12 + 3 + FIXTURE_USERS.len(), "{all:?}");

    let tenant = page_through("&tenant_id=300073302").await;
    let unique: HashSet<&String> = tenant.iter().collect();
    assert_eq!(unique.len(), tenant.len(), "no repeats: {tenant:?}");
    assert_eq!(tenant.len(), 12 + FIXTURE_USERS.len());
    assert!(
        tenant.iter().all(|k| k.starts_with("300073302/")),
        "{tenant:?}"
    );

    // Tokens the list did not issue, or issued for another tenant's list, are refused, not a restart.
    let (_, first) = admin(&b, "GET", "/user-mappings?limit=4&tenant_id=300073302", b"").await;
    let token = first["next_token"].as_str().expect("more pages");
    for path in [
        "/user-mappings?limit=4&next_token=not-a-token".to_string(),
        format!("/user-mappings?limit=4&tenant_id=other-tenant&next_token={token}"),
        "/user-mappings?limit=0".to_string(),
        "/user-mappings?limit=abc".to_string(),
    ] {
        let (status, page) = admin(&b, "GET", &path, b"").await;
        assert_eq!(status, 400, "{path}: {page}");
        assert_eq!(page["error_code"], "InvalidField", "{path}: {page}");
    }
}

#[tokio::test]
async fn csv_and_json_imports_write_every_row() {
    let b = Bridge::start(Options {
        seed_mappings: false,
        ..Options::default()
    })
    .await;
    // Windows line ends and a byte order mark, as a spreadsheet exports them.
    let csv = format!(
        "\u{feff}{HEADER}\r\n{TENANT},300000913,0917452163-1398,alice.wang,dt-alice,1001\r\n\
         {TENANT},300000914,0917452163-2044,bob.li,dt-bob,\r\n\r\n{TENANT},300000920,,carol.zhao,dt-carol,1002\r\n"
    );
    let (status, reply) = import(&b, "Text/CSV; charset=utf-8", csv.as_bytes()).await;
    assert_eq!((status, &reply), (200, &json!({"imported": 3})), "{reply}");
    let (_, alice) = get(&b, TENANT, "300000913").await;
    assert_eq!(
        alice,
        json!({"tenant_id": TENANT, "user_id": "300000913", "user_source_id": "0917452163-1398", "user_name": "alice.wang",
               "backend_user_id": "dt-alice", "backend_dept_id": "1001"})
    );
    let (_, bob) = get(&b, TENANT, "300000914").await;
    assert_eq!(bob["backend_dept_id"], Value::Null);
    let (_, carol) = get(&b, TENANT, "300000920").await;
    assert_eq!(carol["backend_user_id"], "dt-carol");

    let json_rows = json!({"mappings": [
        {"tenant_id": TENANT, "user_id": "300000925", "user_source_id": "0917452163-4471", "user_name": "dave.sun", "backend_user_id": "dt-dave", "backend_dept_id": "1001"},
        {"tenant_id": TENANT, "user_id": "300000914", "user_source_id": "0917452163-2044", "user_name": "bob.li", "backend_user_id": "dt-bob-new"},
    ]});
    let (status, reply) = import(&b, "application/json", json_rows.to_string().as_bytes()).await;
    assert_eq!((status, &reply), (200, &json!({"imported": 2})), "{reply}");
    let (_, dave) = get(&b, TENANT, "300000925").await;
    assert_eq!(dave["backend_user_id"], "dt-dave");
    let (_, bob) = get(&b, TENANT, "300000914").await;
    assert_eq!(
        bob["backend_user_id"], "dt-bob-new",
        "an import overwrites the row"
    );

    // More rows than one DynamoDB batch.
    let mut big = String::from(HEADER);
    for i in 0..60 {
        big.push_str(&format!("\nbulk,60000{i:02},,user{i},dt-bulk{i},"));
    }
    let (status, reply) = import(&b, "text/csv", big.as_bytes()).await;
    assert_eq!((status, &reply), (200, &json!({"imported": 60})), "{reply}");
    let (status, last) = get(&b, "bulk", "6000059").await;
    assert_eq!(
        (status, last["backend_user_id"].as_str()),
        (200, Some("dt-bulk59"))
    );

    // The imported rows steer a create.
    let (status, reply) = b.create(&fixture("14_data_download.json")).await;
    assert_eq!(status, 200, "{reply}");
    let create = &b.dingtalk.creates()[0];
    assert_eq!(create["originatorUserId"], "dt-alice");
    assert_eq!(
        create["approvers"],
        json!([{"actionType": "NONE", "userIds": ["dt-bob-new"]}, {"actionType": "NONE", "userIds": ["dt-dave"]}])
    );
}

/// The (line, field) pairs of an import's `errors`.
fn error_lines(reply: &Value) -> Vec<(u64, String)> {
    let errors = reply["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors listed: {reply}"));
    for e in errors {
        assert!(
            e["error"].as_str().is_some_and(|m| !m.is_empty()),
            "each error says what is wrong: {e}"
        );
    }
    errors
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().expect("line"),
                e["field"].as_str().expect("field").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_import_with_bad_rows_writes_nothing() {
    let b = Bridge::start(Options {
        seed_mappings: false,
        ..Options::default()
    })
    .await;
    // Lines 2 and 4 are good; line 3 has no backend user id, line 5 a department that is not a number.
    let csv = format!(
        "{HEADER}\n{TENANT},300000913,0917452163-1398,alice.wang,dt-alice,1001\n{TENANT},300000914,0917452163-2044,bob.li,,\n\
         {TENANT},300000920,0917452163-3310,carol.zhao,dt-carol,\n{TENANT},300000925,0917452163-4471,dave.sun,dt-dave,sales\n"
    );
    let (status, reply) = import(&b, "text/csv", csv.as_bytes()).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error_code"], "InvalidField");
    assert!(reply["error_msg"].is_string());
    assert_eq!(
        error_lines(&reply),
        vec![
            (3, "backend_user_id".to_string()),
            (5, "backend_dept_id".to_string())
        ]
    );
    for user in ["300000913", "300000914", "300000920", "300000925"] {
        let (status, _) = get(&b, TENANT, user).await;
        assert_eq!(status, 404, "{user}: nothing written");
    }

    // The same in JSON: rows count from 1.
    let rows = json!({"mappings": [
        {"tenant_id": TENANT, "user_id": "300000913", "backend_user_id": "dt-alice"},
        {"tenant_id": TENANT, "backend_user_id": "dt-bob"},
        {"tenant_id": TENANT, "user_id": "300000920", "backend_user_id": "dt-carol"},
        {"tenant_id": TENANT, "user_id": "300000925", "backend_user_id": ["dt-dave"]},
    ]});
    let (status, reply) = import(&b, "application/json", rows.to_string().as_bytes()).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(
        error_lines(&reply),
        vec![
            (2, "user_id".to_string()),
            (4, "backend_user_id".to_string())
        ]
    );
    let (status, _) = get(&b, TENANT, "300000913").await;
    assert_eq!(status, 404, "nothing written");

    // A row given twice is an error too, not a silent last-one-wins.
    let twice = format!("{HEADER}\n{TENANT},300000913,,alice.wang,dt-alice,\n{TENANT},300000913,,alice.wang,dt-alice-2,\n");
    let (status, reply) = import(&b, "text/csv", twice.as_bytes()).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(error_lines(&reply), vec![(3, "user_id".to_string())]);

    // A row with the wrong number of cells names its line.
    let short = format!("{HEADER}\n{TENANT},300000913,dt-alice\n");
    let (status, reply) = import(&b, "text/csv", short.as_bytes()).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(
        error_lines(&reply).iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![2]
    );

    // The header line must be exactly SPEC 7's.
    let wrong = format!("tenant_id,user_id,backend_user_id\n{TENANT},300000913,dt-alice\n");
    let (status, reply) = import(&b, "text/csv", wrong.as_bytes()).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error_msg"].as_str().unwrap().contains(HEADER),
        "{reply}"
    );
    let (status, reply) = import(&b, "application/json", br#"{"rows": []}"#).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error_msg"].as_str().unwrap().contains("mappings"),
        "{reply}"
    );
    let (status, _) = get(&b, TENANT, "300000913").await;
    assert_eq!(status, 404, "nothing written");
}

#[tokio::test]
async fn the_mapping_api_needs_the_admin_token() {
    let b = Bridge::start(Options::default()).await;
    let row = json!({"backend_user_id": "dt-mallory"}).to_string();
    let csv = format!("{HEADER}\n{TENANT},300000913,,alice.wang,dt-mallory,\n");
    let requests: [(&str, &str, &[u8]); 5] = [
        ("GET", "/user-mappings", b""),
        ("GET", "/user-mappings/300073302/300000913", b""),
        ("PUT", "/user-mappings/300073302/300000913", row.as_bytes()),
        ("DELETE", "/user-mappings/300073302/300000913", b""),
        ("POST", "/user-mappings/import", csv.as_bytes()),
    ];
    let wrong = "Bearer not-the-admin-token".to_string();
    let bare = ADMIN_TOKEN.to_string();
    for headers in [
        vec![],
        vec![("authorization", wrong.as_str())],
        vec![("authorization", bare.as_str())],
    ] {
        for (method, path, body) in requests {
            let mut h = headers.clone();
            h.push((
                "content-type",
                if path.ends_with("import") {
                    "text/csv"
                } else {
                    "application/json"
                },
            ));
            let (status, reply) = b.request(Function::Admin, method, path, &h, body).await;
            assert_eq!(status, 401, "{method} {path} with {headers:?}: {reply}");
            assert!(reply["error_code"].is_string(), "{reply}");
            assert!(!reply.to_string().contains(ADMIN_TOKEN), "{reply}");
        }
    }
    let (status, alice) = get(&b, TENANT, "300000913").await;
    assert_eq!(status, 200);
    assert_eq!(
        alice["backend_user_id"], "dt-alice",
        "nothing changed without the token"
    );
}

#[tokio::test]
async fn csv_import_reads_quoted_fields() {
    let b = Bridge::start(Options::default()).await;
    let csv = "\"tenant_id\",\"user_id\",\"user_source_id\",\"user_name\",\"backend_user_id\",\"backend_dept_id\"\n\
               300073302,900001,src-1,\"Li, Bob\",dt-quoted,\"1001\"\n";
    let (status, reply) = import(&b, "text/csv", csv.as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["imported"], 1);
    let (status, row) = get(&b, "300073302", "900001").await;
    assert_eq!(status, 200, "{row}");
    assert_eq!(row["user_name"], "Li, Bob");
    assert_eq!(row["backend_user_id"], "dt-quoted");
    assert_eq!(row["backend_dept_id"], "1001");
}
