//! The reads a create needs, in one round trip: the ticket (does it exist already?) and every
//! user mapping in one `BatchGetItem` across both tables.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::KeysAndAttributes;

use crate::item::Item;
use crate::mappings::{mapping_from_item, mapping_key};
use crate::tickets::{parse_ticket_item, ticket_key};
use crate::{Mapping, Store, StoreError, StoredTicket};

/// `BatchGetItem` takes at most 100 keys a request.
const BATCH_KEYS: usize = 100;
/// Rounds of retrying keys DynamoDB left unprocessed before giving up.
const MAX_UNPROCESSED_ROUNDS: u32 = 8;

/// What a create reads before deciding anything.
#[derive(Debug, Default)]
pub struct CreateReads {
    /// The ticket with this id, if it exists (a repeat); without its submission.
    pub ticket: Option<StoredTicket>,
    /// Mappings found by (tenant, userId), keyed by userId.
    pub mappings: HashMap<String, Mapping>,
}

impl Store {
    /// Reads the ticket and the mappings of `user_ids` (of `tenant`) together: one `BatchGetItem`
    /// for up to 99 users (more take one more request per 100 keys). The ticket read is strongly
    /// consistent (it is the idempotency check); mappings are read eventually consistent, as
    /// the single reads were.
    pub async fn read_for_create(
        &self,
        ticket_id: &str,
        tenant: &str,
        user_ids: &[String],
    ) -> Result<CreateReads, StoreError> {
        let mut ids: Vec<&String> = Vec::new();
        for id in user_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut reads = CreateReads::default();
        let mut ticket_pending = true;
        let mut chunks = ids.chunks(BATCH_KEYS - 1);
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            if chunk.is_empty() && !ticket_pending {
                break;
            }
            let mut request: HashMap<String, KeysAndAttributes> = HashMap::new();
            if ticket_pending {
                request.insert(
                    self.tickets.clone(),
                    KeysAndAttributes::builder()
                        .keys(ticket_key(ticket_id))
                        .consistent_read(true)
                        .projection_expression("pk, doc, revision, body_hash")
                        .build()?,
                );
                ticket_pending = false;
            }
            if !chunk.is_empty() {
                let mut keys = KeysAndAttributes::builder();
                for id in chunk {
                    keys = keys.keys(mapping_key(tenant, id));
                }
                request.insert(self.mappings.clone(), keys.build()?);
            }
            let mut round = 0;
            while !request.is_empty() {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                for (table, items) in out.responses.unwrap_or_default() {
                    for item in items {
                        self.take_item(&table, &item, &mut reads)?;
                    }
                }
                request = out.unprocessed_keys.unwrap_or_default();
                if !request.is_empty() {
                    round += 1;
                    if round > MAX_UNPROCESSED_ROUNDS {
                        return Err(StoreError::Throttled("unprocessed batch read keys".into()));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20 << round.min(5))).await;
                }
            }
        }
        Ok(reads)
    }

    fn take_item(
        &self,
        table: &str,
        item: &Item,
        reads: &mut CreateReads,
    ) -> Result<(), StoreError> {
        if table == self.tickets {
            reads.ticket = Some(parse_ticket_item(item)?);
        } else {
            let m = mapping_from_item(item)?;
            reads.mappings.insert(m.user_id.clone(), m);
        }
        Ok(())
    }
}
