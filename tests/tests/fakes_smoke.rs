//! The Dataphin and BPM fakes against the bridge's own clients: what one signs the other verifies, and
//! the fakes' failure modes look to the clients as the real outages would.

use std::time::Duration;

use dataphin::{CallbackTarget, DataphinClient, DeliveryError};
use integration_tests::fake_bpm::{signed_callback, signed_callback_at, FakeBpm};
use integration_tests::fake_dataphin::FakeDataphin;
use serde_json::{json, Value};
use webhook::{verify_inbound, CryptoError, WebhookClient, WebhookError};

const TOKEN: &str = "dp-access-token";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const OTHER_KEY: &str = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij";
const SECRET: &str = "bpm-secret";

fn target(fake: &FakeDataphin) -> CallbackTarget {
    CallbackTarget {
        url: fake.url(),
        access_token: TOKEN.into(),
        aes_key: AES_KEY.into(),
    }
}

fn result(ticket: &str, status: &str, version: i64) -> Value {
    let finish = if status == "PENDING" {
        Value::Null
    } else {
        json!(1_700_000_000_000i64)
    };
    json!({
        "applyId": format!("apply-{ticket}"), "tenantId": "300001", "processInstanceId": ticket,
        "status": status, "reason": "ok", "finishTime": finish, "version": version,
        "nodes": [{
            "node_id": "start", "node_name": "Start", "node_status": "APPROVED", "approverRelation": "or",
            "pending_approvers": [], "approved_approvers": [{"user_id": "u1", "user_name": "Ann"}],
            "operator": [], "reason": "",
            "display": {"operation": "Submit", "result": "", "operator": "Ann", "description": ""}
        }]
    })
}

#[tokio::test]
async fn dataphin_fake_accepts_signed_callbacks_and_reports_breaches() {
    let fake = FakeDataphin::start(TOKEN, AES_KEY).await;
    let client = DataphinClient::new().unwrap();

    client
        .deliver(&target(&fake), "300001", &result("t-1", "PENDING", 1))
        .await
        .unwrap();
    client
        .deliver(&target(&fake), "300001", &result("t-1", "APPROVED", 2))
        .await
        .unwrap();
    // A repeat of the same version is fine: receivers deduplicate by version.
    client
        .deliver(&target(&fake), "300001", &result("t-1", "APPROVED", 2))
        .await
        .unwrap();
    assert!(
        fake.wait_for(|docs| docs.len() == 3, Duration::from_secs(2))
            .await
    );
    assert_eq!(fake.latest("t-1").unwrap()["status"], "APPROVED");
    assert_eq!(fake.documents_for("t-1").len(), 3);
    assert_eq!(fake.violations(), Vec::<String>::new());

    // Down: 503 to the client, nothing recorded.
    fake.set_down(true);
    let err = client
        .deliver(&target(&fake), "300001", &result("t-2", "REJECTED", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Status { status: 503, .. }),
        "{err}"
    );
    fake.set_down(false);

    // Failing on purpose for exactly n requests.
    fake.fail_next(1);
    let err = client
        .deliver(&target(&fake), "300001", &result("t-2", "REJECTED", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Status { status: 500, .. }),
        "{err}"
    );
    client
        .deliver(&target(&fake), "300001", &result("t-2", "REJECTED", 1))
        .await
        .unwrap();
    assert_eq!(fake.documents_for("t-2").len(), 1);

    // Wrong token or key: refused as unauthenticated, not a contract breach.
    let mut wrong_token = target(&fake);
    wrong_token.access_token = "stale-token".into();
    let mut wrong_key = target(&fake);
    wrong_key.aes_key = OTHER_KEY.into();
    for bad in [wrong_token, wrong_key] {
        let err = client
            .deliver(&bad, "300001", &result("t-3", "APPROVED", 1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DeliveryError::Status { status: 401, .. }),
            "{err}"
        );
    }
    assert_eq!(fake.rejections().len(), 2);
    assert!(fake.documents_for("t-3").is_empty());

    // Contract breaches by an authenticated sender are violations.
    let err = client
        .deliver(&target(&fake), "999999", &result("t-4", "APPROVED", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Status { status: 400, .. }),
        "{err}"
    );
    client
        .deliver(&target(&fake), "300001", &result("t-1", "PENDING", 1))
        .await
        .unwrap();
    let mut no_finish = result("t-5", "APPROVED", 1);
    no_finish["finishTime"] = Value::Null;
    assert!(client
        .deliver(&target(&fake), "300001", &no_finish)
        .await
        .is_err());
    let violations = fake.violations();
    assert_eq!(violations.len(), 3, "{violations:#?}");
    assert!(violations[0].contains("owner key"), "{}", violations[0]);
    assert!(
        violations[1].contains("version went back"),
        "{}",
        violations[1]
    );
    assert!(violations[2].contains("finishTime"), "{}", violations[2]);
    // latest() is by version, not by arrival.
    assert_eq!(fake.latest("t-1").unwrap()["version"], 2);

    // A receiver slower than the client's limit is a timeout.
    fake.set_delay(Duration::from_millis(800));
    let impatient =
        DataphinClient::with_timeouts(Duration::from_secs(1), Duration::from_millis(200)).unwrap();
    assert_eq!(
        impatient
            .deliver(&target(&fake), "300001", &result("t-6", "APPROVED", 1))
            .await,
        Err(DeliveryError::Timeout)
    );
    assert!(
        !fake
            .wait_for(|docs| docs.len() > 100, Duration::from_millis(50))
            .await
    );
}

