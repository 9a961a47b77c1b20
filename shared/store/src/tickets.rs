//! Ticket items: create once, save conditionally, find by backend instance, find what is due.

use std::collections::HashMap;

use std::io::{Read, Write};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use models::ticket::Ticket;
use models::TicketStatus;
use serde_json::Value;

use crate::counts::{move_count, Counted};
use crate::history::archive_if_over_budget;
use crate::item::{get_n, get_s, n, opt_s, s, shard_of, Item};
use crate::{Store, StoreError};

/// Shards of the due index: the dispatcher reads all of them, writers spread over them.
pub const DUE_SHARDS: u32 = 4;

const TICKET_SK: &str = "#TICKET";

/// Tries of a create whose transaction met a concurrent one (the tenant's counters) or throttling.
const CREATE_ATTEMPTS: u64 = 5;

/// DynamoDB items hold 400 KB: the submission (up to 1 MiB of JSON) is kept gzip-compressed, and
/// what does not fit even so is refused with [`StoreError::TooLarge`].
pub const MAX_STORED_SUBMISSION: usize = 300 * 1024;

fn compress(text: &str) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(text.as_bytes()).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

fn read_submission(item: &Item) -> Result<Option<String>, StoreError> {
    if let Some(b) = item.get("submission_gz").and_then(|v| v.as_b().ok()) {
        let mut text = String::new();
        GzDecoder::new(b.as_ref())
            .read_to_string(&mut text)
            .map_err(|e| StoreError::Corrupt(format!("stored submission: {e}")))?;
        return Ok(Some(text));
    }
    Ok(opt_s(item, "submission"))
}

/// A ticket as stored, with the submission it was created from.
#[derive(Debug, Clone)]
pub struct StoredTicket {
    pub ticket: Ticket,
    /// The submission body as received (absent when the read skipped it).
    pub submission: Option<String>,
    pub body_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// A ticket with this id exists already (an idempotent repeat, or a conflict).
    Exists,
}

pub(crate) fn ticket_pk(id: &str) -> String {
    format!("TICKET#{id}")
}

/// The attributes derived from a ticket: the document and the index keys.
fn ticket_attributes(
    ticket: &Ticket,
    summary: &Value,
    due_at: Option<i64>,
) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(ticket).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let list_status = ticket.status.list_status();
    let mut attrs: Item = HashMap::new();
    attrs.insert("ticket_id".into(), s(&ticket.id));
    attrs.insert("tenant_id".into(), s(&ticket.tenant_id));
    attrs.insert("status".into(), s(ticket.status.as_str()));
    attrs.insert("doc".into(), s(doc));
    attrs.insert("summary".into(), s(summary.to_string()));
    attrs.insert("proposer_id".into(), s(&ticket.applicant.user_id));
    attrs.insert("proposer_name".into(), s(&ticket.applicant.user_name));
    attrs.insert("start_time".into(), n(ticket.created_at));
    // The list partitions, unsharded: at approval rates a tenant's writes never come near a
    // partition's limit, and one partition per filter makes a list page one Query.
    attrs.insert("t_pk".into(), s(&ticket.tenant_id));
    attrs.insert(
        "ts_pk".into(),
        s(format!("{}#{list_status}", ticket.tenant_id)),
    );
    attrs.insert("s_pk".into(), s(list_status));
    attrs.insert("p_pk".into(), s(&ticket.applicant.user_name));
    if let Some(end) = ticket.finished_at {
        attrs.insert("end_time".into(), n(end));
    }
    if delivery_ready(ticket) {
        attrs.insert(DELIVER_READY.into(), AttributeValue::Bool(true));
    }
    if let Some(at) = due_at {
        attrs.insert(
            "due_shard".into(),
            s(format!("DUE#{}", shard_of(&ticket.id, DUE_SHARDS))),
        );
        attrs.insert("due_at".into(), n(at));
    }
    Ok(attrs)
}

