//! The approval form (SPEC section 9): one snapshot per fixture, reviewed by eye, plus explicit
//! checks of the lines approvers rely on.

mod common;

use models::render::{description, render, MAX_FIELDS, MAX_VALUE_CHARS};
use models::{FormField, Submission};
use serde_json::{json, Value};

fn field<'a>(form: &'a [FormField], name: &str) -> &'a str {
    form.iter()
        .find(|f| f.name == name)
        .map(|f| f.value.as_str())
        .unwrap_or_else(|| panic!("no field {name:?} in {form:#?}"))
}

fn form_of(stem: &str) -> Vec<FormField> {
    common::submission(stem).form()
}

fn with_content(stem: &str, content: Value) -> Submission {
    let mut body = common::fixture_value(stem);
    body["content"] = Value::String(content.to_string());
    Submission::parse(&serde_json::to_vec(&body).unwrap()).unwrap()
}

/// A value that reads as JSON text rather than as a sentence.
fn looks_like_json(value: &str) -> bool {
    let v = value.trim_start();
    v.starts_with('{') || v.starts_with('[') || value.contains("\":") || value.contains("\\\"")
}

#[test]
fn snapshot_every_fixture() {
    for (stem, body) in common::fixtures("submissions") {
        let sub = Submission::parse(&body).unwrap();
        insta::assert_snapshot!(stem.clone(), description(&sub));
    }
}

#[test]
fn every_fixture_renders_readable_fields() {
    for (stem, body) in common::fixtures("submissions") {
        let form = Submission::parse(&body).unwrap().form();
        let names: Vec<_> = form.iter().take(3).map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Title", "Applicant", "Type"], "{stem}");
        assert_eq!(
            field(&form, "Applicant"),
            "alice.wang (300000913)",
            "{stem}"
        );
        assert!(form.len() <= MAX_FIELDS, "{stem}");
        for f in &form {
            assert!(!f.value.trim().is_empty(), "{stem}: empty {}", f.name);
            assert!(
                f.name.is_ascii(),
                "{stem}: field names are English: {}",
                f.name
            );
            assert!(
                !looks_like_json(&f.value),
                "{stem}: raw JSON in {}: {}",
                f.name,
                f.value
            );
        }
    }
}

#[test]
fn table_request_shows_resources_columns_levels_and_validity() {
    let form = form_of("01_physical_table_low");
    assert_eq!(field(&form, "Reason"), "Weekly store report");
    assert_eq!(field(&form, "Operations"), "SELECT");
    assert_eq!(field(&form, "Environment"), "PROD");
    assert_eq!(field(&form, "Project"), "sales_dw/销售数仓");
    assert!(field(&form, "Resources").starts_with("dim_store 门店维表 [PROD] sales_dw/销售数仓"));
    assert_eq!(
        field(&form, "Columns of dim_store"),
        "store_id (bigint, PK, contact, L1), store_name (string, contact, L1), \
         ds (string, partition, contact, L1)"
    );
    assert_eq!(
        field(&form, "Validity period"),
        "alice.wang: 30 days, until 2026-12-24"
    );

    let form = form_of("02_physical_table_high");
    assert_eq!(field(&form, "Operations"), "SELECT, UPDATE");
    assert!(field(&form, "Columns of ods_customer").contains("mobile (string, contact, L4)"));
    assert_eq!(
        field(&form, "Validity period"),
        "alice.wang: long term\nbob.li (user group): 30 days, until 2026-12-24"
    );
}

#[test]
fn data_service_shows_levels_and_short_time_period() {
    let form = form_of("06_data_service");
    assert_eq!(field(&form, "Permission levels"), "MIDDLE");
    assert_eq!(field(&form, "Resources"), "sales_portal (OS_APP)");
    assert_eq!(
        field(&form, "Validity period"),
        "300000913: 2026-11-24 to 2026-12-24 (30 days)"
    );
}

#[test]
fn code_release_and_download_show_objects_code_and_sql() {
    let form = form_of("04_code_review");
    assert_eq!(field(&form, "Object"), "etl_daily_sales");
    assert_eq!(field(&form, "Global variables"), "bizdate");
    assert!(field(&form, "Code").contains("SELECT store_id, SUM(amount) FROM dwd_order"));

    let form = form_of("05_release");
    assert_eq!(
        field(&form, "Objects"),
        "etl_daily_sales 日销售汇总: CREATE MAX_COMPUTE_SQL V3\ngmv_7d 近7天GMV: UPDATE DERIVED_INDEX V7"
    );
    assert_eq!(field(&form, "Named approvers"), "carol.zhao");
    assert!(field(&form, "Object 1 (etl_daily_sales)")
        .contains("Submitted by: alice.wang at 2025-11-24 08:00 UTC"));

    let form = form_of("14_data_download");
    assert_eq!(
        field(&form, "SQL"),
        "SELECT city, mobile FROM ods_customer LIMIT 1000"
    );
    assert_eq!(
        field(&form, "Tables"),
        "ods_customer 客户明细: mobile (L3), city (L1)"
    );
    assert_eq!(field(&form, "Highest security level"), "L3");
}

