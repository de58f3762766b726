//! The window planner: turns a user's range into UTC windows. Pure: no I/O, `now` is injected.
//!
//! Window boundaries sit on a fixed grid of multiples of the window size counted from the Unix
//! epoch (a UTC midnight). With whole-day sizes every boundary is therefore a UTC midnight, and
//! the same instant always yields the same window whatever range it is planned in, so the ledger
//! recognises windows across runs with different ranges. The first and last windows are clipped
//! to the range.

use std::fmt;
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset};

use crate::Error;

const SECONDS_PER_DAY: i64 = 86_400;

/// The most windows one plan may hold: 100,000 (daily windows over 270 years, 15-minute
/// windows over 2.8 years). A larger plan is refused before anything is called or written
/// (every planned window is a ledger row and a claim); use larger windows instead.
pub const MAX_WINDOWS: u64 = 100_000;

/// A half-open interval `[start, end)` of UTC instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// Inclusive start (UTC).
    pub start: OffsetDateTime,
    /// Exclusive end (UTC).
    pub end: OffsetDateTime,
}

impl Window {
    /// Whether `t` falls inside the window (`start <= t < end`), comparing instants.
    #[must_use]
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        self.start <= t && t < self.end
    }

    /// The window's length.
    #[must_use]
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", format_utc(self.start), format_utc(self.end))
    }
}

/// `s` with its control characters (newlines, terminal escape sequences, …) written as
/// escapes (`\n`, `\u{1b}`), so that text stored by someone else cannot act on a terminal or a
/// document it is shown in.
#[must_use]
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Formats an instant as RFC 3339 in UTC (`2023-01-01T00:00:00Z`).
#[must_use]
pub fn format_utc(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The size of the windows a range is cut into: whole minutes that divide a day, or whole days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowSize {
    seconds: i64,
}

impl WindowSize {
    /// One UTC day, the default.
    pub const DAY: WindowSize = WindowSize {
        seconds: SECONDS_PER_DAY,
    };

    /// The largest accepted size (366 days).
    const MAX_SECONDS: i64 = 366 * SECONDS_PER_DAY;

    /// A size from a duration.
    ///
    /// # Errors
    /// [`Error::WindowSize`] unless the duration is whole minutes dividing a day, or whole days
    /// up to 366.
    pub fn from_duration(d: Duration) -> Result<Self, Error> {
        let reason = if d.subsec_nanoseconds() != 0 {
            Err("must be a positive whole number of minutes")
        } else {
            Self::check(d.whole_seconds())
        };
        reason
            .map(|seconds| WindowSize { seconds })
            .map_err(|reason| Error::WindowSize {
                input: d.to_string(),
                reason,
            })
    }

    fn check(seconds: i64) -> Result<i64, &'static str> {
        if seconds < 60 || seconds % 60 != 0 {
            Err("must be a positive whole number of minutes")
        } else if seconds > Self::MAX_SECONDS {
            Err("must be at most 366 days")
        } else if SECONDS_PER_DAY % seconds != 0 && seconds % SECONDS_PER_DAY != 0 {
            Err("must divide a day evenly (e.g. 15m, 6h) or be whole days (e.g. 7d)")
        } else {
            Ok(seconds)
        }
    }

    /// The size as a duration.
    #[must_use]
    pub fn as_duration(self) -> Duration {
        Duration::seconds(self.seconds)
    }

    /// Whether the size is a whole number of days.
    #[must_use]
    pub fn is_whole_days(self) -> bool {
        self.seconds % SECONDS_PER_DAY == 0
    }
}

impl Default for WindowSize {
    fn default() -> Self {
        WindowSize::DAY
    }
}

impl fmt::Display for WindowSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        if s % SECONDS_PER_DAY == 0 {
            write!(f, "{}d", s / SECONDS_PER_DAY)
        } else if s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else {
            write!(f, "{}m", s / 60)
        }
    }
}

impl FromStr for WindowSize {
    type Err = Error;

