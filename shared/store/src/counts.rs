//! Tickets per list status, per tenant and per proposer in a tenant, kept exact by the writes
//! that change a status.
//!
//! Items of the `COUNTS` partition hold a number per list status: `T#<tenant>` for a tenant,
//! `P#<proposer>#<tenant>` for a proposer's tickets in one tenant. A ticket's create adds one to
//! its status in both, and the save that moves it out of `PENDING` moves one from
//! `WAITING_APPROVE` to the final status in both, in the same `TransactWriteItems` as the ticket
//! write: the counters never count a write that did not happen, or miss one that did. The list's
//! `total` reads one item (a tenant, a proposer in a tenant) or the few items of one prefix
//! (every tenant; a proposer's tenants) instead of every matching index entry.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use crate::item::{n, opt_s, s, Item};
use crate::list::LIST_STATUSES;
use crate::{Store, StoreError};

const COUNTS_PK: &str = "COUNTS";
const TENANT_PREFIX: &str = "T#";
const PROPOSER_PREFIX: &str = "P#";

fn counts_key(sk: String) -> Item {
    [("pk".to_string(), s(COUNTS_PK)), ("sk".to_string(), s(sk))]
        .into_iter()
        .collect()
}

fn tenant_sk(tenant: &str) -> String {
    format!("{TENANT_PREFIX}{tenant}")
}

/// Tenant ids hold no `#` (bounds), so the tenant is what follows the last `#`.
fn proposer_sk(proposer: &str, tenant: Option<&str>) -> String {
    format!("{PROPOSER_PREFIX}{proposer}#{}", tenant.unwrap_or_default())
}

/// Whose counters a status change moves: the tenant's and its proposer's in that tenant.
pub(crate) struct Counted<'a> {
    pub tenant: &'a str,
    pub proposer: &'a str,
}

/// The counter changes of a status change: one less under `from` (none for a new ticket), one
/// more under `to` (list statuses), for the tenant and for the proposer in the tenant.
pub(crate) fn move_count(
    table: &str,
    who: &Counted<'_>,
    from: Option<&str>,
    to: &str,
) -> Result<Vec<TransactWriteItem>, StoreError> {
    [
        tenant_sk(who.tenant),
        proposer_sk(who.proposer, Some(who.tenant)),
    ]
    .into_iter()
    .map(|sk| move_one(table, sk, from, to))
    .collect()
}

fn move_one(
    table: &str,
    sk: String,
    from: Option<&str>,
    to: &str,
) -> Result<TransactWriteItem, StoreError> {
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(counts_key(sk)))
        .expression_attribute_names("#to", to)
        .expression_attribute_values(":one", n(1));
    update = match from {
        Some(from) => update
            .update_expression("ADD #to :one, #from :less")
            .expression_attribute_names("#from", from)
            .expression_attribute_values(":less", n(-1)),
        None => update.update_expression("ADD #to :one"),
    };
    let update = update.build()?;
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

/// Whose tickets a total counts.
#[derive(Debug, Clone, Copy)]
pub struct CountOf<'a> {
    pub tenant: Option<&'a str>,
    pub proposer: Option<&'a str>,
}

impl Store {
    /// The counters of one tenant or one proposer in a tenant (one GetItem), or summed over every
    /// tenant (one Query of the items of a prefix: one per tenant, however many tickets there are).
    pub async fn status_counts(&self, of: CountOf<'_>) -> Result<StatusCounts, StoreError> {
        let (exact, prefix) = match (of.proposer, of.tenant) {
            (None, Some(t)) => (Some(tenant_sk(t)), String::new()),
            (Some(p), Some(t)) => (Some(proposer_sk(p, Some(t))), String::new()),
            (None, None) => (None, TENANT_PREFIX.to_string()),
            (Some(p), None) => (None, proposer_sk(p, None)),
        };
        if let Some(sk) = exact {
            let out = self
                .client
                .get_item()
                .table_name(&self.tickets)
                .set_key(Some(counts_key(sk)))
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            return Ok(out.item.as_ref().map(counts_of).unwrap_or_default());
        }
        let mut total = [0; 4];
        for item in &self
            .items_with_prefix(COUNTS_PK.into(), &prefix, false)
            .await?
        {
            // The rest of the key is one tenant id (which holds no `#`): a proposer whose name
            // goes on past this one's with a `#` is someone else.
            let sk = opt_s(item, "sk").unwrap_or_default();
            if sk.strip_prefix(&prefix).is_some_and(|t| !t.contains('#')) {
                for (sum, c) in total.iter_mut().zip(counts_of(item)) {
                    *sum += c;
                }
            }
        }
        Ok(total)
    }
}
