//! Validation of a parsed query against the schema, producing an executable plan.

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use super::parse::{self, Literal, Op, ParseError, Projection};
use crate::schema::{self, EntityDef, Field, FieldType};
use crate::tz;

/// Largest MAXRESULTS QBO accepts.
pub(crate) const MAX_RESULTS_LIMIT: i64 = 1000;
/// MAXRESULTS when the query gives none.
pub(crate) const DEFAULT_MAX_RESULTS: i64 = 100;

/// A value a field is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    /// A numeric id; `None` for an id that cannot exist (not a number).
    Id(Option<u64>),
    /// Unix nanoseconds.
    Instant(i128),
    Date(Date),
    Bool(bool),
    /// Lower-cased text (text comparisons are case-insensitive).
    Text(String),
}

/// One test a record must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Test {
    Cmp(Op, Val),
    In(Vec<Val>),
    /// A LIKE pattern, lower-cased, split at `%`.
    Like(Vec<String>),
}

/// A validated condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) field: Field,
    pub(crate) test: Test,
}

/// A validated, executable query.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) entity: &'static EntityDef,
    pub(crate) count: bool,
    pub(crate) filters: Vec<Filter>,
    /// Field and `true` for descending.
    pub(crate) order: Vec<(Field, bool)>,
    /// 1-based.
    pub(crate) start_position: u64,
    pub(crate) max_results: u64,
    /// Name lists without a condition on `Active` show active rows only.
    pub(crate) active_only: bool,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// Syntax (QBO code 4000, "Error parsing query").
    Parse(ParseError),
    /// Valid syntax, invalid meaning (unknown entity/field, bad literal, operator not allowed).
    Invalid(String),
    /// STARTPOSITION / MAXRESULTS out of range.
    Range(String),
}

impl QueryError {
    /// QBO error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            QueryError::Parse(_) => "4000",
            QueryError::Invalid(_) => "4001",
            QueryError::Range(_) => "4001",
        }
    }

    /// QBO `Message`.
    pub(crate) fn message(&self) -> &'static str {
        match self {
            QueryError::Parse(_) => "Error parsing query",
            QueryError::Invalid(_) | QueryError::Range(_) => "Invalid query",
        }
    }

    /// QBO `Detail`.
    pub(crate) fn detail(&self) -> String {
        match self {
            QueryError::Parse(e) => e.to_string(),
            QueryError::Invalid(d) | QueryError::Range(d) => format!("QueryValidationError: {d}"),
        }
    }
}

/// Options that change how queries are judged.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CompileOptions {
    /// Clamp MAXRESULTS above 1000 to 1000 instead of refusing it.
    pub(crate) clamp_max_results: bool,
}

/// Parses and validates query text.
pub(crate) fn compile(text: &str, opts: CompileOptions) -> Result<Plan, QueryError> {
    let parsed = parse::parse(text).map_err(QueryError::Parse)?;
    let entity = schema::entity(&parsed.entity).ok_or_else(|| {
        QueryError::Invalid(format!(
            "Invalid entity name: {} is not a queryable entity",
            parsed.entity
        ))
    })?;
    let mut filters = Vec::with_capacity(parsed.conditions.len());
    let mut filters_active = false;
    for cond in &parsed.conditions {
        let field = entity.field(&cond.field).ok_or_else(|| {
            QueryError::Invalid(format!(
                "property '{}' is not queryable on {}",
                cond.field, entity.name
            ))
        })?;
        if field == Field::Active {
            filters_active = true;
        }
        let ty = field.ty();
        let allowed = match ty {
            FieldType::Id | FieldType::Bool | FieldType::Ref => matches!(cond.op, Op::Eq | Op::In),
            FieldType::Instant | FieldType::Date => !matches!(cond.op, Op::Like),
            FieldType::Text => true,
        };
        if !allowed {
            return Err(QueryError::Invalid(format!(
                "operator {} is not supported for property '{}'",
                cond.op, cond.field
            )));
        }
        let test = match cond.op {
            Op::Like => {
                let pattern = match cond.values.as_slice() {
                    [Literal::Str(s)] => s.to_lowercase(),
                    _ => return Err(bad_literal(&cond.field)),
                };
                Test::Like(pattern.split('%').map(str::to_string).collect())
            }
            Op::In => {
                let vals = cond
                    .values
                    .iter()
                    .map(|l| value(ty, l, &cond.field))
                    .collect::<Result<Vec<_>, _>>()?;
                Test::In(vals)
            }
            op => {
                let [lit] = cond.values.as_slice() else {
                    return Err(bad_literal(&cond.field));
                };
                Test::Cmp(op, value(ty, lit, &cond.field)?)
            }
        };
        filters.push(Filter { field, test });
    }
    let mut order = Vec::with_capacity(parsed.order_by.len());
    for (path, desc) in &parsed.order_by {
        let field = entity.field(path).ok_or_else(|| {
            QueryError::Invalid(format!(
                "property '{path}' is not sortable on {}",
                entity.name
            ))
        })?;
        order.push((field, *desc));
    }
    let start_position = parsed.start_position.unwrap_or(1);
    if start_position < 1 {
        return Err(QueryError::Range(format!(
            "STARTPOSITION must be 1 or more, got {start_position}"
        )));
    }
    let mut max_results = parsed.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
    if max_results > MAX_RESULTS_LIMIT && opts.clamp_max_results {
        max_results = MAX_RESULTS_LIMIT;
    }
    if !(1..=MAX_RESULTS_LIMIT).contains(&max_results) {
        return Err(QueryError::Range(format!(
            "MAXRESULTS must be between 1 and {MAX_RESULTS_LIMIT}, got {max_results}"
        )));
    }
    Ok(Plan {
        entity,
        count: parsed.projection == Projection::Count,
        filters,
        order,
        start_position: start_position.unsigned_abs(),
        max_results: max_results.unsigned_abs(),
        active_only: entity.name_list && !filters_active,
    })
}

