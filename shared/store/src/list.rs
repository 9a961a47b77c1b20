//! The ops list (seed 001) answered by index queries only.
//!
//! Key design: list attributes are spread over `LIST_SHARDS` shards per (tenant, status) and per
//! status, so no partition takes a whole tenant's or status's traffic. A list request queries the
//! partitions its filters name (tenant and/or status; a proposer has a partition of their own),
//! merges them in sort order, and pages by offset or by a cursor (`next_token`: the last sort
//! value and ticket id returned).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Select};
use base64::Engine;
use serde_json::Value;

use crate::item::{n, opt_s, s, Item};
use crate::tickets::LIST_SHARDS;
use crate::{Store, StoreError};

pub const LIST_STATUSES: [&str; 4] = ["WAITING_APPROVE", "APPROVED", "REJECT", "REVOKE"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    StartTime,
    EndTime,
}

impl ListOrder {
    fn attribute(self) -> &'static str {
        match self {
            ListOrder::StartTime => "start_time",
            ListOrder::EndTime => "end_time",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListRequest {
    pub tenant_id: Option<String>,
    /// List-API statuses (`WAITING_APPROVE`, `APPROVED`, `REJECT`, `REVOKE`); empty: all.
    pub statuses: Vec<String>,
    pub proposer_name: Option<String>,
    /// Application (start) time range, inclusive, in ms.
    pub start_from: Option<i64>,
    pub start_to: Option<i64>,
    pub order: ListOrder,
    pub descending: bool,
    pub limit: usize,
    pub offset: usize,
    pub next_token: Option<String>,
}

impl ListRequest {
    /// Whether a list row passes every filter (used where a row was read directly).
    pub fn matches(&self, row: &Value) -> bool {
        let str_of = |k: &str| {
            row.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let start = row
            .get("start_time")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        self.tenant_id
            .as_ref()
            .is_none_or(|t| *t == str_of("workspace_id"))
            && (self.statuses.is_empty() || self.statuses.contains(&str_of("status")))
            && self
                .proposer_name
                .as_ref()
                .is_none_or(|p| *p == str_of("proposer_name"))
            && self.start_from.is_none_or(|f| start >= f)
            && self.start_to.is_none_or(|t| start <= t)
            && (self.order == ListOrder::StartTime
                || row.get("end_time").is_some_and(|v| !v.is_null()))
    }
}

#[derive(Debug, Clone)]
pub struct ListPage {
    pub rows: Vec<Value>,
    pub total: u64,
    pub next_token: Option<String>,
}

/// One sorted row read from an index.
struct Hit {
    sort: i64,
    id: String,
    row: Value,
}

fn encode_cursor(sort: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{sort}:{id}"))
}

/// Whether `token` is a `next_token` this module issued (callers refuse others rather than
/// silently starting over at the first page).
pub fn is_valid_cursor(token: &str) -> bool {
    decode_cursor(token).is_some()
}

fn decode_cursor(token: &str) -> Option<(i64, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (sort, id) = text.split_once(':')?;
    Some((sort.parse().ok()?, id.to_string()))
}

/// A planned query: which index, which partitions, which filters.
struct Plan {
    index: &'static str,
    key_attr: &'static str,
    partitions: Vec<String>,
    sort_attr: &'static str,
    /// The application-time range is part of the key condition (the index sorts by start time).
    range_in_key: bool,
    filters: Vec<String>,
    values: HashMap<String, AttributeValue>,
    names: HashMap<String, String>,
    /// Rows are read whole and ordered by end time, filtered and counted in memory, because the
    /// index cannot do it: the proposer index sorts by start time and does not project
    /// `end_time`, and the end-time indexes do not project `start_time` (a filter on it would
    /// drop every row). The values come from the row's summary.
    read_all: bool,
    /// The application-time range applied in memory (when it is not in the key condition).
    memory_range: (Option<i64>, Option<i64>),
}

fn plan(r: &ListRequest) -> Plan {
    let statuses: Vec<String> = if r.statuses.is_empty() {
        LIST_STATUSES.iter().map(|s| s.to_string()).collect()
    } else {
        r.statuses.clone()
    };
    let mut filters = Vec::new();
    let mut values = HashMap::new();
    let mut names = HashMap::new();
    let (index, key_attr, partitions, sort_attr, proposer_by_end) =
        if let Some(p) = &r.proposer_name {
            if let Some(t) = &r.tenant_id {
                filters.push("tenant_id = :tenant".to_string());
                values.insert(":tenant".to_string(), s(t));
            }
            if !r.statuses.is_empty() {
                names.insert("#st".to_string(), "status".to_string());
                let mut alts = Vec::new();
                for (i, st) in r.statuses.iter().enumerate() {
                    for canon in canonical_of(st) {
                        let key = format!(":st{i}{canon}");
                        alts.push(key.clone());
                        values.insert(key, s(canon));
                    }
                }
                filters.push(format!("#st IN ({})", alts.join(", ")));
            }
            (
                "proposer-start-index",
                "p_pk",
                vec![p.clone()],
                "start_time",
                r.order == ListOrder::EndTime,
            )
        } else {
            let shards = 0..LIST_SHARDS;
            let (index, key_attr, parts): (&str, &str, Vec<String>) = match &r.tenant_id {
                Some(t) => (
                    if r.order == ListOrder::StartTime {
                        "tenant-status-start-index"
                    } else {
                        "tenant-status-end-index"
                    },
                    "ts_pk",
                    statuses
                        .iter()
                        .flat_map(|st| shards.clone().map(move |sh| format!("{t}#{st}#{sh}")))
                        .collect(),
                ),
                None => (
                    if r.order == ListOrder::StartTime {
                        "status-start-index"
                    } else {
                        "status-end-index"
                    },
                    "s_pk",
                    statuses
                        .iter()
                        .flat_map(|st| shards.clone().map(move |sh| format!("{st}#{sh}")))
                        .collect(),
                ),
            };
            (index, key_attr, parts, r.order.attribute(), false)
        };
    // The proposer index sorts by start time whatever the order asked, so its range is a key condition.
    let range_in_key = sort_attr == "start_time";
    let memory_range = if range_in_key {
        (None, None)
    } else {
        (r.start_from, r.start_to)
    };
    let read_all = proposer_by_end || memory_range != (None, None);
    Plan {
        index,
        key_attr,
        partitions,
        sort_attr,
        range_in_key,
        filters,
        values,
        names,
        read_all,
        memory_range,
    }
}

/// The canonical stored statuses behind a list status.
fn canonical_of(list_status: &str) -> Vec<&'static str> {
    match list_status {
        "WAITING_APPROVE" => vec!["PENDING"],
        "APPROVED" => vec!["APPROVED"],
        "REJECT" => vec!["REJECTED", "EXPIRED"],
        "REVOKE" => vec!["WITHDRAWN"],
        _ => vec![],
    }
}

/// Whether a row sorts strictly after the cursor in the requested direction.
fn after_cursor(hit: &Hit, cursor: Option<&(i64, String)>, descending: bool) -> bool {
    match cursor {
        None => true,
        Some((sort, id)) if descending => (hit.sort, &hit.id) < (*sort, id),
        Some((sort, id)) => (hit.sort, &hit.id) > (*sort, id),
    }
}

/// Whether a partition read must go on: fewer than `want` rows past the cursor, or the last row
/// read ties with the `want`-th on the sort value (rows with equal sort values come back in no
/// guaranteed order, so every tie at the boundary is read before the merge orders them by id).
fn wants_more(hits: &[Hit], want: Option<usize>) -> bool {
    match want {
        None => true,
        Some(w) if hits.len() < w => true,
        Some(w) => hits.last().map(|h| h.sort) == hits.get(w.saturating_sub(1)).map(|h| h.sort),
    }
}

impl Store {
    /// Reads one partition in index order: the rows past `cursor` (at least `want` of them, when
    /// given, else all), or with `count_only` just how many rows match.
    #[allow(clippy::too_many_arguments)]
    async fn query_partition(
        &self,
        plan: &Plan,
        partition: &str,
        range: (Option<i64>, Option<i64>),
        descending: bool,
        cursor: Option<&(i64, String)>,
        want: Option<usize>,
        count_only: bool,
    ) -> Result<(Vec<Hit>, u64), StoreError> {
        let mut key = format!("{} = :pk", plan.key_attr);
        let mut values = plan.values.clone();
        values.insert(":pk".into(), s(partition));
        match range {
            (Some(a), Some(b)) => {
                key.push_str(&format!(" AND {} BETWEEN :ka AND :kb", plan.sort_attr));
                values.insert(":ka".into(), n(a));
                values.insert(":kb".into(), n(b));
            }
            (Some(a), None) => {
                key.push_str(&format!(" AND {} >= :ka", plan.sort_attr));
                values.insert(":ka".into(), n(a));
            }
            (None, Some(b)) => {
                key.push_str(&format!(" AND {} <= :kb", plan.sort_attr));
                values.insert(":kb".into(), n(b));
            }
            (None, None) => {}
        }
        let mut hits = Vec::new();
        let mut count = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.tickets)
                .index_name(plan.index)
                .key_condition_expression(&key)
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(!descending)
                .set_exclusive_start_key(start.take());
            if !plan.names.is_empty() {
                q = q.set_expression_attribute_names(Some(plan.names.clone()));
            }
            if !plan.filters.is_empty() {
                q = q.filter_expression(plan.filters.join(" AND "));
            }
            if count_only {
                q = q.select(Select::Count);
            } else if let Some(w) = want {
                // One row more than wanted (two past a cursor, whose own row is read again) shows
                // in the same read whether the boundary row has ties.
                let page = w + 1 + usize::from(cursor.is_some());
                q = q.limit(page.clamp(10, 1000) as i32);
            }
            let out = q.send().await.map_err(StoreError::from_sdk)?;
            count += out.count as u64;
            for it in out.items() {
                let row: Value = opt_s(it, "summary")
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(Value::Null);
                let id = opt_s(it, "ticket_id").unwrap_or_default();
                if plan.read_all {
                    // Every row is read; the caller orders them and applies the cursor.
                    let start = row
                        .get("start_time")
                        .and_then(Value::as_i64)
                        .unwrap_or_default();
                    let (from, to) = plan.memory_range;
                    let in_range = from.is_none_or(|f| start >= f) && to.is_none_or(|t| start <= t);
                    if let (Some(end), true) =
                        (row.get("end_time").and_then(Value::as_i64), in_range)
                    {
                        hits.push(Hit { sort: end, id, row });
                    }
                    continue;
                }
                let sort = it
                    .get(plan.sort_attr)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default();
                let hit = Hit { sort, id, row };
                // Rows at or before the cursor (the key range includes the cursor's sort value)
                // do not count toward `want`.
                if after_cursor(&hit, cursor, descending) {
                    hits.push(hit);
                }
            }
            match out.last_evaluated_key {
                Some(k) if count_only || plan.read_all || wants_more(&hits, want) => {
                    start = Some(k)
                }
                _ => break,
            }
        }
        Ok((hits, count))
    }

