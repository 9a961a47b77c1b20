use integration_tests::harness::*;

#[tokio::test]
async fn fixture_01_goes_to_dingtalk_and_approval_reaches_dataphin() {
    let b = Bridge::start(Options::default()).await;
    let body = fixture("01_physical_table_low.json");
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "PENDING");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let creates = b.dingtalk.creates();
    assert_eq!(creates.len(), 1);
    let t = b.ticket(&id).await;
    let instance = t.instance_id.clone().unwrap();
    b.push_pending_dingtalk_events().await;
    b.dingtalk
        .act(&instance, "dt-bob", true, "ok for reporting")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let t = b.ticket(&id).await;
    assert_eq!(t.status, models::TicketStatus::Approved);
    let doc = b.dataphin.latest(&id).expect("delivered");
    assert_eq!(doc["status"], "APPROVED");
}
