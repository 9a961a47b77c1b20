//! The inbox: every backend event the bridge answered, recorded under its instance before the
//! answer. The record is the durable hand-off to the work after the answer: the tickets table's
//! stream carries its INSERT to the dispatcher, which folds it into the ticket once the instance
//! is linked (DingTalk pushes `start`, and for self-approving templates `finish`, before its
//! create reply reaches the bridge). Records expire (TTL): until then a re-sent copy is recognised
//! by the answer's conditional write alone, and events of instances that are not ours do not pile
//! up. A record that can never apply is removed.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::item::{opt_s, s};
use crate::{Store, StoreError};

/// How long a recorded event waits for its instance to be linked before DynamoDB's TTL removes it.
pub const RECORDED_EVENT_TTL_SECS: i64 = 7 * 24 * 3600;

/// Sort-key prefix of recorded events (the stream's filter names it: `app::stream`).
pub const EVENT_SK_PREFIX: &str = "EVENT#";

/// One recorded event: where it came from (`dingtalk`, `webhook`) and its plaintext body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Its sort key (`EVENT#<source>#<event id>`).
    pub key: String,
    pub source: String,
    pub body: String,
}

impl RecordedEvent {
    /// The event's own id, as it was recorded (the sort key without its prefix and source).
    pub fn event_key(&self) -> &str {
        self.key
            .strip_prefix(EVENT_SK_PREFIX)
            .and_then(|k| k.strip_prefix(self.source.as_str()))
            .and_then(|k| k.strip_prefix('#'))
            .unwrap_or(&self.key)
    }
}

/// Whether [`Store::record_event`] wrote the event or found it recorded already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    /// A re-sent event whose first copy is still recorded: nothing was written.
    Again,
}

pub(crate) fn instance_pk(instance_id: &str) -> String {
    format!("INSTANCE#{instance_id}")
}

/// The sort key of one recorded event.
pub fn event_sk(source: &str, event_key: &str) -> String {
    format!("{EVENT_SK_PREFIX}{source}#{event_key}")
}

impl Store {
    /// Records an event before it is answered: one conditional write, keyed by the event's own
    /// id, so it doubles as deduplication (a re-sent copy writes nothing and starts no work).
    pub async fn record_event(
        &self,
        instance_id: &str,
        source: &str,
        event_key: &str,
        body: &str,
        now_secs: i64,
    ) -> Result<Recorded, StoreError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.tickets)
            .item("pk", s(instance_pk(instance_id)))
            .item("sk", s(event_sk(source, event_key)))
            .item("source", s(source))
            .item("body", s(body))
            .item(
                "expires_at",
                AttributeValue::N((now_secs + RECORDED_EVENT_TTL_SECS).to_string()),
            )
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(StoreError::from_sdk);
        match written {
            Ok(_) => Ok(Recorded::New),
            Err(StoreError::Conflict) => Ok(Recorded::Again),
            Err(e) => Err(e),
        }
    }

    /// Every event recorded for this instance, oldest key first (strongly consistent, so work that
    /// starts after the instance was linked sees every event recorded before).
    pub async fn recorded_events(
        &self,
        instance_id: &str,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let items = self
            .items_with_prefix(instance_pk(instance_id), EVENT_SK_PREFIX, true)
            .await?;
        Ok(items
            .iter()
            .filter_map(|it| {
                Some(RecordedEvent {
                    key: opt_s(it, "sk")?,
                    source: opt_s(it, "source")?,
                    body: opt_s(it, "body")?,
                })
            })
            .collect())
    }

    /// Removes a recorded event that can never apply.
    pub async fn drop_recorded_event(
        &self,
        instance_id: &str,
        key: &str,
    ) -> Result<(), StoreError> {
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
