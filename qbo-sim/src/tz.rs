//! US Pacific time (the company time zone of every simulated realm), without a tz database.
//!
//! Rule since 2007: daylight time from the second Sunday of March, 02:00 local standard time,
//! to the first Sunday of November, 02:00 local daylight time. From 1987 to 2006: first Sunday
//! of April to the last Sunday of October. Earlier years are treated with the 1987 rule.

use std::fmt::Write as _;

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

const PST_SECS: i32 = -8 * 3600;
const PDT_SECS: i32 = -7 * 3600;

/// The n-th (1-based) given weekday of a month.
fn nth_weekday(year: i32, month: Month, weekday: Weekday, n: u8) -> Date {
    // Day 1 always exists.
    let first = Date::from_calendar_date(year, month, 1).unwrap_or(Date::MIN);
    let shift = (7 + weekday.number_days_from_monday() as i64
        - first.weekday().number_days_from_monday() as i64)
        % 7;
    first + Duration::days(shift + 7 * (i64::from(n) - 1))
}

/// The last given weekday of a month.
fn last_weekday(year: i32, month: Month, weekday: Weekday) -> Date {
    let next_month_first = match month {
        Month::December => Date::from_calendar_date(year + 1, Month::January, 1),
        m => Date::from_calendar_date(year, m.next(), 1),
    }
    .unwrap_or(Date::MAX);
    let last = next_month_first - Duration::days(1);
    let back = (7 + last.weekday().number_days_from_monday() as i64
        - weekday.number_days_from_monday() as i64)
        % 7;
    last - Duration::days(back)
}

/// The UTC instants at which daylight time starts and ends in a given year.
fn dst_bounds_utc(year: i32) -> (OffsetDateTime, OffsetDateTime) {
    let (start_day, end_day) = if year >= 2007 {
        (
            nth_weekday(year, Month::March, Weekday::Sunday, 2),
            nth_weekday(year, Month::November, Weekday::Sunday, 1),
        )
    } else {
        (
            nth_weekday(year, Month::April, Weekday::Sunday, 1),
            last_weekday(year, Month::October, Weekday::Sunday),
        )
    };
    // 02:00 PST = 10:00 UTC; 02:00 PDT = 09:00 UTC.
    let start = PrimitiveDateTime::new(
        start_day,
        Time::from_hms(10, 0, 0).unwrap_or(Time::MIDNIGHT),
    )
    .assume_utc();
    let end = PrimitiveDateTime::new(end_day, Time::from_hms(9, 0, 0).unwrap_or(Time::MIDNIGHT))
        .assume_utc();
    (start, end)
}

/// The Pacific offset in force at a given instant.
pub(crate) fn pacific_offset(at: OffsetDateTime) -> UtcOffset {
    let utc = at.to_offset(UtcOffset::UTC);
    let (start, end) = dst_bounds_utc(utc.year());
    let secs = if utc >= start && utc < end {
        PDT_SECS
    } else {
        PST_SECS
    };
    UtcOffset::from_whole_seconds(secs).unwrap_or(UtcOffset::UTC)
}

/// The instant shown in Pacific local time.
pub(crate) fn to_pacific(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(pacific_offset(at))
}

/// Interprets a local Pacific wall-clock time (the company's time zone) as an instant.
/// In the spring gap the standard-time reading is used; in the autumn overlap, the first
/// (daylight) occurrence.
pub(crate) fn from_pacific_local(local: PrimitiveDateTime) -> OffsetDateTime {
    let pdt = UtcOffset::from_whole_seconds(PDT_SECS).unwrap_or(UtcOffset::UTC);
    let pst = UtcOffset::from_whole_seconds(PST_SECS).unwrap_or(UtcOffset::UTC);
    let as_pdt = local.assume_offset(pdt);
    if pacific_offset(as_pdt) == pdt {
        return as_pdt;
    }
    local.assume_offset(pst)
}

fn push_2(out: &mut String, v: u8) {
    out.push(char::from(b'0' + v / 10));
    out.push(char::from(b'0' + v % 10));
}

fn push_date(out: &mut String, d: Date) {
    let y = d.year();
    if (0..=9999).contains(&y) {
        let y = y as u16;
        out.push(char::from(b'0' + (y / 1000) as u8));
        out.push(char::from(b'0' + ((y / 100) % 10) as u8));
        out.push(char::from(b'0' + ((y / 10) % 10) as u8));
        out.push(char::from(b'0' + (y % 10) as u8));
    } else {
        let _ = write!(out, "{y}");
    }
    out.push('-');
    push_2(out, d.month() as u8);
    out.push('-');
    push_2(out, d.day());
}

/// Appends `YYYY-MM-DD`.
pub(crate) fn write_date(out: &mut String, d: Date) {
    push_date(out, d);
}

/// Appends the instant as QBO writes `MetaData` timestamps: Pacific local time with its offset,
/// whole seconds, e.g. `2015-07-24T10:33:39-07:00`.
pub(crate) fn write_pacific_secs(out: &mut String, at: OffsetDateTime) {
    let local = to_pacific(at);
    write_local(out, local, false);
}