/// Present (true) on a ticket item whose result can be sent right now: due, no sender holds it,
/// and no failed attempt waits out its backoff. The tickets table's stream hands exactly these
/// writes to the dispatcher (its filter names this attribute), so a result leaves within moments
/// of the write that made it due; retries after a failure follow the schedule.
pub const DELIVER_READY: &str = "deliver_ready";

/// Whether the ticket's result can be sent right now (see [`DELIVER_READY`]).
pub fn delivery_ready(ticket: &Ticket) -> bool {
    let d = &ticket.delivery;
    d.is_due() && d.lease_until.is_none() && d.attempts == 0
}

/// Attributes a save removes when the ticket no longer has them.
const OPTIONAL_ATTRIBUTES: [&str; 4] = ["end_time", "due_shard", "due_at", DELIVER_READY];

/// Whose status counters a ticket's status moves (the proposer as the list filters by it).
fn counted(ticket: &Ticket) -> Counted<'_> {
    Counted {
        tenant: &ticket.tenant_id,
        proposer: &ticket.applicant.user_name,
    }
}

/// The item that finds a ticket from its backend instance.
fn link_item(instance_id: &str, ticket_id: &str) -> Item {
    [
        ("pk".to_string(), s(format!("INSTANCE#{instance_id}"))),
        ("sk".to_string(), s("#LINK")),
        ("ticket_id".to_string(), s(ticket_id)),
    ]
    .into_iter()
    .collect()
}

/// The primary key of a ticket's item.
pub(crate) fn ticket_key(id: &str) -> Item {
    [
        ("pk".to_string(), s(ticket_pk(id))),
        ("sk".to_string(), s(TICKET_SK)),
    ]
    .into_iter()
    .collect()
}

/// An update expression that writes a ticket's attributes (removing optional ones it no longer
/// has) and its new revision, conditional on `expected` (`#rev = :expected`).
pub(crate) struct UpdateParts {
    pub expression: String,
    pub names: HashMap<String, String>,
    pub values: Item,
}

pub(crate) fn ticket_update_parts(
    ticket: &Ticket,
    summary: &Value,
    due_at: Option<i64>,
    expected: u64,
) -> Result<UpdateParts, StoreError> {
    let attrs = ticket_attributes(ticket, summary, due_at)?;
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut sets = Vec::new();
    for (i, (k, v)) in attrs.into_iter().enumerate() {
        names.insert(format!("#a{i}"), k);
        values.insert(format!(":v{i}"), v);
        sets.push(format!("#a{i} = :v{i}"));
    }
    names.insert("#rev".into(), "revision".into());
    values.insert(":rev".into(), n(ticket.revision));
    values.insert(":expected".into(), n(expected));
    sets.push("#rev = :rev".into());
    let present: Vec<String> = names.values().cloned().collect();
    let removes: Vec<String> = OPTIONAL_ATTRIBUTES
        .iter()
        .filter(|a| !present.iter().any(|p| p == *a))
        .enumerate()
        .map(|(i, a)| {
            names.insert(format!("#r{i}"), a.to_string());
            format!("#r{i}")
        })
        .collect();
    let mut expression = format!("SET {}", sets.join(", "));
    if !removes.is_empty() {
        expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
    }
    Ok(UpdateParts {
        expression,
        names,
        values,
    })
}

pub(crate) fn parse_ticket_item(item: &Item) -> Result<StoredTicket, StoreError> {
    parse_ticket(item)
}

/// A ticket from its stored document and revision (an item, or a stream record's image of one).
pub fn ticket_from_doc(doc: &str, revision: u64) -> Result<Ticket, StoreError> {
    let mut ticket: Ticket = serde_json::from_str(doc)
        .map_err(|e| StoreError::Corrupt(format!("ticket document: {e}")))?;
    ticket.revision = revision;
    ticket.stored_status = Some(ticket.status);
    Ok(ticket)
}

fn parse_ticket(item: &Item) -> Result<StoredTicket, StoreError> {
    let ticket = ticket_from_doc(get_s(item, "doc")?, get_n(item, "revision")? as u64)?;
    Ok(StoredTicket {
        ticket,
        submission: read_submission(item)?,
        body_hash: opt_s(item, "body_hash").unwrap_or_default(),
    })
}

