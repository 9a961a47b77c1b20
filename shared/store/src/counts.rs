//! Tickets per tenant and list status, kept exact by the writes that change a status.
//!
//! One item per tenant (`pk` = `COUNTS`, `sk` = tenant id) holds a number per list status. A
//! ticket's create adds one to its status, and the save that moves it out of `PENDING` moves one
//! from `WAITING_APPROVE` to the final status, in the same `TransactWriteItems` as the ticket
//! write: the counters never count a write that did not happen, or miss one that did. The list's
//! `total` reads one item (one tenant) or the few items of the `COUNTS` partition (every tenant)
//! instead of every matching index entry.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use crate::item::{n, opt_s, s, Item};
use crate::list::LIST_STATUSES;
use crate::{Store, StoreError};

const COUNTS_PK: &str = "COUNTS";

fn counts_key(tenant: &str) -> Item {
    [
        ("pk".to_string(), s(COUNTS_PK)),
        ("sk".to_string(), s(tenant)),
    ]
    .into_iter()
    .collect()
}

/// The counter change of a status change: one less under `from` (none for a new ticket), one
/// more under `to` (list statuses).
pub(crate) fn move_count(
    table: &str,
    tenant: &str,
    from: Option<&str>,
    to: &str,
) -> Result<TransactWriteItem, StoreError> {
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(counts_key(tenant)))
        .expression_attribute_names("#to", to)
        .expression_attribute_values(":one", n(1));
    update = match from {
        Some(from) => update
            .update_expression("ADD #to :one, #from :less")
            .expression_attribute_names("#from", from)
            .expression_attribute_values(":less", n(-1)),
        None => update.update_expression("ADD #to :one"),
    };
    let update = update
        .build()
        .map_err(|e| StoreError::Dynamo(e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// Tickets per list status, in [`LIST_STATUSES`] order.
pub type StatusCounts = [i64; 4];

fn counts_of(item: &Item) -> StatusCounts {
    let mut counts = [0; 4];
    for (i, status) in LIST_STATUSES.iter().enumerate() {
        counts[i] = item
            .get(*status)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    counts
}

impl Store {
    /// The counters of one tenant (one GetItem), or of every tenant summed (one Query of the
    /// `COUNTS` partition: one item per tenant, however many tickets there are).
    pub async fn status_counts(&self, tenant: Option<&str>) -> Result<StatusCounts, StoreError> {
        if let Some(tenant) = tenant {
            let out = self
                .client
                .get_item()
                .table_name(&self.tickets)
                .set_key(Some(counts_key(tenant)))
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            return Ok(out.item.as_ref().map(counts_of).unwrap_or_default());
        }
        let mut total = [0; 4];
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tickets)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(COUNTS_PK))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for item in out.items() {
                if opt_s(item, "sk").is_some() {
                    for (sum, c) in total.iter_mut().zip(counts_of(item)) {
                        *sum += c;
                    }
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(total),
            }
        }
    }
}
