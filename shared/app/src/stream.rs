//! The work after an answer, as the tickets table's DynamoDB stream hands it over (template.yaml:
//! the dispatch function's `TicketStream` event, filtered by [`FILTER_PATTERNS`]; locally, `make
//! dev`'s stream runner feeds the same records through `cargo lambda watch`).
//!
//! Three kinds of write start work, and only these pass the filter:
//! - a recorded event (the answer path's one write): fold it into its ticket;
//! - an instance link (a create's reply recorded): apply the events that arrived before it;
//! - a ticket whose result is ready to send (`deliver_ready`): deliver it to Dataphin.
//!
//! Records of one item arrive in order. A record that fails is reported in `batchItemFailures`
//! and the records after it wait, so Lambda retries from it (bounded, then the batch's metadata
//! goes to the dead-letter queue); its work stays recorded in the table, so the scheduled
//! dispatcher finishes it even then.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::{callback, delivery, App, AppError, AppResult};

/// The stream's filter (Lambda `FilterCriteria`, one pattern per kind of work). template.yaml
/// holds the same patterns (the infra test compares them) and the local runner applies them.
pub const FILTER_PATTERNS: [&str; 3] = [
    r#"{"eventName":["INSERT"],"dynamodb":{"Keys":{"sk":{"S":[{"prefix":"EVENT#"}]}}}}"#,
    r##"{"eventName":["INSERT","MODIFY"],"dynamodb":{"Keys":{"sk":{"S":["#LINK"]}}}}"##,
    r#"{"eventName":["INSERT","MODIFY"],"dynamodb":{"NewImage":{"deliver_ready":{"BOOL":[true]}}}}"#,
];

#[derive(Debug, Deserialize)]
struct StreamEvent {
    #[serde(rename = "Records")]
    records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
struct StreamRecord {
    #[serde(rename = "eventName", default)]
    event_name: String,
    dynamodb: Change,
}

#[derive(Debug, Deserialize)]
struct Change {
    #[serde(rename = "Keys")]
    keys: Image,
    #[serde(rename = "NewImage", default)]
    new_image: Option<Image>,
    #[serde(rename = "SequenceNumber")]
    sequence_number: String,
}

/// An item in DynamoDB's JSON (`{"attr": {"S": "..."}}`).
type Image = HashMap<String, Value>;

fn s_of<'a>(image: &'a Image, name: &str) -> Option<&'a str> {
    image.get(name)?.get("S")?.as_str()
}

fn n_of(image: &Image, name: &str) -> Option<u64> {
    image.get(name)?.get("N")?.as_str()?.parse().ok()
}

/// What one record asks for.
enum Work {
    Event {
        instance: String,
        recorded: store::RecordedEvent,
    },
    Link {
        instance: String,
        ticket_id: Option<String>,
    },
    Delivery(Box<models::ticket::Ticket>),
    /// A record the filter would not pass (a REMOVE, another item): nothing to do.
    Nothing,
}

fn work_of(r: &StreamRecord) -> AppResult<Work> {
    if r.event_name == "REMOVE" {
        return Ok(Work::Nothing);
    }
    let (Some(pk), Some(sk)) = (s_of(&r.dynamodb.keys, "pk"), s_of(&r.dynamodb.keys, "sk")) else {
        return Ok(Work::Nothing);
    };
    let image = r.dynamodb.new_image.as_ref();
    if let Some(instance) = pk.strip_prefix("INSTANCE#") {
        if sk == "#LINK" {
            return Ok(Work::Link {
                instance: instance.to_string(),
                ticket_id: image.and_then(|i| s_of(i, "ticket_id")).map(str::to_string),
            });
        }
        if sk.starts_with(store::inbox::EVENT_SK_PREFIX) && r.event_name == "INSERT" {
            let image = image.ok_or_else(|| missing("NewImage"))?;
            return Ok(Work::Event {
                instance: instance.to_string(),
                recorded: store::RecordedEvent {
                    key: sk.to_string(),
                    source: s_of(image, "source")
                        .ok_or_else(|| missing("source"))?
                        .into(),
                    body: s_of(image, "body").ok_or_else(|| missing("body"))?.into(),
                },
            });
        }
        return Ok(Work::Nothing);
    }
    let ready = image
        .and_then(|i| i.get(store::tickets::DELIVER_READY))
        .and_then(|v| v.get("BOOL"))
        .and_then(Value::as_bool)
        == Some(true);
    if pk.starts_with("TICKET#") && ready {
        let image = image.ok_or_else(|| missing("NewImage"))?;
        let doc = s_of(image, "doc").ok_or_else(|| missing("doc"))?;
        let revision = n_of(image, "revision").ok_or_else(|| missing("revision"))?;
        let ticket = store::tickets::ticket_from_doc(doc, revision)?;
        return Ok(Work::Delivery(Box::new(ticket)));
    }
    Ok(Work::Nothing)
}

