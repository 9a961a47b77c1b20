//! The ops list (seed 001) answered by index queries only, at a cost that does not grow with the
//! table.
//!
//! Key design: one unsharded partition per filter, in an index per sort order (submission time,
//! finish time): a tenant (`t_pk`), a tenant and list status (`ts_pk`), a list status across
//! tenants (`s_pk`), a proposer (`p_pk`). A page is one Query of the partition its filters name
//! (a few, merged in order, for several statuses, or every status across tenants), reading
//! about `limit` entries. It pages by offset or by a cursor (`next_token`: the last sort value
//! and ticket id returned, and the total).
//!
//! `total` comes from the status counters of the tenant or the proposer ([`crate::counts`]) when
//! they can answer (no application-time range): one read. Otherwise it is counted on the first
//! page (every match read once, `Select: COUNT`) and carried in `next_token`, so later pages
//! read nothing for it and show the total as of the first page.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Select};
use base64::Engine;
use serde_json::Value;

use crate::item::{n, opt_s, s, Item};
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

    /// The index of this order over partitions of one kind (`tenant`, `tenant-status`, ...).
    fn index(self, kind: &str) -> &'static str {
        use crate::schema::*;
        match (kind, self) {
            ("tenant", ListOrder::StartTime) => TENANT_START_INDEX,
            ("tenant", ListOrder::EndTime) => TENANT_END_INDEX,
            ("tenant-status", ListOrder::StartTime) => TENANT_STATUS_START_INDEX,
            ("tenant-status", ListOrder::EndTime) => TENANT_STATUS_END_INDEX,
            ("status", ListOrder::StartTime) => STATUS_START_INDEX,
            ("status", ListOrder::EndTime) => STATUS_END_INDEX,
            (_, ListOrder::StartTime) => PROPOSER_START_INDEX,
            (_, ListOrder::EndTime) => PROPOSER_END_INDEX,
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

/// Where the next page starts, and the total the first page found.
struct Cursor {
    sort: i64,
    id: String,
    total: u64,
}

fn encode_cursor(sort: i64, id: &str, total: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{sort}:{total}:{id}"))
}

/// Whether `token` is a `next_token` this module issued (callers refuse others rather than
/// silently starting over at the first page).
pub fn is_valid_cursor(token: &str) -> bool {
    decode_cursor(token).is_some()
}

fn decode_cursor(token: &str) -> Option<Cursor> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (sort, rest) = text.split_once(':')?;
    let (total, id) = rest.split_once(':')?;
    Some(Cursor {
        sort: sort.parse().ok()?,
        total: total.parse().ok()?,
        id: id.to_string(),
    })
}

/// A planned query: which index, which partitions, which filters.
struct Plan {
    index: &'static str,
    key_attr: &'static str,
    partitions: Vec<String>,
    sort_attr: &'static str,
    /// The application-time range is part of the key condition (the index sorts by start time);
    /// otherwise it is a filter on the projected `start_time`.
    range_in_key: bool,
    filters: Vec<String>,
    values: HashMap<String, AttributeValue>,
    names: HashMap<String, String>,
    /// The status counters give `total` (no application-time range).
    counted: bool,
}