    /// Parses `<n><unit>` with unit `m`, `h`, `d` or `w` (e.g. `6h`, `1d`, `7d`, `2w`).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &'static str| Error::WindowSize {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| bad("needs a unit: m, h, d or w (e.g. 6h, 1d, 7d)"))?;
        let (digits, unit) = s.split_at(split);
        let n: i64 = digits
            .parse()
            .map_err(|_| bad("must start with a whole number (e.g. 6h, 1d, 7d)"))?;
        let unit_seconds = match unit {
            "m" | "min" => 60,
            "h" => 3600,
            "d" => SECONDS_PER_DAY,
            "w" => 7 * SECONDS_PER_DAY,
            _ => return Err(bad("unit must be m, h, d or w (e.g. 6h, 1d, 7d)")),
        };
        let seconds = n
            .checked_mul(unit_seconds)
            .ok_or_else(|| bad("is too large"))?;
        Self::check(seconds)
            .map(|seconds| WindowSize { seconds })
            .map_err(bad)
    }
}

/// Parses a range bound: RFC 3339 with an offset (any offset, converted to UTC) or a plain
/// `YYYY-MM-DD` date (00:00 UTC that day). Fractions of a second are dropped (QBO's
/// timestamps have whole seconds, and the ledger keeps bounds to the microsecond, so a bound
/// with nanoseconds would never match its stored copy); a leap second (`23:59:60`) is the
/// second before it.
///
/// # Errors
/// [`Error::Timestamp`] for a timestamp without an offset (ambiguous) or any other text.
pub fn parse_instant(input: &str) -> Result<OffsetDateTime, Error> {
    let s = input.trim();
    let bad = |reason: &'static str| Error::Timestamp {
        input: input.to_owned(),
        reason,
    };
    if s.is_empty() {
        return Err(bad("is empty"));
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t
            .to_offset(UtcOffset::UTC)
            .replace_nanosecond(0)
            .unwrap_or(t));
    }
    if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    if has_no_offset(s) {
        return Err(bad(
            "has no UTC offset, which is ambiguous; add Z or an offset such as +00:00 or -05:00",
        ));
    }
    Err(bad(
        "is neither an RFC 3339 timestamp with offset (2023-01-01T00:00:00-05:00) nor a date (2023-01-01)",
    ))
}

/// Whether `s` looks like a date-time that simply lacks its offset.
fn has_no_offset(s: &str) -> bool {
    let formats = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ];
    let upper = s.to_ascii_uppercase();
    formats
        .iter()
        .any(|f| time::PrimitiveDateTime::parse(&upper, f).is_ok())
}

/// What to plan: a range (any offsets), a window size, and the current time.
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest {
    /// Inclusive start of the range.
    pub start: OffsetDateTime,
    /// Exclusive end of the range.
    pub end: OffsetDateTime,
    /// Window size.
    pub size: WindowSize,
    /// The current time; a range reaching past it is clipped (not for date-valued fields).
    pub now: OffsetDateTime,
    /// Whether the window field is date-valued (`TxnDate`): windows must then be whole UTC
    /// days, and the range is not clipped to now, since business dates lie in the future too
    /// (post-dated invoices and bills, reversing entries) and QBO answers any date range.
    pub whole_days: bool,
}

/// A planned range: the windows tile `[start, end)` exactly, in order, without gaps or overlaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Start of the range (UTC).
    pub start: OffsetDateTime,
    /// End of the range after clipping (UTC).
    pub end: OffsetDateTime,
    /// The requested end when it was in the future and the range was clipped, else `None`.
    pub clipped_from: Option<OffsetDateTime>,
    /// The windows, ascending.
    pub windows: Vec<Window>,
}