fn missing(what: &str) -> AppError {
    AppError::InvalidField(format!("stream record without {what}"))
}

/// How long before the invocation's deadline no new record is started: one record's work (a
/// DingTalk read, a delivery with Dataphin's 5 s timeout) fits in it, so the invocation ends
/// cleanly, leaving the rest to Lambda's retry, instead of being killed mid-way.
const RECORD_BUDGET_MS: i64 = 15_000;

/// Runs the work of one batch of stream records, in order, and answers Lambda's partial batch
/// response: the first record that failed (Lambda retries from it; the later ones wait for it,
/// so an item's records keep their order). `deadline_ms` is the invocation's deadline (ms since
/// the epoch), if it has one.
pub async fn handle(app: &App, event: Value, deadline_ms: Option<i64>) -> AppResult<Value> {
    let event: StreamEvent = serde_json::from_value(event)
        .map_err(|e| AppError::InvalidJson(format!("stream event: {e}")))?;
    for record in &event.records {
        let seq = &record.dynamodb.sequence_number;
        if deadline_ms.is_some_and(|d| crate::http::now_ms() + RECORD_BUDGET_MS > d) {
            tracing::warn!(sequence_number = %seq, "invocation deadline near: the rest is retried");
            return Ok(json!({"batchItemFailures": [{"itemIdentifier": seq}]}));
        }
        let outcome = match work_of(record) {
            Ok(work) => run(app, work).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {}
            // A record that can never be worked on is skipped, not retried for a day.
            Err(e @ (AppError::InvalidField(_) | AppError::InvalidJson(_))) => {
                tracing::error!(sequence_number = %seq, error = %e, "stream record skipped");
            }
            Err(e) => {
                tracing::warn!(sequence_number = %seq, error = %e, "stream record failed: retried");
                crate::meter::flush(app).await;
                return Ok(json!({"batchItemFailures": [{"itemIdentifier": seq}]}));
            }
        }
    }
    // The DingTalk reads this batch made, counted in one write (issue 9's meter).
    crate::meter::flush(app).await;
    Ok(json!({"batchItemFailures": []}))
}

async fn run(app: &App, work: Work) -> AppResult<()> {
    match work {
        Work::Event { instance, recorded } => {
            let span = tracing::info_span!("recorded_event", instance_id = %instance);
            callback::apply_recorded(app, &instance, &recorded)
                .instrument(span)
                .await
        }
        Work::Link {
            instance,
            ticket_id,
        } => {
            let span = tracing::info_span!("instance_linked", instance_id = %instance);
            callback::apply_waiting(app, &instance, ticket_id.as_deref())
                .instrument(span)
                .await
        }
        Work::Delivery(ticket) => {
            let span = tracing::info_span!("delivery", ticket_id = %ticket.id);
            delivery::deliver_written(app, *ticket, crate::http::now_ms())
                .instrument(span)
                .await
        }
        Work::Nothing => Ok(()),
    }
}

/// Whether a Lambda event is a batch of stream records (the dispatcher's other event is the
/// schedule's).
pub fn is_stream_event(event: &Value) -> bool {
    event.get("Records").is_some_and(Value::is_array)
}
