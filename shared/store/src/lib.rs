//! The DynamoDB store: the only crate that talks to DynamoDB.
//!
//! Tickets live in the tickets table as one item each (the ticket document plus the attributes the
//! indexes need); every write of a ticket is conditional on its storage revision, so concurrent
//! writers never lose each other's changes. User mappings live in their own table.

pub mod batch;
pub mod counts;
pub mod error;
pub mod history;
pub mod inbox;
mod item;
pub mod list;
pub mod mappings;
pub mod meter;
pub mod rules;
pub mod schema;
pub mod tickets;

pub use error::StoreError;
pub use inbox::{Recorded, RecordedEvent};
pub use mappings::{Mapping, MappingPage};
pub use tickets::{CreateOutcome, StoredTicket};

use aws_sdk_dynamodb::Client;

/// Table names and the client, built once per container.
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    tickets: String,
    mappings: String,
    /// The rules document as last read by this container (shared by clones).
    rules_cache: rules::RulesCache,
}

impl Store {
    pub fn new(client: Client, tickets_table: String, mappings_table: String) -> Self {
        Store {
            client,
            tickets: tickets_table,
            mappings: mappings_table,
            rules_cache: rules::RulesCache::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every item of the tickets table's partition `pk` whose sort key begins with `prefix`, all
    /// pages (kept events of an instance, a tenant's counters).
    pub(crate) async fn items_with_prefix(
        &self,
        pk: String,
        prefix: &str,
        consistent: bool,
    ) -> Result<Vec<item::Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tickets)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", item::s(pk.clone()))
                .expression_attribute_values(":prefix", item::s(prefix))
                .consistent_read(consistent)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(items),
            }
        }
    }

    /// Proves the tickets table answers (connect, init warm-up): one strongly consistent read of a
    /// key that never exists. It lies in the rules partition, the one part of the tickets table
    /// every function may read (the admin function's grant is limited to it).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .get_item()
            .table_name(&self.tickets)
            .key("pk", item::s("RULES"))
            .key("sk", item::s("#PING"))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }
}