impl Store {
    /// Creates the ticket unless one with its id exists. The id is derived from
    /// (tenantId, applyId), so this one conditional write is the idempotency check. The tenant's
    /// counter of the ticket's status grows in the same transaction.
    pub async fn create_ticket(
        &self,
        ticket: &mut Ticket,
        summary: &Value,
        submission: &str,
        body_hash: &str,
        due_at: Option<i64>,
    ) -> Result<CreateOutcome, StoreError> {
        let mut attrs = ticket_attributes(ticket, summary, due_at)?;
        attrs.insert("pk".into(), s(ticket_pk(&ticket.id)));
        attrs.insert("sk".into(), s(TICKET_SK));
        attrs.insert("revision".into(), n(ticket.revision));
        let packed = compress(submission);
        if packed.len() > MAX_STORED_SUBMISSION {
            return Err(StoreError::TooLarge(MAX_STORED_SUBMISSION));
        }
        attrs.insert("submission_gz".into(), AttributeValue::B(Blob::new(packed)));
        attrs.insert("body_hash".into(), s(body_hash));
        let put = Put::builder()
            .table_name(&self.tickets)
            .set_item(Some(attrs))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        let count = move_count(
            &self.tickets,
            &counted(ticket),
            None,
            ticket.status.list_status(),
        )?;
        let mut attempt = 0u64;
        let result = loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(
                    std::iter::once(TransactWriteItem::builder().put(put.clone()).build())
                        .chain(count.iter().cloned())
                        .collect(),
                ))
                .send()
                .await
                .map_err(StoreError::from_sdk);
            // A concurrent transaction on the tenant's counters cancels this one: go again.
            match result {
                Err(StoreError::Throttled(_)) if attempt < CREATE_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 * attempt)).await;
                }
                other => break other,
            }
        };
        match result {
            Ok(_) => {
                ticket.stored_status = Some(ticket.status);
                Ok(CreateOutcome::Created)
            }
            Err(StoreError::Conflict) => Ok(CreateOutcome::Exists),
            Err(e) => Err(e),
        }
    }

    /// Reads a ticket (strongly consistent). `with_submission` also returns the stored body.
    pub async fn get_ticket(
        &self,
        id: &str,
        with_submission: bool,
    ) -> Result<Option<StoredTicket>, StoreError> {
        let mut req = self
            .client
            .get_item()
            .table_name(&self.tickets)
            .key("pk", s(ticket_pk(id)))
            .key("sk", s(TICKET_SK))
            .consistent_read(true);
        if !with_submission {
            req = req.projection_expression("doc, revision, body_hash");
        }
        let out = req.send().await.map_err(StoreError::from_sdk)?;
        out.item.as_ref().map(parse_ticket).transpose()
    }

    /// Writes the ticket if nobody wrote it since it was read (same `revision`), then bumps
    /// `ticket.revision`. `StoreError::Conflict` means: re-read and fold again. A write that
    /// changes the list status moves the tenant's counters in the same transaction.
    pub async fn save_ticket(
        &self,
        ticket: &mut Ticket,
        summary: &Value,
        due_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.save_ticket_with(ticket, summary, due_at, Vec::new())
            .await
    }

    /// [`Store::save_ticket`] with more writes that must happen together with it (all or none).
    pub(crate) async fn save_ticket_with(
        &self,
        ticket: &mut Ticket,
        summary: &Value,
        due_at: Option<i64>,
        mut with: Vec<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let stored = ticket.stored_status.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "ticket {} was not read from the store before this save",
                ticket.id
            ))
        })?;
        let expected = ticket.revision;
        // History over the item's budget moves to its own item in the same transaction.
        let moved = match archive_if_over_budget(&self.tickets, ticket)? {
            Some((put, moved)) => {
                with.push(put);
                Some(moved)
            }
            None => None,
        };
        ticket.revision += 1;
        let result = self
            .write_ticket(ticket, stored, summary, due_at, expected, with)
            .await;
        match result {
            Ok(()) => {
                ticket.stored_status = Some(ticket.status);
                Ok(())
            }
            Err(e) => {
                // Nothing was written: the caller's ticket is as it was read.
                ticket.revision = expected;
                if let Some(m) = moved {
                    m.undo(ticket);
                }
                Err(e)
            }
        }
    }

    /// The conditional write of a save: one UpdateItem, or a TransactWriteItems with the writes
    /// that go with it (and the counters, when the list status changes).
    async fn write_ticket(
        &self,
        ticket: &Ticket,
        stored: TicketStatus,
        summary: &Value,
        due_at: Option<i64>,
        expected: u64,
        mut with: Vec<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let UpdateParts {
            expression,
            names,
            values,
        } = ticket_update_parts(ticket, summary, due_at, expected)?;
        let (from, to) = (stored.list_status(), ticket.status.list_status());
        if from != to {
            with.extend(move_count(&self.tickets, &counted(ticket), Some(from), to)?);
        }
        if with.is_empty() {
            return self
                .client
                .update_item()
                .table_name(&self.tickets)
                .set_key(Some(ticket_key(&ticket.id)))
                .update_expression(expression)
                .condition_expression("#rev = :expected")
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await
                .map(|_| ())
                .map_err(StoreError::from_sdk);
        }
        let update = Update::builder()
            .table_name(&self.tickets)
            .set_key(Some(ticket_key(&ticket.id)))
            .update_expression(expression)
            .condition_expression("#rev = :expected")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()?;
        with.insert(0, TransactWriteItem::builder().update(update).build());
        self.client
            .transact_write_items()
            .set_transact_items(Some(with))
            .send()
            .await
            .map(|_| ())
            .map_err(StoreError::from_sdk)
    }

    /// Saves the ticket as [`Store::save_ticket`] does and, in the same transaction, links the
    /// backend instance to it: the ticket never records an instance that cannot find it, and a
    /// create's dispatch outcome costs one write. On `Conflict` nothing was written.
    pub async fn save_ticket_linking(
        &self,
        ticket: &mut Ticket,
        summary: &Value,
        due_at: Option<i64>,
        instance_id: &str,
    ) -> Result<(), StoreError> {
        let link = Put::builder()
            .table_name(&self.tickets)
            .set_item(Some(link_item(instance_id, &ticket.id)))
            .build()?;
        self.save_ticket_with(
            ticket,
            summary,
            due_at,
            vec![TransactWriteItem::builder().put(link).build()],
        )
        .await
    }

    /// Remembers which ticket a backend instance belongs to (callbacks name the instance only).
    pub async fn link_instance(
        &self,
        instance_id: &str,
        ticket_id: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tickets)
            .set_item(Some(link_item(instance_id, ticket_id)))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    pub async fn ticket_for_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tickets)
            .key("pk", s(format!("INSTANCE#{instance_id}")))
            .key("sk", s("#LINK"))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out.item.as_ref().and_then(|i| opt_s(i, "ticket_id")))
    }

    /// Ids of tickets with work due at or before `now`, read from the sparse due index.
    pub async fn due_ticket_ids(&self, now: i64, limit: i32) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for shard in 0..DUE_SHARDS {
            let mut start: Option<Item> = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.tickets)
                    .index_name("due-index")
                    .key_condition_expression("due_shard = :s AND due_at <= :now")
                    .expression_attribute_values(":s", s(format!("DUE#{shard}")))
                    .expression_attribute_values(":now", n(now))
                    .limit(limit)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                for it in out.items() {
                    if let Some(pk) = opt_s(it, "pk") {
                        if let Some(id) = pk.strip_prefix("TICKET#") {
                            ids.push(id.to_string());
                        }
                    }
                }
                match out.last_evaluated_key {
                    Some(k) if (ids.len() as i32) < limit * DUE_SHARDS as i32 => start = Some(k),
                    _ => break,
                }
            }
        }
        Ok(ids)
    }
}
