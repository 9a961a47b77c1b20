//! Every contract fixture parses (or is refused) as SPEC section 4 says, with the facts the
//! rules engine will test.

mod common;

use models::content::{Content, PermissionRequest};
use models::{ModelError, Relation, Scenario, Submission};
use serde_json::{json, Value};

fn parse_value(value: &Value) -> Result<Submission, ModelError> {
    Submission::parse(&serde_json::to_vec(value).unwrap())
}

fn permission(sub: &Submission) -> &PermissionRequest {
    sub.content
        .permission()
        .unwrap_or_else(|| panic!("not a permission request: {:?}", sub.content.scenario()))
}

#[test]
fn every_submission_fixture_parses_into_its_scenario() {
    let expected = [
        ("01_physical_table_low", Scenario::TablePermission, "AUTH"),
        ("02_physical_table_high", Scenario::TablePermission, "AUTH"),
        ("03_datasource_table", Scenario::DatasourceTable, "AUTH"),
        ("04_code_review", Scenario::CodeReview, "CODE_REVIEW"),
        ("05_release", Scenario::Release, "PUBLISH"),
        ("06_data_service", Scenario::DataService, "AUTH"),
        ("07_datasource", Scenario::Datasource, "AUTH"),
        (
            "08_conceptual_design",
            Scenario::ConceptualDesign,
            "BIZ_PLANNING",
        ),
        ("09_global_param", Scenario::Variable, "AUTH"),
        ("10_secret_key", Scenario::SecretKey, "AUTH"),
        ("11_function", Scenario::Function, "AUTH"),
        ("12_change_owner", Scenario::ChangeOwner, "DEFAULT"),
        (
            "13_standard_review",
            Scenario::StandardReview,
            "STANDARD_APPROVAL",
        ),
        ("14_data_download", Scenario::DataDownload, "DEFAULT"),
        ("15_asset_topic", Scenario::TopicRelease, "DEFAULT"),
        ("16_row_permission", Scenario::RowPermission, "AUTH"),
        ("17_plain_text_content", Scenario::FreeText, "DEFAULT"),
    ];
    let all = common::fixtures("submissions");
    assert_eq!(
        all.len(),
        expected.len(),
        "a fixture without an expectation"
    );
    for ((stem, body), (want_stem, scenario, kind)) in all.iter().zip(expected) {
        assert_eq!(stem, want_stem);
        let sub = Submission::parse(body).unwrap_or_else(|e| panic!("{stem} refused: {e}"));
        let facts = sub.facts();
        assert_eq!(facts.scenario, scenario, "{stem}");
        assert_eq!(sub.content.scenario(), scenario, "{stem}");
        assert_eq!(facts.submission_type, kind, "{stem}");
        assert_eq!(facts.parsed, scenario != Scenario::FreeText, "{stem}");
        assert_eq!(sub.tenant_id, "300073302");
        assert_eq!(sub.applicant.user_id, "300000913");
        assert_eq!(sub.applicant.user_source_id, "0917452163-1398");
        assert!(!sub.approve_nodes.is_empty());
    }
}

