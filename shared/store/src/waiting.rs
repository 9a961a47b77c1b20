//! Events that arrived before the bridge linked their backend instance to a ticket. DingTalk
//! pushes `start` (and, for self-approving templates, `finish`) before its create reply reaches the
//! bridge; such an event is kept under its instance until the create links the instance, and is
//! then applied. Kept items expire (TTL) so events of instances that are not ours do not pile up.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::item::{opt_s, s};
use crate::{Store, StoreError};

/// How long an event waits for its instance to be linked before DynamoDB's TTL removes it.
pub const WAITING_EVENT_TTL_SECS: i64 = 7 * 24 * 3600;

const WAITING_PREFIX: &str = "WAIT#";

/// One kept event: where it came from (`dingtalk`, `webhook`) and its plaintext body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingEvent {
    pub key: String,
    pub source: String,
    pub body: String,
}

fn instance_pk(instance_id: &str) -> String {
    format!("INSTANCE#{instance_id}")
}

impl Store {
    /// Keeps an event for an instance not linked yet. Keyed by the event's own id, so a re-sent
    /// event overwrites itself instead of being kept twice.
    pub async fn keep_waiting_event(
        &self,
        instance_id: &str,
        source: &str,
        event_key: &str,
        body: &str,
        now_secs: i64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tickets)
            .item("pk", s(instance_pk(instance_id)))
            .item("sk", s(format!("{WAITING_PREFIX}{source}#{event_key}")))
            .item("source", s(source))
            .item("body", s(body))
            .item(
                "expires_at",
                AttributeValue::N((now_secs + WAITING_EVENT_TTL_SECS).to_string()),
            )
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    /// Every event kept for this instance, oldest key first (strongly consistent, so a create
    /// that linked the instance sees every event kept before).
    pub async fn waiting_events(&self, instance_id: &str) -> Result<Vec<WaitingEvent>, StoreError> {
        let items = self
            .items_with_prefix(instance_pk(instance_id), WAITING_PREFIX, true)
            .await?;
        let mut events = Vec::new();
        for it in &items {
            if let (Some(key), Some(source), Some(body)) =
                (opt_s(it, "sk"), opt_s(it, "source"), opt_s(it, "body"))
            {
                events.push(WaitingEvent { key, source, body });
            }
        }
        Ok(events)
    }

    /// Removes a kept event once it has been applied to its ticket.
    pub async fn drop_waiting_event(&self, instance_id: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.tickets)
            .key("pk", s(instance_pk(instance_id)))
            .key("sk", s(key))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }
}