    /// One page of the ticket list and the total matching the filters.
    pub async fn list_tickets(&self, r: &ListRequest) -> Result<ListPage, StoreError> {
        if let (Some(from), Some(to)) = (r.start_from, r.start_to) {
            if from > to {
                // An empty application-time range matches nothing (and is no valid key condition).
                return Ok(ListPage {
                    rows: Vec::new(),
                    total: 0,
                    next_token: None,
                });
            }
        }
        let plan = plan(r);
        let cursor = r.next_token.as_deref().and_then(decode_cursor);
        let (offset, want) = match cursor {
            Some(_) => (0, r.limit + 1),
            None => (r.offset, r.offset + r.limit + 1),
        };
        // The key range: the application-time range where the index sorts by it, narrowed by the
        // cursor (inclusive; rows at or before the cursor are dropped while reading).
        let base = if plan.range_in_key {
            (r.start_from, r.start_to)
        } else {
            (None, None)
        };
        let mut key_range = base;
        if let (Some((sort, _)), false) = (&cursor, plan.read_all) {
            if r.descending {
                key_range.1 = Some(key_range.1.map_or(*sort, |b| b.min(*sort)));
            } else {
                key_range.0 = Some(key_range.0.map_or(*sort, |a| a.max(*sort)));
            }
        }
        let key_range_empty = matches!(key_range, (Some(a), Some(b)) if a > b);
        // The partitions are independent: query them all at once, then merge.
        let per_partition = plan.partitions.iter().map(|p| {
            let plan = &plan;
            let cursor = cursor.as_ref();
            async move {
                if plan.read_all {
                    let (h, _) = self
                        .query_partition(plan, p, base, r.descending, None, None, false)
                        .await?;
                    let n = h.len() as u64;
                    return Ok::<_, StoreError>((h, n));
                }
                let page = async {
                    if key_range_empty {
                        return Ok(Vec::new());
                    }
                    self.query_partition(
                        plan,
                        p,
                        key_range,
                        r.descending,
                        cursor,
                        Some(want),
                        false,
                    )
                    .await
                    .map(|(h, _)| h)
                };
                let count = self.query_partition(plan, p, base, r.descending, None, None, true);
                let (h, (_, c)) = futures::future::try_join(page, count).await?;
                Ok((h, c))
            }
        });
        let mut hits = Vec::new();
        let mut total = 0u64;
        for (h, c) in futures::future::try_join_all(per_partition).await? {
            hits.extend(h);
            total += c;
        }
        let dir = |a: &Hit, b: &Hit| (a.sort, &a.id).cmp(&(b.sort, &b.id));
        if r.descending {
            hits.sort_by(|a, b| dir(b, a));
        } else {
            hits.sort_by(dir);
        }
        hits.retain(|h| after_cursor(h, cursor.as_ref(), r.descending));
        let mut page: Vec<Hit> = hits.into_iter().skip(offset).collect();
        let more = page.len() > r.limit;
        page.truncate(r.limit);
        let next_token = if more {
            page.last().map(|h| encode_cursor(h.sort, &h.id))
        } else {
            None
        };
        Ok(ListPage {
            rows: page.into_iter().map(|h| h.row).collect(),
            total,
            next_token,
        })
    }
}