/// Cuts a range into windows on the UTC grid of `size` (see the module docs).
///
/// # Errors
/// [`Error::EmptyRange`] if the end is not after the start, [`Error::StartsInFuture`] if the
/// start is not before `now` (timestamp fields only), [`Error::NotWholeDays`] if `whole_days`
/// is set and the range or the size is not whole UTC days, [`Error::TooManyWindows`] if the
/// plan would exceed [`MAX_WINDOWS`].
pub fn plan(req: &PlanRequest) -> Result<Plan, Error> {
    let start = req.start.to_offset(UtcOffset::UTC);
    let requested_end = req.end.to_offset(UtcOffset::UTC);
    let now = req.now.to_offset(UtcOffset::UTC);
    if requested_end <= start {
        return Err(Error::EmptyRange {
            start: format_utc(start),
            end: format_utc(requested_end),
        });
    }
    if req.whole_days {
        if !req.size.is_whole_days() {
            return Err(Error::NotWholeDays {
                what: format!("window size {}", req.size),
            });
        }
        for (name, t) in [("start", start), ("end", requested_end)] {
            if t.time() != Time::MIDNIGHT {
                return Err(Error::NotWholeDays {
                    what: format!("range {name} {}", format_utc(t)),
                });
            }
        }
    }
    // Timestamps (CreateTime, LastUpdatedTime) cannot lie in the future: a range reaching past
    // now is clipped to now. Business dates can: a date-valued field is never clipped.
    let (end, clipped_from) = if req.whole_days {
        (requested_end, None)
    } else {
        if start >= now {
            return Err(Error::StartsInFuture {
                start: format_utc(start),
                now: format_utc(now),
            });
        }
        if requested_end > now {
            (now, Some(requested_end))
        } else {
            (requested_end, None)
        }
    };

    let step = req.size.seconds;
    // Grid points strictly inside the range, plus one: the number of windows.
    let first_cut = grid_after(start, step).unix_timestamp();
    let inner = if first_cut < end.unix_timestamp() {
        (end.unix_timestamp() - 1 - first_cut).div_euclid(step) + 1
    } else {
        0
    };
    let count = u64::try_from(inner).unwrap_or(u64::MAX).saturating_add(1);
    if count > MAX_WINDOWS {
        return Err(Error::TooManyWindows {
            windows: count,
            limit: MAX_WINDOWS,
            size: req.size.to_string(),
        });
    }
    let mut windows = Vec::new();
    let mut cursor = start;
    while cursor < end {
        let next_boundary = grid_after(cursor, step);
        let window_end = if next_boundary < end {
            next_boundary
        } else {
            end
        };
        windows.push(Window {
            start: cursor,
            end: window_end,
        });
        cursor = window_end;
    }
    Ok(Plan {
        start,
        end,
        clipped_from,
        windows,
    })
}