/// Appends the instant as the `time` field of responses: Pacific, milliseconds, offset.
pub(crate) fn write_pacific_millis(out: &mut String, at: OffsetDateTime) {
    let local = to_pacific(at);
    write_local(out, local, true);
}

fn write_local(out: &mut String, local: OffsetDateTime, millis: bool) {
    push_date(out, local.date());
    out.push('T');
    push_2(out, local.hour());
    out.push(':');
    push_2(out, local.minute());
    out.push(':');
    push_2(out, local.second());
    if millis {
        let ms = local.millisecond();
        out.push('.');
        out.push(char::from(b'0' + (ms / 100) as u8));
        out.push(char::from(b'0' + ((ms / 10) % 10) as u8));
        out.push(char::from(b'0' + (ms % 10) as u8));
    }
    let off = local.offset().whole_seconds();
    out.push(if off < 0 { '-' } else { '+' });
    let abs = off.unsigned_abs();
    push_2(out, (abs / 3600) as u8);
    out.push(':');
    push_2(out, ((abs / 60) % 60) as u8);
}

/// `time` field of a response for now.
pub(crate) fn now_pacific_millis() -> String {
    pacific_millis(OffsetDateTime::now_utc())
}

/// `time` field of a response for `t` (a realm's simulated now).
pub(crate) fn pacific_millis(t: OffsetDateTime) -> String {
    let mut s = String::with_capacity(29);
    write_pacific_millis(&mut s, t);
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::{date, datetime};

    fn fmt(at: OffsetDateTime) -> String {
        let mut s = String::new();
        write_pacific_secs(&mut s, at);
        s
    }

    #[test]
    fn dst_starts_second_sunday_of_march_2023() {
        // 2023-03-12 is the second Sunday of March.
        assert_eq!(
            nth_weekday(2023, Month::March, Weekday::Sunday, 2),
            date!(2023 - 03 - 12)
        );
        assert_eq!(
            fmt(datetime!(2023-03-12 09:59:59 UTC)),
            "2023-03-12T01:59:59-08:00"
        );
        assert_eq!(
            fmt(datetime!(2023-03-12 10:00:00 UTC)),
            "2023-03-12T03:00:00-07:00"
        );
    }

    #[test]
    fn dst_ends_first_sunday_of_november_2023() {
        assert_eq!(
            nth_weekday(2023, Month::November, Weekday::Sunday, 1),
            date!(2023 - 11 - 05)
        );
        assert_eq!(
            fmt(datetime!(2023-11-05 08:59:59 UTC)),
            "2023-11-05T01:59:59-07:00"
        );
        assert_eq!(
            fmt(datetime!(2023-11-05 09:00:00 UTC)),
            "2023-11-05T01:00:00-08:00"
        );
    }

    #[test]
    fn other_years_and_old_rule() {
        assert_eq!(
            fmt(datetime!(2024-03-10 10:00:00 UTC)),
            "2024-03-10T03:00:00-07:00"
        );
        assert_eq!(
            fmt(datetime!(2024-11-03 09:00:00 UTC)),
            "2024-11-03T01:00:00-08:00"
        );
        assert_eq!(
            fmt(datetime!(2026-01-01 00:00:00 UTC)),
            "2025-12-31T16:00:00-08:00"
        );
        // 2006: first Sunday of April (April 2) to last Sunday of October (Oct 29).
        assert_eq!(
            fmt(datetime!(2006-04-02 09:59:59 UTC)),
            "2006-04-02T01:59:59-08:00"
        );
        assert_eq!(
            fmt(datetime!(2006-04-02 10:00:00 UTC)),
            "2006-04-02T03:00:00-07:00"
        );
        assert_eq!(
            fmt(datetime!(2006-10-29 09:00:00 UTC)),
            "2006-10-29T01:00:00-08:00"
        );
        assert_eq!(
            last_weekday(2006, Month::October, Weekday::Sunday),
            date!(2006 - 10 - 29)
        );
    }

    #[test]
    fn utc_midnight_in_pacific() {
        assert_eq!(
            fmt(datetime!(2023-07-01 00:00:00 UTC)),
            "2023-06-30T17:00:00-07:00"
        );
        assert_eq!(
            fmt(datetime!(2023-06-30 23:59:59 UTC)),
            "2023-06-30T16:59:59-07:00"
        );
    }

    #[test]
    fn local_to_instant() {
        let at = from_pacific_local(datetime!(2023-01-31 00:00:00));
        assert_eq!(at, datetime!(2023-01-31 08:00:00 UTC));
        let at = from_pacific_local(datetime!(2023-07-31 00:00:00));
        assert_eq!(at, datetime!(2023-07-31 07:00:00 UTC));
    }

    #[test]
    fn millis_format() {
        let mut s = String::new();
        write_pacific_millis(&mut s, datetime!(2015-07-29 16:29:56.229 UTC));
        assert_eq!(s, "2015-07-29T09:29:56.229-07:00");
    }
}