#[test]
fn topic_release_shows_folder_changes_as_lines() {
    let form = form_of("15_asset_topic");
    let lines: Vec<_> = field(&form, "Folder changes in Sales").lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]
        .starts_with("Orders – Order facts (level 1, by alice.wang, 2025-11-24 08:00 UTC): "));
    assert!(lines[0].ends_with("changed description \"Orders\" -> \"Order facts\""));
    assert!(lines[1].starts_with("Orders > Refunds – Refund facts (level 2"));
    assert!(lines[1].ends_with(": no changes listed"));
}

#[test]
fn row_permission_shows_rules_and_restricted_columns() {
    let form = form_of("16_row_permission");
    assert_eq!(field(&form, "Rules of orders_by_region"), "East, North");
    assert_eq!(
        field(&form, "Rule description of orders_by_region"),
        "Regional managers see their region"
    );
    assert_eq!(
        field(&form, "Restricted tables of orders_by_region"),
        "dwd_order, column region (odps.300073302.sales_dw.dwd_order)"
    );
    assert!(field(&form, "Validity period").contains("bob.li (tenant account): long term"));
}

#[test]
fn other_scenarios_show_their_subject() {
    assert_eq!(
        field(&form_of("08_conceptual_design"), "Business process"),
        "store_visit 门店到访"
    );
    assert_eq!(
        field(&form_of("10_secret_key"), "Resources"),
        "pii_key 个人信息密钥 [PROD] (managed by its owner only)"
    );
    let owner = form_of("12_change_owner");
    assert_eq!(field(&owner, "Current owner"), "alice.wang (300000913)");
    assert_eq!(field(&owner, "New owner"), "bob.li (300000914)");
    assert_eq!(
        field(&form_of("13_standard_review"), "Standard"),
        "std_771, version 1"
    );
    assert_eq!(
        field(&form_of("17_plain_text_content"), "Content"),
        "Please approve the quarterly access review."
    );
}

#[test]
fn long_code_is_cut_with_a_marker() {
    let code = format!("{}END", "SELECT 1;\n".repeat(500));
    let sub = with_content(
        "04_code_review",
        json!({"applyObject": {"objectName": "big", "codeContent": code}}),
    );
    let form = sub.form();
    let shown = field(&form, "Code");
    assert!(shown.starts_with("SELECT 1;\nSELECT 1;"));
    assert!(
        shown.ends_with("(truncated, 3003 more characters)"),
        "{}",
        &shown[shown.len() - 60..]
    );
    assert!(shown.chars().count() < MAX_VALUE_CHARS + 50);
}

#[test]
fn forms_stay_within_dingtalks_field_limit() {
    let records: Vec<Value> = (0..200)
        .map(|i| json!({"objectName": format!("obj_{i}"), "changeType": "UPDATE", "owner": "alice.wang"}))
        .collect();
    let sub = with_content(
        "05_release",
        json!({"applyReason": "bulk", "publishRecords": records}),
    );
    let form = sub.form();
    assert_eq!(form.len(), MAX_FIELDS);
    let last = form.last().unwrap();
    assert_eq!(last.name, "More");
    assert!(
        last.value.ends_with("more fields not shown"),
        "{}",
        last.value
    );
}

#[test]
fn unrecognised_json_is_outlined_not_dumped() {
    let sub = with_content(
        "17_plain_text_content",
        json!({"ticketKind": "MYSTERY", "owners": ["a", "b"], "scope": {"db": "crm", "tables": ["x", "y"]}}),
    );
    let form = sub.form();
    assert_eq!(field(&form, "Request"), "Content of an unknown shape");
    assert_eq!(field(&form, "ticketKind"), "MYSTERY");
    assert_eq!(field(&form, "owners"), "a, b");
    assert_eq!(field(&form, "scope"), "db: crm; tables: (x, y)");
    for f in &form {
        assert!(
            !f.value.contains('{') && !f.value.contains('"'),
            "{}: {}",
            f.name,
            f.value
        );
    }
}

#[test]
fn description_joins_the_form_line_by_line() {
    let sub = common::submission("02_physical_table_high");
    let text = description(&sub);
    assert!(text.starts_with(
        "Title: Table permission: sales_dw.ods_customer (SELECT, UPDATE)\nApplicant: alice.wang (300000913)\n"
    ));
    assert!(text.contains(
        "Validity period:\n  alice.wang: long term\n  bob.li (user group): 30 days, until 2026-12-24"
    ));
    assert_eq!(render(&sub), sub.form());
}

#[test]
fn an_empty_title_still_heads_the_form() {
    let mut body = common::fixture_value("17_plain_text_content");
    body["title"] = json!("");
    let sub = Submission::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(field(&sub.form(), "Title"), "(no title)");
}