#[tokio::test]
async fn bpm_fake_speaks_the_webhook_contract() {
    let bpm = FakeBpm::start(SECRET).await;
    let client = WebhookClient::new(&bpm.url(), SECRET).unwrap();
    let created =
        |ticket: &str| json!({"event": "ticket.created", "ticket_id": ticket, "title": "t"});

    let first = client.send("T1", &created("T1")).await.unwrap();
    assert_eq!(first, json!({"instance_id": "bpm-1"}));
    // A repeated create (same Idempotency-Key) gets the same instance.
    assert_eq!(client.send("T1", &created("T1")).await.unwrap(), first);
    assert_eq!(
        client.send("T2", &created("T2")).await.unwrap(),
        json!({"instance_id": "bpm-2"})
    );
    assert_eq!(bpm.instances_created(), 2);
    assert_eq!(bpm.instance_for("T1").as_deref(), Some("bpm-1"));
    assert_eq!(bpm.events_of("ticket.created").len(), 3);

    let withdraw = json!({"event": "ticket.withdrawn", "ticket_id": "T1", "instance_id": "bpm-1", "reason": "r"});
    bpm.set_refuse_withdraw(true);
    assert!(matches!(
        client.send("T1", &withdraw).await,
        Err(WebhookError::Status { status: 409, .. })
    ));
    bpm.set_refuse_withdraw(false);
    client.send("T1", &withdraw).await.unwrap();
    assert_eq!(bpm.withdrawn(), ["bpm-1"]);

    bpm.set_down(true);
    assert!(matches!(
        client.send("T3", &created("T3")).await,
        Err(WebhookError::Status { status: 503, .. })
    ));
    bpm.set_down(false);

    // The wrong secret is refused and changes nothing.
    let impostor = WebhookClient::new(&bpm.url(), "not-the-secret").unwrap();
    assert!(matches!(
        impostor.send("T4", &created("T4")).await,
        Err(WebhookError::Status { status: 401, .. })
    ));
    assert_eq!(bpm.unauthorized(), 1);
    assert_eq!(bpm.instances_created(), 2);
    assert!(
        bpm.wait_for(|events| events.len() == 4, Duration::from_secs(1))
            .await
    );
}

#[test]
fn bpm_callback_signatures_verify_in_the_bridge() {
    let body = br#"{"event_id":"e1","instance_id":"bpm-1","final_status":"APPROVED"}"#;
    let (ts, sig) = signed_callback(SECRET, body);
    let now: i64 = ts.parse().unwrap();
    assert_eq!(
        verify_inbound(SECRET.as_bytes(), Some(&ts), Some(&sig), body, now, 300),
        Ok(())
    );
    assert_eq!(
        verify_inbound(b"other", Some(&ts), Some(&sig), body, now, 300),
        Err(CryptoError::BadSignature)
    );
    let (old_ts, old_sig) = signed_callback_at(SECRET, now - 301_000, body);
    assert_eq!(
        verify_inbound(
            SECRET.as_bytes(),
            Some(&old_ts),
            Some(&old_sig),
            body,
            now,
            300
        ),
        Err(CryptoError::StaleTimestamp)
    );
}