fn bad_literal(field: &str) -> QueryError {
    QueryError::Invalid(format!("invalid value for property '{field}'"))
}

fn value(ty: FieldType, lit: &Literal, field: &str) -> Result<Val, QueryError> {
    match (ty, lit) {
        (FieldType::Id | FieldType::Ref, Literal::Str(s) | Literal::Num(s)) => {
            Ok(Val::Id(s.trim().parse::<u64>().ok()))
        }
        (FieldType::Bool, Literal::Bool(b)) => Ok(Val::Bool(*b)),
        (FieldType::Text, Literal::Str(s)) => Ok(Val::Text(s.to_lowercase())),
        (FieldType::Date, Literal::Str(s)) => parse_date(s).map(Val::Date).ok_or_else(|| {
            QueryError::Invalid(format!("invalid date '{s}' for property '{field}'"))
        }),
        (FieldType::Instant, Literal::Str(s)) => {
            parse_instant(s).map(Val::Instant).ok_or_else(|| {
                QueryError::Invalid(format!("invalid date-time '{s}' for property '{field}'"))
            })
        }
        _ => Err(bad_literal(field)),
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DD`.
pub(crate) fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = i32::try_from(digits(s.get(0..4)?)?).ok()?;
    let m = Month::try_from(u8::try_from(digits(s.get(5..7)?)?).ok()?).ok()?;
    let d = u8::try_from(digits(s.get(8..10)?)?).ok()?;
    Date::from_calendar_date(y, m, d).ok()
}

/// A date-time literal as Unix nanoseconds. Accepts `YYYY-MM-DD` (midnight, company time),
/// `YYYY-MM-DDTHH:MM:SS[.f]` (company time) and the same followed by `Z`, `±HH:MM` or `±HHMM`.
/// The company time zone is US Pacific.
pub(crate) fn parse_instant(s: &str) -> Option<i128> {
    if let Some(d) = parse_date(s) {
        return Some(
            tz::from_pacific_local(PrimitiveDateTime::new(d, Time::MIDNIGHT))
                .unix_timestamp_nanos(),
        );
    }
    let date = parse_date(s.get(0..10)?)?;
    let rest = s.get(10..)?;
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let hh = u8::try_from(digits(rest.get(0..2)?)?).ok()?;
    if rest.get(2..3)? != ":" {
        return None;
    }
    let mm = u8::try_from(digits(rest.get(3..5)?)?).ok()?;
    if rest.get(5..6)? != ":" {
        return None;
    }
    let ss = u8::try_from(digits(rest.get(6..8)?)?).ok()?;
    let mut tail = rest.get(8..)?;
    let mut nanos: u32 = 0;
    if let Some(frac) = tail.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 || len > 9 {
            return None;
        }
        let mut n = digits(&frac[..len])?;
        for _ in len..9 {
            n *= 10;
        }
        nanos = n;
        tail = &frac[len..];
    }
    let time = Time::from_hms_nano(hh, mm, ss, nanos).ok()?;
    let local = PrimitiveDateTime::new(date, time);
    let at = if tail.is_empty() {
        tz::from_pacific_local(local)
    } else if tail == "Z" || tail == "z" {
        local.assume_utc()
    } else {
        let sign: i32 = match tail.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let body = &tail[1..];
        let (oh, om) = match body.len() {
            5 if body.as_bytes()[2] == b':' => (digits(&body[0..2])?, digits(&body[3..5])?),
            4 => (digits(&body[0..2])?, digits(&body[2..4])?),
            _ => return None,
        };
        if oh > 23 || om > 59 {
            return None;
        }
        let secs = sign * i32::try_from(oh * 3600 + om * 60).ok()?;
        local.assume_offset(UtcOffset::from_whole_seconds(secs).ok()?)
    };
    Some(at.unix_timestamp_nanos())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    fn ok(q: &str) -> Plan {
        compile(q, CompileOptions::default()).unwrap_or_else(|e| panic!("{q}: {e:?}"))
    }

    fn err(q: &str) -> QueryError {
        match compile(q, CompileOptions::default()) {
            Ok(p) => panic!("{q} should fail, got {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn instants_with_offsets() {
        let utc = datetime!(2023-01-31 00:00:00 UTC).unix_timestamp_nanos();
        assert_eq!(parse_instant("2023-01-31T00:00:00Z"), Some(utc));
        assert_eq!(parse_instant("2023-01-31T00:00:00+00:00"), Some(utc));
        assert_eq!(parse_instant("2023-01-30T17:00:00-07:00"), Some(utc));
        assert_eq!(parse_instant("2023-01-30T17:00:00-0700"), Some(utc));
        assert_eq!(parse_instant("2023-01-30T16:00:00-08:00"), Some(utc));
        assert_eq!(parse_instant("2023-01-31T05:30:00+05:30"), Some(utc));
        assert_eq!(parse_instant("2023-01-31T00:00:00.000Z"), Some(utc));
        assert_eq!(
            parse_instant("2023-01-30T23:59:59.5Z"),
            Some(utc - 500_000_000)
        );
        // Company time (Pacific) when no offset is given.
        assert_eq!(
            parse_instant("2023-01-31"),
            Some(datetime!(2023-01-31 08:00:00 UTC).unix_timestamp_nanos())
        );
        assert_eq!(
            parse_instant("2023-07-31T00:00:00"),
            Some(datetime!(2023-07-31 07:00:00 UTC).unix_timestamp_nanos())
        );
        for bad in [
            "2023-13-01",
            "2023-01-31T25:00:00Z",
            "2023-01-31T00:00Z",
            "yesterday",
            "2023-01-31T00:00:00+7",
            "2023-01-31T00:00:00-07:00x",
            "",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn valid_plans() {
        let p =
            ok("select count(*) from invoice where metadata.createtime >= '2023-01-01T00:00:00Z'");
        assert!(p.count);
        assert_eq!(p.entity.name, "Invoice");
        assert_eq!(p.max_results, 100);
        assert_eq!(p.start_position, 1);
        assert!(!p.active_only);
        let p = ok("SELECT * FROM Customer");
        assert!(p.active_only);
        let p = ok("SELECT * FROM Customer WHERE Active IN (true, false) MAXRESULTS 1000");
        assert!(!p.active_only);
        assert_eq!(p.max_results, 1000);
        let p = ok("SELECT * FROM Customer WHERE Active = false");
        assert!(!p.active_only);
        let p =
            ok("SELECT * FROM Item WHERE Name LIKE '%Rock%' ORDERBY Metadata.LastUpdatedTime DESC");
        assert_eq!(p.order, vec![(Field::LastUpdatedTime, true)]);
        assert_eq!(
            p.filters[0].test,
            Test::Like(vec![String::new(), "rock".into(), String::new()])
        );
        let p = ok(
            "SELECT * FROM Invoice WHERE TxnDate >= '2023-01-01' AND Id IN ('1', '2') AND CustomerRef = '7'",
        );
        assert_eq!(p.filters.len(), 3);
        ok("SELECT * FROM Vendor WHERE Active = true");
        ok("SELECT * FROM Bill");
    }

    #[test]
    fn invalid_plans() {
        assert!(matches!(
            err("SELECT * FROM Widget"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice WHERE Active = true"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Customer WHERE Colour = 'red'"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Customer WHERE Id > '5'"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Customer WHERE Id LIKE '5%'"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Customer WHERE Active = 'yes'"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Customer WHERE Active > true"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice WHERE TxnDate = '2023-01-01T00:00:00Z'"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice WHERE MetaData.CreateTime > 'soon'"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice WHERE MetaData.CreateTime LIKE '2023%'"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice ORDERBY Colour"),
            QueryError::Invalid(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice MAXRESULTS 1001"),
            QueryError::Range(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice MAXRESULTS 0"),
            QueryError::Range(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice STARTPOSITION 0"),
            QueryError::Range(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice STARTPOSITION -1"),
            QueryError::Range(_)
        ));
        assert!(matches!(
            err("SELECT * FROM Invoice WHERE Id = '1' OR Id = '2'"),
            QueryError::Parse(_)
        ));
        let clamp = compile(
            "SELECT * FROM Invoice MAXRESULTS 5000",
            CompileOptions {
                clamp_max_results: true,
            },
        )
        .unwrap();
        assert_eq!(clamp.max_results, 1000);
    }
}