#[test]
fn low_risk_table_request_facts() {
    let sub = common::submission("01_physical_table_low");
    let facts = sub.facts();
    assert_eq!(facts.resource_type.as_deref(), Some("PHYSICAL_TABLE"));
    assert_eq!(facts.operations, ["SELECT"]);
    assert_eq!(facts.env.as_deref(), Some("PROD"));
    assert_eq!(facts.project.as_deref(), Some("sales_dw"));
    assert_eq!(facts.security_levels, vec![Some("L1".to_string()); 3]);
    assert_eq!(facts.periods.len(), 1);
    assert_eq!(facts.periods[0].period_type, "DAYS_30");
    assert_eq!(facts.periods[0].days, Some(30));
    assert_eq!(facts.periods[0].end.as_deref(), Some("2026-12-24"));

    let p = permission(&sub);
    let table = &p.resources[0];
    assert_eq!(table.resource_cn_name.as_deref(), Some("门店维表"));
    let columns: Vec<_> = table
        .children
        .iter()
        .map(|c| {
            (
                c.name(),
                c.column_type(),
                c.is_pk(),
                c.is_partition(),
                c.classification(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("store_id", Some("bigint"), true, false, Some("contact")),
            ("store_name", Some("string"), false, false, Some("contact")),
            ("ds", Some("string"), false, true, Some("contact")),
        ]
    );
}

#[test]
fn high_risk_table_request_facts() {
    let sub = common::submission("02_physical_table_high");
    let facts = sub.facts();
    let levels: Vec<_> = facts.security_levels.iter().map(|l| l.as_deref()).collect();
    assert_eq!(levels, [Some("L2"), Some("L4"), Some("L4")]);
    assert_eq!(facts.operations, ["SELECT", "UPDATE"]);
    let kinds: Vec<_> = facts
        .periods
        .iter()
        .map(|p| p.period_type.as_str())
        .collect();
    assert_eq!(kinds, ["LONG_TERM", "DAYS_30"]);
    assert!(facts.periods[0].is_long_term());
    assert_eq!(facts.periods[0].days, None);

    // Two nodes, in order, with Dataphin's relations.
    let nodes: Vec<_> = sub
        .approve_nodes
        .iter()
        .map(|n| (n.order, n.relation, n.users.len()))
        .collect();
    assert_eq!(nodes, [(1, Relation::And, 2), (2, Relation::Or, 1)]);
    let users: Vec<_> = sub.users().iter().map(|u| u.user_name.as_str()).collect();
    assert_eq!(users, ["alice.wang", "bob.li", "carol.zhao", "dave.sun"]);
    let grantee = &permission(&sub).grant_to_users[1].account;
    assert_eq!(grantee.account_type.as_deref(), Some("USER_GROUP"));
}

#[test]
fn datasource_table_reads_the_capitalised_environment_keys() {
    let sub = common::submission("03_datasource_table");
    let env = permission(&sub).bpms_environment.as_ref().unwrap();
    assert_eq!(env.business_system.as_deref(), Some("crm"));
    assert_eq!(env.data_base_name.as_deref(), Some("crm_mysql"));
    let facts = sub.facts();
    // A column without a security level is still a column touched.
    assert_eq!(facts.security_levels, vec![None]);
    assert_eq!(facts.resource_type.as_deref(), Some("DATASOURCE_TABLE"));
    assert_eq!(facts.operations, ["SELECT"]);
}

#[test]
fn code_review_release_and_design_objects_are_typed() {
    let Content::CodeReview(review) = common::submission("04_code_review").content else {
        panic!("04 is a code review")
    };
    assert_eq!(
        review.apply_object.object_name.as_deref(),
        Some("etl_daily_sales")
    );
    assert!(review
        .apply_object
        .code_content
        .as_deref()
        .unwrap()
        .starts_with("INSERT OVERWRITE TABLE dws_sales"));
    assert_eq!(review.apply_object.global_variable, ["bizdate"]);
    assert_eq!(
        common::submission("04_code_review")
            .facts()
            .project
            .as_deref(),
        Some("sales_dw")
    );

    let release_sub = common::submission("05_release");
    let Content::Release(release) = &release_sub.content else {
        panic!("05 is a release")
    };
    assert_eq!(
        release.approve_user_names.as_deref(),
        Some(&["carol.zhao".to_string()][..])
    );
    let objects: Vec<_> = release
        .publish_records
        .iter()
        .map(|r| {
            (
                r.object_name.as_deref().unwrap(),
                r.change_type.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        objects,
        [("etl_daily_sales", "CREATE"), ("gmv_7d", "UPDATE")]
    );
    // The decoded list, not the string, is what the backend is given.
    assert_eq!(
        release_sub.content.to_value()["approveUserNames"],
        json!(["carol.zhao"])
    );

    let Content::ConceptualDesign(design) = common::submission("08_conceptual_design").content
    else {
        panic!("08 is a conceptual design")
    };
    assert_eq!(
        design.apply_object.biz_entity_id.as_deref(),
        Some("100000871")
    );
    assert_eq!(
        design.apply_object.biz_process_cn.as_deref(),
        Some("门店到访")
    );
}

#[test]
fn data_service_short_time_period_and_levels() {
    let sub = common::submission("06_data_service");
    let facts = sub.facts();
    assert_eq!(facts.resource_type.as_deref(), Some("OS_APP"));
    assert_eq!(facts.operations, ["USE"]);
    assert_eq!(facts.env.as_deref(), Some("PROD"));
    assert_eq!(facts.security_levels, [Some("MIDDLE".to_string())]);
    let period = &facts.periods[0];
    assert_eq!(period.period_type, "SHORT_TIME");
    assert_eq!(period.start.as_deref(), Some("2026-11-24"));
    assert_eq!(period.days, Some(30));
}

#[test]
fn other_permission_scenarios_facts() {
    let cases = [
        ("07_datasource", "DATASOURCE", "SYNC_READ"),
        ("09_global_param", "GLOBAL_PARAM", "USE"),
        ("10_secret_key", "SECRET_KEY", "SECRET_KEY_VIEW"),
        ("11_function", "FUNCTION", "SELECT"),
        ("16_row_permission", "ROW_PERMISSION", "SELECT_ROW"),
    ];
    for (stem, resource_type, operation) in cases {
        let facts = common::submission(stem).facts();
        assert_eq!(
            facts.resource_type.as_deref(),
            Some(resource_type),
            "{stem}"
        );
        assert_eq!(facts.operations, [operation], "{stem}");
        assert!(facts.parsed, "{stem}");
    }
    let key = common::submission("10_secret_key");
    let props = permission(&key).resources[0].properties.as_ref().unwrap();
    assert_eq!(props.owner_manage_only.as_deref(), Some("true"));
}

#[test]
fn owner_change_and_standard_review_fields() {
    let Content::ChangeOwner(change) = common::submission("12_change_owner").content else {
        panic!("12 is an owner change")
    };
    assert_eq!(change.old_owner_id.as_deref(), Some("300000913"));
    assert_eq!(change.new_owner_name.as_deref(), Some("bob.li"));

    let Content::StandardReview(standard) = common::submission("13_standard_review").content else {
        panic!("13 is a standard review")
    };
    assert_eq!(standard.standard_id.as_deref(), Some("std_771"));
    assert_eq!(standard.attribute_with_value_list.len(), 2);
    assert_eq!(
        standard.lookup_table_relations[0]
            .lookup_table_name
            .as_deref(),
        Some("carrier")
    );
}

#[test]
fn data_download_levels_include_the_highest_level() {
    let sub = common::submission("14_data_download");
    let facts = sub.facts();
    let levels: Vec<_> = facts.security_levels.iter().map(|l| l.as_deref()).collect();
    assert_eq!(levels, [Some("L3"), Some("L1"), Some("L3")]);
    assert_eq!(facts.project.as_deref(), Some("sales_dw"));
    let Content::DataDownload(download) = &sub.content else {
        panic!("14 is a download")
    };
    assert_eq!(
        download.sql_content.as_deref(),
        Some("SELECT city, mobile FROM ods_customer LIMIT 1000")
    );
    assert_eq!(
        download.table_info_list[0].table_name.as_deref(),
        Some("ods_customer")
    );
}

#[test]
fn topic_release_reads_nested_folders_and_loose_timestamps() {
    let sub = common::submission("15_asset_topic");
    assert_eq!(sub.facts().resource_type.as_deref(), Some("ASSET_TOPIC"));
    let Content::TopicRelease(topic) = &sub.content else {
        panic!("15 is a topic release")
    };
    let orders = &topic.records[0].cats[0];
    assert_eq!(orders.nm.as_deref(), Some("Orders"));
    assert_eq!(
        orders.mt.as_ref().and_then(|m| m.as_i64()),
        Some(1_763_971_200_000)
    );
    assert_eq!(orders.dt[0].log[0].af.as_deref(), Some("Order facts"));
    let refunds = &orders.sub[0];
    assert_eq!(refunds.nm.as_deref(), Some("Refunds"));
    assert_eq!(refunds.lvl.as_ref().and_then(|l| l.as_i64()), Some(2));
    // `mt` was a string on the folder and a number on the sub-folder: both kept as sent.
    let value = sub.content.to_value();
    assert_eq!(value["records"][0]["cats"][0]["mt"], json!("1763971200000"));
    assert_eq!(
        value["records"][0]["cats"][0]["sub"][0]["mt"],
        json!(1_763_971_200_000u64)
    );
}

#[test]
fn row_permission_table_is_decoded() {
    let sub = common::submission("16_row_permission");
    let resource = &permission(&sub).resources[0];
    let props = resource.properties.as_ref().unwrap();
    let tables = props.row_permission_table.as_ref().unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].resource_name.as_deref(), Some("dwd_order"));
    assert_eq!(tables[0].column_name.as_deref(), Some("region"));
    assert_eq!(
        tables[0].tenant_id.as_ref().and_then(|t| t.as_i64()),
        Some(300_073_302)
    );
    assert_eq!(
        props.row_permission_desc.as_deref(),
        Some("Regional managers see their region")
    );
    let rules: Vec<_> = resource.children.iter().map(|c| c.name()).collect();
    assert_eq!(rules, ["East", "North"]);
    let facts = sub.facts();
    // Rules are not columns: no levels to judge on.
    assert!(facts.security_levels.is_empty());
    assert_eq!(facts.env, None);
    let value = sub.content.to_value();
    assert_eq!(
        value["resources"][0]["properties"]["ROW_PERMISSION_TABLE"][0]["resourceName"],
        "dwd_order"
    );
}

#[test]
fn free_text_is_kept_as_is_and_not_parsed() {
    let sub = common::submission("17_plain_text_content");
    assert_eq!(
        sub.content,
        Content::FreeText("Please approve the quarterly access review.".into())
    );
    assert_eq!(
        sub.content.to_value(),
        json!("Please approve the quarterly access review.")
    );
    assert!(!sub.facts().parsed);
}

#[test]
fn every_invalid_fixture_is_refused_naming_its_field() {
    let expected = [
        ("approve_nodes_not_a_list", Some("approveNodes")),
        ("auth_content_not_json", Some("content")),
        ("empty_apply_id", Some("applyId")),
        ("missing_apply_id", Some("applyId")),
        ("no_applicant", Some("applyUserInfo")),
        (
            "node_without_approvers",
            Some("approveNodes[0].approveUsers"),
        ),
        ("not_an_object", Some("body")),
        ("truncated_json", None),
        (
            "unknown_approve_operator",
            Some("approveNodes[0].approveOperator"),
        ),
    ];
    let all = common::fixtures("invalid");
    assert_eq!(
        all.len(),
        expected.len(),
        "an invalid fixture without an expectation"
    );
    for ((stem, body), (want_stem, field)) in all.iter().zip(expected) {
        assert_eq!(stem, want_stem);
        let err = Submission::parse(body).expect_err(stem);
        match field {
            Some(field) => assert_eq!(err.field_name(), Some(field), "{stem}: {err}"),
            None => assert!(matches!(err, ModelError::InvalidJson(_)), "{stem}: {err}"),
        }
    }
    let err = Submission::parse(&common::fixtures("invalid")[8].1).unwrap_err();
    assert!(
        err.to_string().contains("XOR"),
        "names the bad value: {err}"
    );
}

#[test]
fn unknown_fields_survive_a_round_trip() {
    let mut body = common::fixture_value("01_physical_table_low");
    body["bridgeTrace"] = json!({"hop": 1});
    let mut content: Value = serde_json::from_str(body["content"].as_str().unwrap()).unwrap();
    content["sensitivityNote"] = json!("new in Dataphin 5");
    content["resources"][0]["children"][0]["resourceProperties"]["maskRule"] = json!("last4");
    body["content"] = Value::String(content.to_string());

    let sub = parse_value(&body).unwrap();
    let sent = sub.to_value();
    assert_eq!(sent, body, "the submission as received");
    assert!(
        sent["content"].is_string(),
        "content stays the original string"
    );
    let again = parse_value(&sent).unwrap();
    assert_eq!(again, sub);

    let parsed = sub.content.to_value();
    assert_eq!(parsed["sensitivityNote"], "new in Dataphin 5");
    assert_eq!(
        parsed["resources"][0]["children"][0]["resourceProperties"]["maskRule"],
        "last4"
    );
    assert_eq!(parsed["resources"][0]["resourceName"], "dim_store");
}

#[test]
fn unknown_type_is_handled_as_default() {
    let mut body = common::fixture_value("12_change_owner");
    body["type"] = json!("OWNER_TRANSFER");
    let sub = parse_value(&body).unwrap();
    assert_eq!(sub.submission_type, "DEFAULT");
    assert_eq!(sub.facts().submission_type, "DEFAULT");
    assert_eq!(sub.content.scenario(), Scenario::ChangeOwner);
    assert_eq!(sub.to_value()["type"], "OWNER_TRANSFER", "kept as sent");

    body["type"] = json!("auth");
    assert_eq!(parse_value(&body).unwrap().submission_type, "AUTH");
    body.as_object_mut().unwrap().remove("type");
    assert_eq!(parse_value(&body).unwrap().submission_type, "DEFAULT");
}

#[test]
fn content_may_arrive_as_an_object() {
    let mut body = common::fixture_value("02_physical_table_high");
    let as_string = parse_value(&body).unwrap();
    let decoded: Value = serde_json::from_str(body["content"].as_str().unwrap()).unwrap();
    body["content"] = decoded;
    let as_object = parse_value(&body).unwrap();
    assert_eq!(as_object.content, as_string.content);
    assert_eq!(as_object.facts(), as_string.facts());
    assert!(as_object.to_value()["content"].is_object());
}

#[test]
fn operations_and_operates_are_both_read_and_deduplicated() {
    let body = |content: Value| {
        let mut body = common::fixture_value("01_physical_table_low");
        body["content"] = Value::String(content.to_string());
        parse_value(&body).unwrap().facts()
    };
    let with_operations = body(json!({
        "resourceType": "LOGICAL_TABLE",
        "operations": ["SELECT"],
        "resources": [{"resourceName": "t", "operations": ["SELECT", "ALTER"]}]
    }));
    assert_eq!(with_operations.operations, ["SELECT", "ALTER"]);
    assert_eq!(
        with_operations.resource_type.as_deref(),
        Some("LOGICAL_TABLE")
    );

    let with_both = body(json!({
        "resourceType": "PHYSICAL_VIEW",
        "operates": ["SELECT"],
        "operations": ["UPDATE", "SELECT"],
        "resources": [{"resourceName": "v", "operations": ["DELETE"]}]
    }));
    assert_eq!(with_both.operations, ["SELECT", "UPDATE", "DELETE"]);
}

#[test]
fn scenarios_are_recognised_without_a_top_level_resource_type() {
    let sub = |content: Value, kind: &str| {
        let mut body = common::fixture_value("01_physical_table_low");
        body["content"] = Value::String(content.to_string());
        body["type"] = json!(kind);
        parse_value(&body).unwrap()
    };
    // Resource type from the first resource.
    let api = sub(
        json!({"operations": ["USE"], "resources": [{"resourceType": "OS_API", "resourceName": "get_order"}]}),
        "AUTH",
    );
    assert_eq!(api.content.scenario(), Scenario::DataService);
    assert_eq!(api.facts().resource_type.as_deref(), Some("OS_API"));
    let view = sub(
        json!({"resources": [{"resourceType": "DATASOURCE_VIEW", "resourceName": "v"}]}),
        "AUTH",
    );
    assert_eq!(view.content.scenario(), Scenario::DatasourceTable);
    // The submission type settles a sparse shape.
    let sparse = json!({"applyObject": {"objectName": "etl_x"}});
    assert_eq!(
        sub(sparse.clone(), "CODE_REVIEW").content.scenario(),
        Scenario::CodeReview
    );
    assert_eq!(
        sub(sparse, "DEFAULT").content.scenario(),
        Scenario::Unrecognized
    );
    // JSON that fits nothing is kept, unparsed.
    let odd = sub(json!({"ticketKind": "MYSTERY", "items": [1, 2]}), "DEFAULT");
    assert_eq!(odd.content.scenario(), Scenario::Unrecognized);
    assert!(!odd.facts().parsed);
    assert_eq!(
        odd.content.to_value(),
        json!({"ticketKind": "MYSTERY", "items": [1, 2]})
    );
    // A table request whose fields have impossible types does not pass as a table request.
    let broken = sub(
        json!({"resourceType": "PHYSICAL_TABLE", "resources": {"a": 1}}),
        "AUTH",
    );
    assert_eq!(broken.content.scenario(), Scenario::Unrecognized);
}

#[test]
fn loose_types_are_accepted() {
    let mut body = common::fixture_value("01_physical_table_low");
    body["approveNodes"] = json!([
        {"approveOrder": 2, "approveUsers": [{"userId": "b"}], "approveOperator": "and"},
        {"approveOrder": "1", "approveUsers": [{"userId": 7, "userName": "seven"}], "approveOperator": "Or"}
    ]);
    body["content"] = Value::String(
        json!({
            "resourceType": "PHYSICAL_TABLE",
            "operates": "SELECT",
            "grantToUsers": [{"account": {"userId": 300000913}, "period": {"periodType": "DAYS_7"}}],
            "resources": [{"resourceName": "t", "children": [
                {"resourceName": "c", "resourceProperties": {"columnIsPk": true, "securityLevel": "L2"}}
            ], "operations": null}]
        })
        .to_string(),
    );
    let sub = parse_value(&body).unwrap();
    let orders: Vec<_> = sub
        .approve_nodes
        .iter()
        .map(|n| (n.order, n.relation))
        .collect();
    assert_eq!(orders, [(1, Relation::Or), (2, Relation::And)]);
    assert_eq!(sub.approve_nodes[0].users[0].user_id, "7");
    let facts = sub.facts();
    assert_eq!(facts.scenario, Scenario::TablePermission);
    assert_eq!(facts.operations, ["SELECT"]);
    assert_eq!(facts.periods[0].days, Some(7));
    assert!(permission(&sub).resources[0].children[0].is_pk());
}

#[test]
fn field_level_refusals_name_the_path() {
    let refused = |edit: &dyn Fn(&mut Value)| {
        let mut body = common::fixture_value("01_physical_table_low");
        edit(&mut body);
        parse_value(&body).expect_err("must be refused")
    };
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("tenantId", Box::new(|b| b["tenantId"] = json!(""))),
        (
            "applyUserInfo.userId",
            Box::new(|b| b["applyUserInfo"]["userId"] = json!("")),
        ),
        ("approveNodes", Box::new(|b| b["approveNodes"] = json!([]))),
        (
            "approveNodes[0]",
            Box::new(|b| b["approveNodes"] = json!(["bob"])),
        ),
        (
            "approveNodes[0].approveUsers[0].userId",
            Box::new(|b| b["approveNodes"][0]["approveUsers"][0]["userId"] = json!(null)),
        ),
        (
            "approveNodes[0].approveOrder",
            Box::new(|b| b["approveNodes"][0]["approveOrder"] = json!("first")),
        ),
        ("title", Box::new(|b| b["title"] = json!(["not", "text"]))),
        ("content", Box::new(|b| b["content"] = json!(42))),
        ("content", Box::new(|b| b["content"] = json!("[1, 2"))),
    ];
    for (field, edit) in cases {
        assert_eq!(refused(&*edit).field_name(), Some(field));
    }
}

#[test]
fn lenient_where_the_contract_allows() {
    let mut body = common::fixture_value("17_plain_text_content");
    // applyUser stands in for a missing userSourceId; an empty title is fine.
    body["applyUserInfo"] = json!({"userId": "300000913", "userName": "alice.wang"});
    body["title"] = json!("");
    let sub = parse_value(&body).unwrap();
    assert_eq!(sub.applicant.user_source_id, "0917452163-1398");
    assert_eq!(sub.title, "");
    // One approver needs no relation; several do.
    body["approveNodes"][0]
        .as_object_mut()
        .unwrap()
        .remove("approveOperator");
    assert_eq!(
        parse_value(&body).unwrap().approve_nodes[0].relation,
        Relation::Or
    );
    body["approveNodes"][0]["approveUsers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"userId": "300000920"}));
    assert_eq!(
        parse_value(&body).unwrap_err().field_name(),
        Some("approveNodes[0].approveOperator")
    );
}
