//! Timestamp parsing and rendering in the forms QBO uses.

use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Parses a QBO timestamp (`2015-07-29T09:29:56-07:00`, `...Z`, `...-0700`, optional fraction)
/// and converts it to UTC.
pub(crate) fn parse_datetime(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t.to_offset(UtcOffset::UTC));
    }
    // The older form without a colon in the offset: `-0700` / `+0530`.
    let (body, sign, hours, minutes) = split_compact_offset(text)?;
    let local = PrimitiveDateTime::parse(
        body,
        format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        ),
    )
    .ok()?;
    let seconds = sign * (hours * 3600 + minutes * 60);
    let offset = UtcOffset::from_whole_seconds(seconds).ok()?;
    Some(local.assume_offset(offset).to_offset(UtcOffset::UTC))
}

/// Splits `…±HHMM` into the local part and the offset.
fn split_compact_offset(text: &str) -> Option<(&str, i32, i32, i32)> {
    if text.len() < 6 || !text.is_ascii() {
        return None;
    }
    let (body, offset) = text.split_at(text.len() - 5);
    let mut chars = offset.chars();
    let sign = match chars.next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let digits = &offset[1..];
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((body, sign, hours, minutes))
}

/// Parses a calendar date `YYYY-MM-DD` (QBO's `TxnDate`).
pub(crate) fn parse_date(text: &str) -> Option<Date> {
    Date::parse(text, format_description!("[year]-[month]-[day]")).ok()
}

/// Renders an instant in UTC the way the query language accepts it: `2023-01-31T00:00:00Z`,
/// with a fraction only when the instant has one.
pub(crate) fn render_utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Renders a date as `YYYY-MM-DD`.
pub(crate) fn render_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (relative to `now`).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = PrimitiveDateTime::parse(
        value,
        format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ),
    )
    .ok()?
    .assume_utc();
    let now = OffsetDateTime::from(now);
    let delta = when - now;
    Some(if delta.is_negative() {
        Duration::ZERO
    } else {
        delta.unsigned_abs()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn parses_every_offset_form_to_the_same_instant() {
        let expected = datetime!(2015-07-29 16:29:56 UTC);
        for text in [
            "2015-07-29T09:29:56-07:00",
            "2015-07-29T09:29:56-0700",
            "2015-07-29T16:29:56Z",
            "2015-07-29T16:29:56+00:00",
            "2015-07-29T21:59:56+0530",
            "2015-07-29T08:29:56-08:00",
        ] {
            assert_eq!(parse_datetime(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn parses_fractions_and_rejects_garbage() {
        assert_eq!(
            parse_datetime("2015-07-29T09:29:56.229-07:00"),
            Some(datetime!(2015-07-29 16:29:56.229 UTC))
        );
        assert_eq!(
            parse_datetime("2015-07-29T09:29:56.229-0700"),
            Some(datetime!(2015-07-29 16:29:56.229 UTC))
        );
        for bad in [
            "",
            "2015-07-29",
            "2015-07-29T09:29:56",
            "2015-07-29T09:29:56-07",
            "2015-07-29T09:29:56-2500",
            "yesterday",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2023-01-31"), Some(date!(2023 - 01 - 31)));
        assert_eq!(parse_date("2023-02-30"), None);
        assert_eq!(render_date(date!(2023 - 01 - 05)), "2023-01-05");
    }

    #[test]
    fn renders_utc() {
        assert_eq!(
            render_utc(datetime!(2023-01-31 00:00:00 UTC)),
            "2023-01-31T00:00:00Z"
        );
        assert_eq!(
            render_utc(datetime!(2023-01-30 19:00:00 -5)),
            "2023-01-31T00:00:00Z"
        );
        assert_eq!(
            render_utc(datetime!(2023-01-31 00:00:00.250 UTC)),
            "2023-01-31T00:00:00.25Z"
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21T07:27:50Z
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
