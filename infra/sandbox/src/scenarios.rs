//! The submission fixtures (`fixtures/submissions/`), built into the binary so the page can offer
//! every scenario as Dataphin would send it, wherever the binary runs.

/// (file name, submission JSON), in file order.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "01_physical_table_low.json",
        include_str!("../../../fixtures/submissions/01_physical_table_low.json"),
    ),
    (
        "02_physical_table_high.json",
        include_str!("../../../fixtures/submissions/02_physical_table_high.json"),
    ),
    (
        "03_datasource_table.json",
        include_str!("../../../fixtures/submissions/03_datasource_table.json"),
    ),
    (
        "04_code_review.json",
        include_str!("../../../fixtures/submissions/04_code_review.json"),
    ),
    (
        "05_release.json",
        include_str!("../../../fixtures/submissions/05_release.json"),
    ),
    (
        "06_data_service.json",
        include_str!("../../../fixtures/submissions/06_data_service.json"),
    ),
    (
        "07_datasource.json",
        include_str!("../../../fixtures/submissions/07_datasource.json"),
    ),
    (
        "08_conceptual_design.json",
        include_str!("../../../fixtures/submissions/08_conceptual_design.json"),
    ),
    (
        "09_global_param.json",
        include_str!("../../../fixtures/submissions/09_global_param.json"),
    ),
    (
        "10_secret_key.json",
        include_str!("../../../fixtures/submissions/10_secret_key.json"),
    ),
    (
        "11_function.json",
        include_str!("../../../fixtures/submissions/11_function.json"),
    ),
    (
        "12_change_owner.json",
        include_str!("../../../fixtures/submissions/12_change_owner.json"),
    ),
    (
        "13_standard_review.json",
        include_str!("../../../fixtures/submissions/13_standard_review.json"),
    ),
    (
        "14_data_download.json",
        include_str!("../../../fixtures/submissions/14_data_download.json"),
    ),
    (
        "15_asset_topic.json",
        include_str!("../../../fixtures/submissions/15_asset_topic.json"),
    ),
    (
        "16_row_permission.json",
        include_str!("../../../fixtures/submissions/16_row_permission.json"),
    ),
    (
        "17_plain_text_content.json",
        include_str!("../../../fixtures/submissions/17_plain_text_content.json"),
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_fixture_is_offered_and_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/submissions");
        let on_disk = std::fs::read_dir(dir)
            .expect("fixtures/submissions")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count();
        assert_eq!(
            super::SCENARIOS.len(),
            on_disk,
            "a fixture is missing from SCENARIOS"
        );
        for (name, text) in super::SCENARIOS {
            let v: serde_json::Value = serde_json::from_str(text).expect(name);
            assert!(v["applyId"].is_string(), "{name} has an applyId");
        }
    }
}