fn plan(r: &ListRequest) -> Plan {
    let mut statuses: Vec<String> = Vec::new();
    for st in &r.statuses {
        if !statuses.contains(st) {
            statuses.push(st.clone());
        }
    }
    let every_status = statuses.is_empty() || statuses.len() == LIST_STATUSES.len();
    let mut filters = Vec::new();
    let mut values = HashMap::new();
    let mut names = HashMap::new();
    let (kind, key_attr, partitions): (&str, &str, Vec<String>) =
        match (&r.proposer_name, &r.tenant_id) {
            (Some(p), tenant) => {
                if let Some(t) = tenant {
                    filters.push("tenant_id = :tenant".to_string());
                    values.insert(":tenant".to_string(), s(t));
                }
                if !every_status {
                    names.insert("#st".to_string(), "status".to_string());
                    let mut alts = Vec::new();
                    for (i, st) in statuses.iter().enumerate() {
                        for canon in canonical_of(st) {
                            let key = format!(":st{i}{canon}");
                            alts.push(key.clone());
                            values.insert(key, s(canon));
                        }
                    }
                    filters.push(format!("#st IN ({})", alts.join(", ")));
                }
                ("proposer", "p_pk", vec![p.clone()])
            }
            (None, Some(t)) if every_status => ("tenant", "t_pk", vec![t.clone()]),
            (None, Some(t)) => (
                "tenant-status",
                "ts_pk",
                statuses.iter().map(|st| format!("{t}#{st}")).collect(),
            ),
            (None, None) => (
                "status",
                "s_pk",
                if statuses.is_empty() {
                    LIST_STATUSES.iter().map(|s| s.to_string()).collect()
                } else {
                    statuses.clone()
                },
            ),
        };
    let range_in_key = r.order == ListOrder::StartTime;
    if !range_in_key {
        names.insert("#start".to_string(), "start_time".to_string());
        match (r.start_from, r.start_to) {
            (Some(a), Some(b)) => {
                filters.push("#start BETWEEN :fa AND :fb".to_string());
                values.insert(":fa".into(), n(a));
                values.insert(":fb".into(), n(b));
            }
            (Some(a), None) => {
                filters.push("#start >= :fa".to_string());
                values.insert(":fa".into(), n(a));
            }
            (None, Some(b)) => {
                filters.push("#start <= :fb".to_string());
                values.insert(":fb".into(), n(b));
            }
            (None, None) => {
                names.remove("#start");
            }
        }
    }
    Plan {
        index: r.order.index(kind),
        key_attr,
        partitions,
        sort_attr: r.order.attribute(),
        range_in_key,
        filters,
        values,
        names,
        counted: r.start_from.is_none() && r.start_to.is_none(),
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
fn after_cursor(hit: &Hit, cursor: Option<&Cursor>, descending: bool) -> bool {
    match cursor {
        None => true,
        Some(c) if descending => (hit.sort, &hit.id) < (c.sort, &c.id),
        Some(c) => (hit.sort, &hit.id) > (c.sort, &c.id),
    }
}

/// Whether a partition read must go on: fewer than `want` rows past the cursor, or the last row
/// read ties with the `want`-th on the sort value (rows with equal sort values come back in no
/// guaranteed order, so every tie at the boundary is read before the merge orders them by id).
fn wants_more(hits: &[Hit], want: usize) -> bool {
    hits.len() < want
        || hits.last().map(|h| h.sort) == hits.get(want.saturating_sub(1)).map(|h| h.sort)
}

/// The key condition of one partition and sort-key range.
fn key_condition(
    plan: &Plan,
    partition: &str,
    range: (Option<i64>, Option<i64>),
) -> (String, HashMap<String, AttributeValue>) {
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
    (key, values)
}

impl Store {
    fn list_query(
        &self,
        plan: &Plan,
        key: &str,
        values: &HashMap<String, AttributeValue>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let mut q = self
            .client
            .query()
            .table_name(&self.tickets)
            .index_name(plan.index)
            .key_condition_expression(key)
            .set_expression_attribute_values(Some(values.clone()));
        if !plan.names.is_empty() {
            q = q.set_expression_attribute_names(Some(plan.names.clone()));
        }
        if !plan.filters.is_empty() {
            q = q.filter_expression(plan.filters.join(" AND "));
        }
        q
    }

    /// Reads one partition in index order: at least `want` rows past `cursor` (and every row
    /// tying with the last of them), about `want` index entries when no filter drops rows.
    async fn query_partition(
        &self,
        plan: &Plan,
        partition: &str,
        range: (Option<i64>, Option<i64>),
        descending: bool,
        cursor: Option<&Cursor>,
        want: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        let (key, values) = key_condition(plan, partition, range);
        let mut hits = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            // One row more than wanted (two past a cursor, whose own row is read again) shows
            // in the same read whether the boundary row has ties.
            let page = want + 1 + usize::from(cursor.is_some());
            let out = self
                .list_query(plan, &key, &values)
                .scan_index_forward(!descending)
                .limit(page.clamp(10, 1000) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for it in out.items() {
                let row: Value = opt_s(it, "summary")
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(Value::Null);
                let id = opt_s(it, "ticket_id").unwrap_or_default();
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
                Some(k) if wants_more(&hits, want) => start = Some(k),
                _ => return Ok(hits),
            }
        }
    }

    /// How many entries of one partition match (every match read once, counted by DynamoDB).
    async fn count_partition(
        &self,
        plan: &Plan,
        partition: &str,
        range: (Option<i64>, Option<i64>),
    ) -> Result<u64, StoreError> {
        let (key, values) = key_condition(plan, partition, range);
        let mut count = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .list_query(plan, &key, &values)
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            count += out.count as u64;
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(count),
            }
        }
    }

    /// The total of a first page: the counters where they answer, else counted.
    async fn list_total(
        &self,
        r: &ListRequest,
        plan: &Plan,
        range: (Option<i64>, Option<i64>),
    ) -> Result<u64, StoreError> {
        if plan.counted {
            let counts = self
                .status_counts(crate::counts::CountOf {
                    tenant: r.tenant_id.as_deref(),
                    proposer: r.proposer_name.as_deref(),
                })
                .await?;
            let total: i64 = LIST_STATUSES
                .iter()
                .zip(counts)
                .filter(|(st, _)| r.statuses.is_empty() || r.statuses.iter().any(|w| w == *st))
                // Finish-time order lists finished tickets only.
                .filter(|(st, _)| r.order == ListOrder::StartTime || **st != "WAITING_APPROVE")
                .map(|(_, c)| c.max(0))
                .sum();
            return Ok(total as u64);
        }
        let counts = plan
            .partitions
            .iter()
            .map(|p| self.count_partition(plan, p, range));
        Ok(futures::future::try_join_all(counts)
            .await?
            .into_iter()
            .sum())
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
        if let Some(c) = &cursor {
            if r.descending {
                key_range.1 = Some(key_range.1.map_or(c.sort, |b| b.min(c.sort)));
            } else {
                key_range.0 = Some(key_range.0.map_or(c.sort, |a| a.max(c.sort)));
            }
        }
        let key_range_empty = matches!(key_range, (Some(a), Some(b)) if a > b);
        // The partitions are independent: query them all at once, and the total beside them.
        let pages = plan.partitions.iter().map(|p| {
            let plan = &plan;
            let cursor = cursor.as_ref();
            async move {
                if key_range_empty {
                    return Ok(Vec::new());
                }
                self.query_partition(plan, p, key_range, r.descending, cursor, want)
                    .await
            }
        });
        let total = async {
            match &cursor {
                Some(c) => Ok(c.total),
                None => self.list_total(r, &plan, base).await,
            }
        };
        let (pages, total) =
            futures::future::try_join(futures::future::try_join_all(pages), total).await?;
        let mut hits: Vec<Hit> = pages.into_iter().flatten().collect();
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
            page.last().map(|h| encode_cursor(h.sort, &h.id, total))
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