/// The first grid point (a multiple of `step` seconds since the epoch) strictly after `t`.
fn grid_after(t: OffsetDateTime, step: i64) -> OffsetDateTime {
    let secs = t.unix_timestamp();
    let floor = secs.div_euclid(step) * step;
    // `t` may carry sub-second nanos: floor is still <= t, so floor + step > t.
    OffsetDateTime::from_unix_timestamp(floor + step)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH + Duration::seconds(floor + step))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn req(start: OffsetDateTime, end: OffsetDateTime) -> PlanRequest {
        PlanRequest {
            start,
            end,
            size: WindowSize::DAY,
            now: NOW,
            whole_days: false,
        }
    }

    #[test]
    fn parses_offsets_and_plain_dates_to_utc() {
        assert_eq!(
            parse_instant("2023-01-01T00:00:00+00:00").unwrap(),
            datetime!(2023-01-01 00:00 UTC)
        );
        assert_eq!(
            parse_instant("2023-01-01").unwrap(),
            datetime!(2023-01-01 00:00 UTC)
        );
        let t = parse_instant("2023-03-12T01:30:00-08:00").unwrap();
        assert_eq!(t, datetime!(2023-03-12 09:30 UTC));
        assert_eq!(t.offset(), UtcOffset::UTC);
        // Fractions of a second are dropped (see `bounds_drop_fractions_of_a_second...`).
        assert_eq!(
            parse_instant("2023-01-31T20:00:00.5+05:30").unwrap(),
            datetime!(2023-01-31 14:30:00 UTC)
        );
        assert_eq!(
            parse_instant("2023-01-01t00:00:00z").unwrap(),
            datetime!(2023-01-01 00:00 UTC)
        );
    }

    #[test]
    fn rejects_timestamps_without_offset_with_a_specific_reason() {
        for s in [
            "2023-01-01T00:00:00",
            "2023-01-01 10:00:00",
            "2023-01-01T10:00",
        ] {
            match parse_instant(s) {
                Err(Error::Timestamp { reason, .. }) => {
                    assert!(reason.contains("no UTC offset"), "{s}: {reason}");
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        for s in [
            "",
            "yesterday",
            "2023-13-01",
            "2023-01-01T00:00:00-0700",
            "01/02/2023",
        ] {
            assert!(
                matches!(parse_instant(s), Err(Error::Timestamp { .. })),
                "{s}"
            );
        }
    }

    #[test]
    fn window_sizes_parse_and_validate() {
        assert_eq!("1d".parse::<WindowSize>().unwrap(), WindowSize::DAY);
        assert_eq!(
            "6h".parse::<WindowSize>().unwrap().as_duration(),
            Duration::hours(6)
        );
        assert_eq!(
            "7d".parse::<WindowSize>().unwrap().as_duration(),
            Duration::days(7)
        );
        assert_eq!("2w".parse::<WindowSize>().unwrap().to_string(), "14d");
        assert_eq!("30m".parse::<WindowSize>().unwrap().to_string(), "30m");
        assert_eq!("24h".parse::<WindowSize>().unwrap().to_string(), "1d");
        for bad in [
            "",
            "d",
            "0d",
            "5h",
            "7",
            "1y",
            "-1d",
            "400d",
            "1.5d",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<WindowSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cuts_at_utc_midnights_and_clips_the_ends() {
        let p = plan(&req(
            datetime!(2023-01-01 12:00 UTC),
            datetime!(2023-01-03 06:00 UTC),
        ))
        .unwrap();
        assert_eq!(
            p.windows,
            vec![
                Window {
                    start: datetime!(2023-01-01 12:00 UTC),
                    end: datetime!(2023-01-02 00:00 UTC)
                },
                Window {
                    start: datetime!(2023-01-02 00:00 UTC),
                    end: datetime!(2023-01-03 00:00 UTC)
                },
                Window {
                    start: datetime!(2023-01-03 00:00 UTC),
                    end: datetime!(2023-01-03 06:00 UTC)
                },
            ]
        );
        assert_eq!(p.clipped_from, None);
    }

    #[test]
    fn one_month_is_thirty_one_days() {
        let p = plan(&req(
            parse_instant("2023-01-01T00:00:00+00:00").unwrap(),
            parse_instant("2023-02-01T00:00:00+00:00").unwrap(),
        ))
        .unwrap();
        assert_eq!(p.windows.len(), 31);
        assert!(p.windows.iter().all(|w| w.duration() == Duration::DAY));
    }

    #[test]
    fn pacific_offsets_land_on_utc_grid() {
        // Midnight in Los Angeles (PST) is 08:00 UTC: the range straddles a UTC midnight.
        let p = plan(&req(
            parse_instant("2023-01-01T00:00:00-08:00").unwrap(),
            parse_instant("2023-01-02T00:00:00-08:00").unwrap(),
        ))
        .unwrap();
        assert_eq!(p.windows.len(), 2);
        assert_eq!(p.windows[0].start, datetime!(2023-01-01 08:00 UTC));
        assert_eq!(p.windows[0].end, datetime!(2023-01-02 00:00 UTC));
        assert_eq!(p.windows[1].end, datetime!(2023-01-02 08:00 UTC));
    }

    #[test]
    fn sub_day_and_multi_day_sizes_use_the_epoch_grid() {
        let mut r = req(
            datetime!(2023-01-01 05:00 UTC),
            datetime!(2023-01-02 00:00 UTC),
        );
        r.size = "6h".parse().unwrap();
        let p = plan(&r).unwrap();
        let starts: Vec<_> = p.windows.iter().map(|w| w.start.hour()).collect();
        assert_eq!(starts, vec![5, 6, 12, 18]);

        let mut r = req(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-31 00:00 UTC),
        );
        r.size = "7d".parse().unwrap();
        let p = plan(&r).unwrap();
        // Grid points are multiples of 7 days since 1970-01-01 (a Thursday), all UTC midnights.
        assert!(p.windows.iter().all(|w| w.end.time() == Time::MIDNIGHT));
        assert!(
            p.windows[1..]
                .iter()
                .all(|w| w.start.weekday() == time::Weekday::Thursday)
        );
    }

    #[test]
    fn rejects_reversed_and_empty_ranges() {
        let a = datetime!(2023-01-02 00:00 UTC);
        let b = datetime!(2023-01-01 00:00 UTC);
        assert!(matches!(plan(&req(a, b)), Err(Error::EmptyRange { .. })));
        assert!(matches!(plan(&req(a, a)), Err(Error::EmptyRange { .. })));
        // Same instant written with two offsets is still empty.
        let c = parse_instant("2023-01-01T19:00:00-05:00").unwrap();
        let d = parse_instant("2023-01-02T00:00:00+00:00").unwrap();
        assert!(matches!(plan(&req(c, d)), Err(Error::EmptyRange { .. })));
    }

    #[test]
    fn future_is_clipped_to_now_with_a_flag() {
        let now = datetime!(2025-12-31 15:30 UTC);
        let mut r = req(
            datetime!(2025-12-30 00:00 UTC),
            datetime!(2026-06-01 00:00 UTC),
        );
        r.now = now;
        let p = plan(&r).unwrap();
        assert_eq!(p.end, now);
        assert_eq!(p.clipped_from, Some(datetime!(2026-06-01 00:00 UTC)));
        assert_eq!(p.windows.last().unwrap().end, now);
        assert_eq!(p.windows.len(), 2);

        r.start = datetime!(2026-02-01 00:00 UTC);
        r.end = datetime!(2026-03-01 00:00 UTC);
        assert!(matches!(plan(&r), Err(Error::StartsInFuture { .. })));
    }

    #[test]
    fn whole_days_requirement() {
        let mut r = req(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-03 00:00 UTC),
        );
        r.whole_days = true;
        assert_eq!(plan(&r).unwrap().windows.len(), 2);
        r.size = "6h".parse().unwrap();
        assert!(matches!(plan(&r), Err(Error::NotWholeDays { .. })));
        r.size = WindowSize::DAY;
        r.start = datetime!(2023-01-01 01:00 UTC);
        assert!(matches!(plan(&r), Err(Error::NotWholeDays { .. })));
        // A date-valued field is not clipped: business dates lie in the future too.
        r.start = datetime!(2025-12-30 00:00 UTC);
        r.end = datetime!(2026-02-01 00:00 UTC);
        r.now = datetime!(2025-12-31 15:30 UTC);
        let p = plan(&r).unwrap();
        assert_eq!(p.end, datetime!(2026-02-01 00:00 UTC));
        assert_eq!(p.clipped_from, None);
        assert_eq!(p.windows.len(), 33);
        // Even a range wholly after now (post-dated invoices).
        r.start = datetime!(2026-03-01 00:00 UTC);
        r.end = datetime!(2026-04-01 00:00 UTC);
        assert_eq!(plan(&r).unwrap().windows.len(), 31);
    }

    #[test]
    fn a_plan_above_the_window_limit_is_refused_with_its_count() {
        // One-minute windows over a year: 525,600 windows.
        let mut r = req(
            datetime!(2024-01-01 00:00 UTC),
            datetime!(2025-01-01 00:00 UTC),
        );
        r.size = "1m".parse().unwrap();
        match plan(&r) {
            Err(Error::TooManyWindows { windows, limit, .. }) => {
                assert_eq!(windows, 366 * 1440);
                assert_eq!(limit, MAX_WINDOWS);
            }
            other => panic!("{other:?}"),
        }
        // The count matches the windows of a plan under the limit, ragged bounds included.
        r.start = datetime!(2024-01-01 00:00:30 UTC);
        r.end = datetime!(2024-01-20 07:13:00 UTC);
        let p = plan(&r).unwrap();
        assert_eq!(p.windows.len(), 19 * 1440 + 7 * 60 + 13);
    }

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("initial-load é"), "initial-load é");
        assert_eq!(printable("a\u{1b}[31mred\nb"), "a\\u{1b}[31mred\\nb");
    }

    #[test]
    fn bounds_drop_fractions_of_a_second_and_leap_seconds() {
        assert_eq!(
            parse_instant("2023-01-01T00:00:00.999999999Z").unwrap(),
            datetime!(2023-01-01 00:00:00 UTC)
        );
        assert_eq!(
            parse_instant("2016-12-31T23:59:60Z").unwrap(),
            datetime!(2016-12-31 23:59:59 UTC)
        );
    }

    fn arb_instant() -> impl Strategy<Value = OffsetDateTime> {
        // 2015..2025, any second, any offset between -12h and +14h.
        (
            1_420_070_400i64..1_735_689_600i64,
            -720i32..=840,
            0u32..1_000_000_000,
        )
            .prop_map(|(secs, offset_min, nanos)| {
                let offset = UtcOffset::from_whole_seconds(offset_min * 60).unwrap();
                (OffsetDateTime::from_unix_timestamp(secs).unwrap()
                    + Duration::nanoseconds(i64::from(nanos % 2) * i64::from(nanos)))
                .to_offset(offset)
            })
    }

    fn arb_size() -> impl Strategy<Value = WindowSize> {
        prop::sample::select(vec![
            "15m", "1h", "6h", "8h", "12h", "1d", "2d", "7d", "30d",
        ])
        .prop_map(|s| s.parse().unwrap())
    }

    proptest! {
        #[test]
        fn windows_tile_the_range_exactly(
            a in arb_instant(),
            span_secs in 1i64..(120 * 86_400),
            size in arb_size(),
        ) {
            let b = a + Duration::seconds(span_secs);
            let p = plan(&PlanRequest { start: a, end: b, size, now: NOW, whole_days: false }).unwrap();
            prop_assert!(!p.windows.is_empty());
            prop_assert_eq!(p.windows[0].start, a);
            prop_assert_eq!(p.windows.last().unwrap().end, b);
            prop_assert_eq!(p.clipped_from, None);
            for w in &p.windows {
                prop_assert!(w.start < w.end);
                prop_assert!(w.duration() <= size.as_duration());
                prop_assert_eq!(w.start.offset(), UtcOffset::UTC);
            }
            for pair in p.windows.windows(2) {
                // No gap, no overlap; every inner boundary is on the grid.
                prop_assert_eq!(pair[0].end, pair[1].start);
                prop_assert_eq!(pair[0].end.unix_timestamp() % size.as_duration().whole_seconds(), 0);
                prop_assert_eq!(pair[0].end.nanosecond(), 0);
            }
            // Any instant in range belongs to exactly one window.
            let probe = a + Duration::seconds(span_secs / 2);
            prop_assert_eq!(p.windows.iter().filter(|w| w.contains(probe)).count(), 1);
            if size.is_whole_days() {
                for w in &p.windows[1..] {
                    prop_assert_eq!(w.start.time(), Time::MIDNIGHT);
                }
            }
        }

        #[test]
        fn planning_is_stable_across_overlapping_ranges(
            day in 0i64..3000,
            extra in 1i64..60,
        ) {
            // The same day's windows are identical whether planned alone or inside a longer range.
            let base = datetime!(2016-01-01 00:00 UTC) + Duration::days(day);
            let short = plan(&req(base, base + Duration::days(1))).unwrap();
            let long = plan(&req(base - Duration::days(extra), base + Duration::days(extra))).unwrap();
            prop_assert!(long.windows.contains(&short.windows[0]));
        }
    }
}
