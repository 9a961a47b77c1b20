//! The DingTalk call meter: how many API calls the bridge spent per UTC day and month, against
//! the organisation's monthly budget (DINGTALK.md, "Throttles and quotas"). One item per month
//! (`METER#dingtalk` / `MONTH#2026-12`) holds the month's total and one attribute per day, so a
//! count is one `UpdateItem ADD` (1 WCU) per request that called DingTalk, and reading day and
//! month is one `GetItem`.

use std::collections::BTreeMap;

use crate::item::{n, s};
use crate::{Store, StoreError};

const METER_PK: &str = "METER#dingtalk";
const MONTH_TOTAL: &str = "calls";

/// The calls counted for one month, with today's share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCount {
    /// `2026-12`
    pub month: String,
    pub month_calls: u64,
    /// `2026-12-02`
    pub day: String,
    pub day_calls: u64,
    /// Calls per day of the month (`2026-12-01` → n), days without calls left out.
    pub days: BTreeMap<String, u64>,
}

/// (`2026-12`, `02`) for a Unix ms time, in UTC.
fn month_and_day(ms: i64) -> (String, String) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (
        format!("{:04}-{:02}", t.year(), u8::from(t.month())),
        format!("{:02}", t.day()),
    )
}

fn month_sk(month: &str) -> String {
    format!("MONTH#{month}")
}

impl Store {
    /// Adds `calls` DingTalk calls made at `now_ms` to their day and month.
    pub async fn count_dingtalk_calls(&self, calls: u64, now_ms: i64) -> Result<(), StoreError> {
        if calls == 0 {
            return Ok(());
        }
        let (month, day) = month_and_day(now_ms);
        self.client
            .update_item()
            .table_name(&self.tickets)
            .key("pk", s(METER_PK))
            .key("sk", s(month_sk(&month)))
            .update_expression("ADD #total :n, #day :n")
            .expression_attribute_names("#total", MONTH_TOTAL)
            .expression_attribute_names("#day", format!("day_{day}"))
            .expression_attribute_values(":n", n(calls))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    /// The calls counted in the month of `now_ms`, and on its day.
    pub async fn dingtalk_calls(&self, now_ms: i64) -> Result<CallCount, StoreError> {
        let (month, day) = month_and_day(now_ms);
        let out = self
            .client
            .get_item()
            .table_name(&self.tickets)
            .key("pk", s(METER_PK))
            .key("sk", s(month_sk(&month)))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let mut count = CallCount {
            day: format!("{month}-{day}"),
            month: month.clone(),
            ..CallCount::default()
        };
        for (name, value) in out.item.unwrap_or_default() {
            let Some(v) = value.as_n().ok().and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            if name == MONTH_TOTAL {
                count.month_calls = v;
            } else if let Some(d) = name.strip_prefix("day_") {
                if d == day {
                    count.day_calls = v;
                }
                count.days.insert(format!("{month}-{d}"), v);
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::month_and_day;

    #[test]
    fn utc_month_and_day() {
        assert_eq!(month_and_day(0), ("1970-01".into(), "01".into()));
        // 2026-12-31 23:59:59.999 and the next millisecond
        assert_eq!(
            month_and_day(1_798_761_599_999),
            ("2026-12".into(), "31".into())
        );
        assert_eq!(
            month_and_day(1_798_761_600_000),
            ("2027-01".into(), "01".into())
        );
        assert_eq!(
            month_and_day(1_709_164_800_000),
            ("2024-02".into(), "29".into())
        );
    }
}
