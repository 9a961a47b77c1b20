//! Civil-date arithmetic on the `yyyy-mm-dd` strings and millisecond timestamps Dataphin sends.
//! Pure functions (proleptic Gregorian, UTC) so that the domain crate needs no clock or tz data.

/// Days since 1970-01-01 of a `yyyy-mm-dd` date; anything after the date (a time of day) is
/// ignored. `None` for text that is not a real calendar date.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    let date = text.trim().get(..10)?;
    let mut parts = date.split('-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&month) {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Milliseconds since the epoch of a `yyyy-mm-ddTHH:MM[:SS]Z` time (DingTalk's format, UTC).
pub fn parse_datetime_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let days = parse_date(text)?;
    let time = text.get(11..)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds: i64 = parts
        .next()
        .map_or(Some(0), |s| s.get(..2).unwrap_or(s).parse().ok())?;
    if hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    Some(((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000)
}

/// Whole days from `start` to `end` (both `yyyy-mm-dd`); `None` if either is not a date or the
/// range runs backwards.
pub(crate) fn days_between(start: &str, end: &str) -> Option<u32> {
    let diff = parse_date(end)? - parse_date(start)?;
    u32::try_from(diff).ok()
}

/// A millisecond epoch timestamp as `yyyy-mm-dd HH:MM UTC`.
pub(crate) fn format_millis(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_across_months_years_and_leap_days() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(days_between("2026-11-24", "2026-12-24"), Some(30));
        assert_eq!(days_between("2024-02-01", "2024-03-01"), Some(29));
        assert_eq!(days_between("2023-02-01", "2023-03-01"), Some(28));
        assert_eq!(days_between("2025-12-31", "2026-01-01"), Some(1));
        assert_eq!(days_between("2026-12-24", "2026-11-24"), None);
        assert_eq!(days_between("2026-02-30", "2026-03-01"), None);
        assert_eq!(parse_date("2026-12-01 00:00:00"), parse_date("2026-12-01"));
        assert_eq!(parse_date("soon"), None);
    }

    #[test]
    fn dingtalk_times_parse_to_millis() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:01Z"), Some(60_000));
        assert_eq!(
            parse_datetime_ms("2022-08-31T11:52Z"),
            Some(1_661_946_720_000)
        );
        assert_eq!(
            parse_datetime_ms("2022-08-31T11:52:30Z"),
            Some(1_661_946_750_000)
        );
        assert_eq!(parse_datetime_ms("2022-08-31"), None);
    }

    #[test]
    fn millis_format_as_utc() {
        assert_eq!(format_millis(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_millis(1_763_971_200_000), "2025-11-24 08:00 UTC");
        assert_eq!(format_millis(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
