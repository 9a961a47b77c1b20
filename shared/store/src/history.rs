//! The item budget of a ticket: DynamoDB holds 400 KB an item, and the ticket item already holds
//! the compressed submission (up to [`crate::tickets::MAX_STORED_SUBMISSION`]). History grows with
//! every event, so once the entries in the item pass [`HISTORY_IN_ITEM`] bytes, a save moves the
//! oldest of them to items of their own under the ticket's key (`HIST#<index of the first entry>`),
//! in the same transaction as the ticket write: an entry is always in exactly one place. The detail
//! reads them back, a page at a time.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use base64::Engine;
use models::ticket::{HistoryEntry, Ticket};

use crate::item::{n, opt_s, s, Item};
use crate::tickets::ticket_pk;
use crate::{Store, StoreError};

/// History bytes (as JSON) a ticket item may hold before its oldest entries move out.
pub const HISTORY_IN_ITEM: usize = 32 * 1024;
/// What stays in the item after a move: about the newest this many bytes (at least one entry).
const HISTORY_KEPT: usize = 8 * 1024;
/// Archived items a detail page reads (each about `HISTORY_IN_ITEM - HISTORY_KEPT` bytes).
pub const HISTORY_PAGE_ITEMS: i32 = 4;

const HIST_PREFIX: &str = "HIST#";

fn entry_size(e: &HistoryEntry) -> usize {
    serde_json::to_string(e).map_or(0, |t| t.len() + 1)
}

/// What a save moved out of the item, to put back in memory if the write fails.
pub(crate) struct Moved {
    pub entries: Vec<HistoryEntry>,
    pub archived_before: u64,
}

impl Moved {
    pub fn undo(self, ticket: &mut Ticket) {
        let mut history = self.entries;
        history.append(&mut ticket.history);
        ticket.history = history;
        ticket.history_archived = self.archived_before;
    }
}

/// Moves the oldest entries out of `ticket.history` when it is over budget; returns the write of
/// the archive item (for the save's transaction) and what moved.
pub(crate) fn archive_if_over_budget(
    table: &str,
    ticket: &mut Ticket,
) -> Result<Option<(TransactWriteItem, Moved)>, StoreError> {
    let sizes: Vec<usize> = ticket.history.iter().map(entry_size).collect();
    if sizes.iter().sum::<usize>() <= HISTORY_IN_ITEM {
        return Ok(None);
    }
    // Keep the newest entries that fit in HISTORY_KEPT (at least the last one).
    let mut kept_bytes = 0;
    let mut keep_from = sizes.len() - 1;
    while keep_from > 0 && kept_bytes + sizes[keep_from - 1] + sizes[keep_from] <= HISTORY_KEPT {
        kept_bytes += sizes[keep_from];
        keep_from -= 1;
    }
    let entries: Vec<HistoryEntry> = ticket.history.drain(..keep_from).collect();
    let first = ticket.history_archived;
    let text = serde_json::to_string(&entries).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let item: Item = [
        ("pk".to_string(), s(ticket_pk(&ticket.id))),
        ("sk".to_string(), s(format!("{HIST_PREFIX}{first:010}"))),
        ("entries".to_string(), s(text)),
        ("count".to_string(), n(entries.len())),
    ]
    .into_iter()
    .collect();
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(sk)")
        .build()?;
    ticket.history_archived += entries.len() as u64;
    Ok(Some((
        TransactWriteItem::builder().put(put).build(),
        Moved {
            entries,
            archived_before: first,
        },
    )))
}

/// One page of a ticket's archived history, oldest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// Where the next page starts; none when the archived entries are all read.
    pub next_token: Option<String>,
}

/// Whether `token` is a history token [`Store::archived_history`] returned.
pub fn is_valid_history_token(token: &str) -> bool {
    decode_token(token).is_some()
}

fn decode_token(token: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let sk = String::from_utf8(raw).ok()?;
    let index = sk.strip_prefix(HIST_PREFIX)?;
    (index.len() == 10 && index.bytes().all(|b| b.is_ascii_digit())).then_some(sk)
}

impl Store {
    /// Archived history entries of a ticket, oldest first: one Query of up to
    /// [`HISTORY_PAGE_ITEMS`] archive items after `token`.
    pub async fn archived_history(
        &self,
        ticket_id: &str,
        token: Option<&str>,
    ) -> Result<HistoryPage, StoreError> {
        let start = match token {
            Some(t) => {
                let sk = decode_token(t)
                    .ok_or_else(|| StoreError::Corrupt("history token".to_string()))?;
                Some(
                    [
                        ("pk".to_string(), s(ticket_pk(ticket_id))),
                        ("sk".to_string(), s(sk)),
                    ]
                    .into_iter()
                    .collect::<Item>(),
                )
            }
            None => None,
        };
        let out = self
            .client
            .query()
            .table_name(&self.tickets)
            .key_condition_expression("pk = :pk AND begins_with(sk, :hist)")
            .expression_attribute_values(":pk", s(ticket_pk(ticket_id)))
            .expression_attribute_values(":hist", s(HIST_PREFIX))
            .set_exclusive_start_key(start)
            .limit(HISTORY_PAGE_ITEMS)
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let mut page = HistoryPage::default();
        for item in out.items() {
            let text = opt_s(item, "entries").unwrap_or_default();
            let mut entries: Vec<HistoryEntry> = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("archived history: {e}")))?;
            page.entries.append(&mut entries);
        }
        page.next_token = out
            .last_evaluated_key
            .as_ref()
            .and_then(|k| opt_s(k, "sk"))
            .map(|sk| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk));
        Ok(page)
    }
}
