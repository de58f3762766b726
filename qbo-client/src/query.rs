//! A typed builder for QBO's query language. What QBO cannot express (OR, joins, more than 1000
//! rows, `Id` with a range operator) cannot be built.

use std::fmt;

use time::{Date, OffsetDateTime};

use crate::timefmt::{render_date, render_utc};

/// The largest MAXRESULTS QBO accepts.
pub const MAX_RESULTS_LIMIT: u32 = 1000;
/// The MAXRESULTS QBO applies when a query does not say.
pub const DEFAULT_MAX_RESULTS: u32 = 100;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=`
    Eq,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `IN (…)`, with a [`Value::List`].
    In,
    /// `LIKE`, with a [`Value::Str`] using `%` wildcards.
    Like,
}

impl Op {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Lt => "<",
            Self::Gt => ">",
            Self::Le => "<=",
            Self::Ge => ">=",
            Self::In => "IN",
            Self::Like => "LIKE",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A literal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// A string, rendered quoted with `'` and `\` escaped.
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// An integer, rendered bare.
    Int(i64),
    /// An instant, rendered in UTC (`'2023-01-31T00:00:00Z'`).
    DateTime(OffsetDateTime),
    /// A calendar date (`'2023-01-31'`).
    Date(Date),
    /// A list for `IN`.
    List(Vec<Value>),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<OffsetDateTime> for Value {
    fn from(v: OffsetDateTime) -> Self {
        Self::DateTime(v)
    }
}
impl From<Date> for Value {
    fn from(v: Date) -> Self {
        Self::Date(v)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Self::List(v.into_iter().map(Into::into).collect())
    }
}

impl Value {
    fn render_into(&self, out: &mut String) {
        match self {
            Self::Str(s) => push_quoted(out, s),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Int(i) => out.push_str(&i.to_string()),
            Self::DateTime(t) => push_quoted(out, &render_utc(*t)),
            Self::Date(d) => push_quoted(out, &render_date(*d)),
            Self::List(items) => {
                out.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.render_into(out);
                }
                out.push(')');
            }
        }
    }
}

/// Quotes a string literal: `'` → `\'`, `\` → `\\`.
pub(crate) fn push_quoted(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Select,
    Count,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    field: String,
    op: Op,
    value: Value,
}

/// A validated query. Build with [`Query::select`] or [`Query::count`]; [`Query::render`] gives
/// the exact text sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    kind: Kind,
    entity: String,
    conditions: Vec<Condition>,
    include_inactive: bool,
    order_by: Option<(String, Order)>,
    start_position: Option<u32>,
    max_results: Option<u32>,
}

/// Collects the parts of a [`Query`]; [`QueryBuilder::build`] validates them.
#[derive(Debug, Clone)]
#[must_use]
pub struct QueryBuilder {
    query: Query,
}

impl Query {
    /// Starts `SELECT * FROM entity`.
    pub fn select(entity: impl Into<String>) -> QueryBuilder {
        QueryBuilder::new(Kind::Select, entity.into())
    }

    /// Starts `SELECT COUNT(*) FROM entity`.
    pub fn count(entity: impl Into<String>) -> QueryBuilder {
        QueryBuilder::new(Kind::Count, entity.into())
    }

    /// The exact query text.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push_str(match self.kind {
            Kind::Select => "SELECT * FROM ",
            Kind::Count => "SELECT COUNT(*) FROM ",
        });
        out.push_str(&self.entity);
        let mut first = true;
        let mut and = |out: &mut String| {
            out.push_str(if first { " WHERE " } else { " AND " });
            first = false;
        };
        for c in &self.conditions {
            and(&mut out);
            out.push_str(&c.field);
            out.push(' ');
            out.push_str(c.op.as_str());
            out.push(' ');
            c.value.render_into(&mut out);
        }
        if self.include_inactive {
            and(&mut out);
            out.push_str("Active IN (true, false)");
        }
        if let Some((field, order)) = &self.order_by {
            out.push_str(" ORDERBY ");
            out.push_str(field);
            out.push_str(match order {
                Order::Asc => " ASC",
                Order::Desc => " DESC",
            });
        }
        if let Some(n) = self.start_position {
            out.push_str(" STARTPOSITION ");
            out.push_str(&n.to_string());
        }
        if let Some(n) = self.max_results {
            out.push_str(" MAXRESULTS ");
            out.push_str(&n.to_string());
        }
        out
    }

    /// The entity queried.
    #[must_use]
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// Whether this is a `COUNT(*)` query.
    #[must_use]
    pub fn is_count(&self) -> bool {
        self.kind == Kind::Count
    }

    /// Whether `Active IN (true, false)` is added.
    #[must_use]
    pub fn includes_inactive(&self) -> bool {
        self.include_inactive
    }

    /// STARTPOSITION, if set.
    #[must_use]
    pub fn start_position(&self) -> Option<u32> {
        self.start_position
    }

    /// MAXRESULTS, if set.
    #[must_use]
    pub fn max_results(&self) -> Option<u32> {
        self.max_results
    }

    /// The same query at another STARTPOSITION.
    ///
    /// # Errors
    /// [`QueryError::StartPositionZero`] for 0, [`QueryError::NotForCount`] on a COUNT query.
    pub fn with_start_position(&self, start: u32) -> Result<Query, QueryError> {
        let mut q = self.clone();
        q.start_position = Some(start);
        q.validate()?;
        Ok(q)
    }

    /// The same query with another MAXRESULTS.
    ///
    /// # Errors
    /// [`QueryError::MaxResultsOutOfRange`] outside 1..=1000, [`QueryError::NotForCount`] on a
    /// COUNT query.
    pub fn with_max_results(&self, max: u32) -> Result<Query, QueryError> {
        let mut q = self.clone();
        q.max_results = Some(max);
        q.validate()?;
        Ok(q)
    }

    /// The COUNT query for the same entity and filter (no ordering or paging).
    #[must_use]
    pub fn to_count(&self) -> Query {
        Query {
            kind: Kind::Count,
            order_by: None,
            start_position: None,
            max_results: None,
            ..self.clone()
        }
    }

    fn validate(&self) -> Result<(), QueryError> {
        if !is_identifier(&self.entity, false) {
            return Err(QueryError::InvalidEntity {
                entity: self.entity.clone(),
            });
        }
        for c in &self.conditions {
            validate_condition(c)?;
            if self.include_inactive && c.field.eq_ignore_ascii_case("Active") {
                return Err(QueryError::ActiveConflict);
            }
        }
        if let Some((field, _)) = &self.order_by
            && !is_identifier(field, true)
        {
            return Err(QueryError::InvalidField {
                field: field.clone(),
            });
        }
        if let Some(n) = self.max_results
            && (n == 0 || n > MAX_RESULTS_LIMIT)
        {
            return Err(QueryError::MaxResultsOutOfRange { value: n });
        }
        if self.start_position == Some(0) {
            return Err(QueryError::StartPositionZero);
        }
        if self.kind == Kind::Count {
            let clause = if self.order_by.is_some() {
                Some("ORDERBY")
            } else if self.start_position.is_some() {
                Some("STARTPOSITION")
            } else if self.max_results.is_some() {
                Some("MAXRESULTS")
            } else {
                None
            };
            if let Some(clause) = clause {
                return Err(QueryError::NotForCount { clause });
            }
        }
        Ok(())
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

fn validate_condition(c: &Condition) -> Result<(), QueryError> {
    if !is_identifier(&c.field, true) {
        return Err(QueryError::InvalidField {
            field: c.field.clone(),
        });
    }
    if c.field.eq_ignore_ascii_case("Id") && !matches!(c.op, Op::Eq | Op::In) {
        return Err(QueryError::OperatorNotAllowed {
            field: c.field.clone(),
            op: c.op,
        });
    }
    match (&c.op, &c.value) {
        (Op::In, Value::List(items)) => {
            if items.is_empty() {
                return Err(QueryError::EmptyList {
                    field: c.field.clone(),
                });
            }
            if items.iter().any(|v| matches!(v, Value::List(_))) {
                return Err(QueryError::NestedList {
                    field: c.field.clone(),
                });
            }
            Ok(())
        }
        (Op::In, _) => Err(QueryError::ListRequired {
            field: c.field.clone(),
        }),
        (op, Value::List(_)) => Err(QueryError::ListNotAllowed {
            field: c.field.clone(),
            op: *op,
        }),
        (Op::Like, Value::Str(_)) => Ok(()),
        (Op::Like, _) => Err(QueryError::LikeNeedsString {
            field: c.field.clone(),
        }),
        _ => Ok(()),
    }
}

/// Entity names are plain identifiers; field paths may have dots (`MetaData.CreateTime`).
fn is_identifier(s: &str, dotted: bool) -> bool {
    if s.is_empty() || s.len() > 128 {
        return false;
    }
    s.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }) && (dotted || !s.contains('.'))
}

impl QueryBuilder {
    fn new(kind: Kind, entity: String) -> Self {
        Self {
            query: Query {
                kind,
                entity,
                conditions: Vec::new(),
                include_inactive: false,
                order_by: None,
                start_position: None,
                max_results: None,
            },
        }
    }

    /// Adds `field op value`, AND-ed with the others (QBO has no OR).
    pub fn filter(mut self, field: impl Into<String>, op: Op, value: impl Into<Value>) -> Self {
        self.query.conditions.push(Condition {
            field: field.into(),
            op,
            value: value.into(),
        });
        self
    }

    /// Adds `Active IN (true, false)` so that inactive (“deleted”) name-list records come too.
    pub fn include_inactive(mut self) -> Self {
        self.query.include_inactive = true;
        self
    }

    /// Adds `ORDERBY field ASC|DESC`.
    pub fn order_by(mut self, field: impl Into<String>, order: Order) -> Self {
        self.query.order_by = Some((field.into(), order));
        self
    }

    /// Sets STARTPOSITION (1-based).
    pub fn start_position(mut self, start: u32) -> Self {
        self.query.start_position = Some(start);
        self
    }

    /// Sets MAXRESULTS (1..=1000).
    pub fn max_results(mut self, max: u32) -> Self {
        self.query.max_results = Some(max);
        self
    }

    /// Validates and returns the query.
    ///
    /// # Errors
    /// A [`QueryError`] naming what QBO cannot express.
    pub fn build(self) -> Result<Query, QueryError> {
        self.query.validate()?;
        Ok(self.query)
    }
}

/// A query QBO cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The entity is not a plain name.
    #[error("`{entity}` is not an entity name")]
    InvalidEntity {
        /// The name given.
        entity: String,
    },
    /// The field is not a (dotted) name.
    #[error("`{field}` is not a field name")]
    InvalidField {
        /// The name given.
        field: String,
    },
    /// `Id` allows only `=` and `IN`.
    #[error("`{field}` allows only = and IN, not {op}")]
    OperatorNotAllowed {
        /// The field.
        field: String,
        /// The operator given.
        op: Op,
    },
    /// `IN` needs a list.
    #[error("`{field} IN` needs a list")]
    ListRequired {
        /// The field.
        field: String,
    },
    /// A list given to another operator.
    #[error("`{field} {op}` cannot take a list")]
    ListNotAllowed {
        /// The field.
        field: String,
        /// The operator given.
        op: Op,
    },
    /// `IN ()`.
    #[error("`{field} IN` needs at least one value")]
    EmptyList {
        /// The field.
        field: String,
    },
    /// A list inside a list.
    #[error("`{field} IN` cannot take nested lists")]
    NestedList {
        /// The field.
        field: String,
    },
    /// `LIKE` needs a string.
    #[error("`{field} LIKE` needs a string")]
    LikeNeedsString {
        /// The field.
        field: String,
    },
    /// MAXRESULTS outside 1..=1000.
    #[error("MAXRESULTS {value} is outside 1..=1000")]
    MaxResultsOutOfRange {
        /// The value given.
        value: u32,
    },
    /// STARTPOSITION is 1-based.
    #[error("STARTPOSITION is 1-based; 0 is invalid")]
    StartPositionZero,
    /// A paging or ordering clause on a COUNT query.
    #[error("a COUNT query cannot have {clause}")]
    NotForCount {
        /// The clause.
        clause: &'static str,
    },
    /// A page request with a COUNT query.
    #[error("a COUNT query returns no rows; use `count`")]
    CountNotPageable,
    /// `include_inactive` together with an explicit `Active` condition.
    #[error("include_inactive conflicts with an explicit Active condition")]
    ActiveConflict,
    /// The next STARTPOSITION does not fit in 32 bits.
    #[error("STARTPOSITION overflowed")]
    PositionOverflow,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::{date, datetime};

    #[test]
    fn renders_table() {
        let start = datetime!(2023-01-30 19:00:00 -5);
        let end = datetime!(2023-02-01 00:00:00 UTC);
        let cases: Vec<(Query, &str)> = vec![
            (
                Query::select("Invoice").build().unwrap(),
                "SELECT * FROM Invoice",
            ),
            (
                Query::count("Customer").build().unwrap(),
                "SELECT COUNT(*) FROM Customer",
            ),
            (
                Query::select("Invoice")
                    .filter("MetaData.CreateTime", Op::Ge, start)
                    .filter("MetaData.CreateTime", Op::Lt, end)
                    .order_by("MetaData.CreateTime", Order::Asc)
                    .start_position(1001)
                    .max_results(1000)
                    .build()
                    .unwrap(),
                "SELECT * FROM Invoice WHERE MetaData.CreateTime >= '2023-01-31T00:00:00Z' AND \
                 MetaData.CreateTime < '2023-02-01T00:00:00Z' ORDERBY MetaData.CreateTime ASC \
                 STARTPOSITION 1001 MAXRESULTS 1000",
            ),
            (
                Query::select("Customer")
                    .include_inactive()
                    .build()
                    .unwrap(),
                "SELECT * FROM Customer WHERE Active IN (true, false)",
            ),
            (
                Query::count("Item")
                    .filter(
                        "MetaData.LastUpdatedTime",
                        Op::Gt,
                        datetime!(2024-03-10 02:30:00.5 -8),
                    )
                    .include_inactive()
                    .build()
                    .unwrap(),
                "SELECT COUNT(*) FROM Item WHERE MetaData.LastUpdatedTime > '2024-03-10T10:30:00.5Z' \
                 AND Active IN (true, false)",
            ),
            (
                Query::select("Customer")
                    .filter("DisplayName", Op::Like, "O'Brien%")
                    .filter("Id", Op::In, vec!["1", "2"])
                    .filter("Taxable", Op::Eq, false)
                    .order_by("Id", Order::Desc)
                    .build()
                    .unwrap(),
                "SELECT * FROM Customer WHERE DisplayName LIKE 'O\\'Brien%' AND Id IN ('1', '2') \
                 AND Taxable = false ORDERBY Id DESC",
            ),
            (
                Query::select("Invoice")
                    .filter("TxnDate", Op::Le, date!(2023 - 01 - 31))
                    .filter("Id", Op::Eq, "42")
                    .filter("DocNumber", Op::Eq, "a\\b")
                    .filter("Line.Count", Op::Ge, 3i64)
                    .build()
                    .unwrap(),
                "SELECT * FROM Invoice WHERE TxnDate <= '2023-01-31' AND Id = '42' AND DocNumber = 'a\\\\b' \
                 AND Line.Count >= 3",
            ),
        ];
        for (q, want) in cases {
            assert_eq!(q.render(), want);
            assert_eq!(q.to_string(), want);
        }
    }

    #[test]
    fn rejects_what_qbo_cannot_express() {
        use QueryError as E;
        let cases: Vec<(QueryBuilder, E)> = vec![
            (
                Query::select("Invoice").max_results(1001),
                E::MaxResultsOutOfRange { value: 1001 },
            ),
            (
                Query::select("Invoice").max_results(0),
                E::MaxResultsOutOfRange { value: 0 },
            ),
            (
                Query::select("Invoice").start_position(0),
                E::StartPositionZero,
            ),
            (
                Query::select("Invoice").filter("Id", Op::Gt, "5"),
                E::OperatorNotAllowed {
                    field: "Id".into(),
                    op: Op::Gt,
                },
            ),
            (
                Query::select("Invoice").filter("id", Op::Like, "5%"),
                E::OperatorNotAllowed {
                    field: "id".into(),
                    op: Op::Like,
                },
            ),
            (
                Query::select("Invoice").filter("Id", Op::In, "5"),
                E::ListRequired { field: "Id".into() },
            ),
            (
                Query::select("Invoice").filter("Id", Op::In, Vec::<String>::new()),
                E::EmptyList { field: "Id".into() },
            ),
            (
                Query::select("Invoice").filter("DocNumber", Op::Eq, vec!["1"]),
                E::ListNotAllowed {
                    field: "DocNumber".into(),
                    op: Op::Eq,
                },
            ),
            (
                Query::select("Invoice").filter(
                    "Id",
                    Op::In,
                    Value::List(vec![Value::List(vec![])]),
                ),
                E::NestedList { field: "Id".into() },
            ),
            (
                Query::select("Invoice").filter("DocNumber", Op::Like, 5i64),
                E::LikeNeedsString {
                    field: "DocNumber".into(),
                },
            ),
            (
                Query::select("Invoice WHERE 1=1"),
                E::InvalidEntity {
                    entity: "Invoice WHERE 1=1".into(),
                },
            ),
            (
                Query::select("MetaData.X"),
                E::InvalidEntity {
                    entity: "MetaData.X".into(),
                },
            ),
            (
                Query::select("Invoice").filter("Id = '1' OR Id", Op::Eq, "2"),
                E::InvalidField {
                    field: "Id = '1' OR Id".into(),
                },
            ),
            (
                Query::select("Invoice").order_by("x; DROP", Order::Asc),
                E::InvalidField {
                    field: "x; DROP".into(),
                },
            ),
            (
                Query::count("Invoice").max_results(10),
                E::NotForCount {
                    clause: "MAXRESULTS",
                },
            ),
            (
                Query::count("Invoice").order_by("Id", Order::Asc),
                E::NotForCount { clause: "ORDERBY" },
            ),
            (
                Query::select("Customer")
                    .include_inactive()
                    .filter("Active", Op::Eq, true),
                E::ActiveConflict,
            ),
        ];
        for (b, want) in cases {
            assert_eq!(b.clone().build().unwrap_err(), want, "{b:?}");
        }
    }

    #[test]
    fn paging_helpers() {
        let q = Query::select("Invoice")
            .filter(
                "MetaData.CreateTime",
                Op::Ge,
                datetime!(2023-01-01 0:00 UTC),
            )
            .order_by("MetaData.CreateTime", Order::Asc)
            .max_results(500)
            .build()
            .unwrap();
        let p = q.with_start_position(501).unwrap();
        assert_eq!(p.start_position(), Some(501));
        assert!(p.render().ends_with("STARTPOSITION 501 MAXRESULTS 500"));
        assert_eq!(
            q.with_max_results(2000).unwrap_err(),
            QueryError::MaxResultsOutOfRange { value: 2000 }
        );
        assert_eq!(
            q.with_start_position(0).unwrap_err(),
            QueryError::StartPositionZero
        );
        let c = p.to_count();
        assert!(c.is_count());
        assert_eq!(
            c.render(),
            "SELECT COUNT(*) FROM Invoice WHERE MetaData.CreateTime >= '2023-01-01T00:00:00Z'"
        );
        assert!(c.with_start_position(1).is_err());
    }

    /// Reads a quoted literal back the way QBO's lexer does; returns the value and the rest.
    fn unquote(s: &str) -> Option<(String, &str)> {
        let mut chars = s.char_indices();
        if chars.next()?.1 != '\'' {
            return None;
        }
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                '\'' => return Some((out, &s[i + 1..])),
                c => out.push(c),
            }
        }
        None
    }

    proptest! {
        #[test]
        fn literal_escaping_round_trips(s in any::<String>()) {
            let mut out = String::new();
            push_quoted(&mut out, &s);
            let (back, rest) = unquote(&out).expect("terminated literal");
            prop_assert_eq!(back, s);
            prop_assert_eq!(rest, "");
        }

        #[test]
        fn a_literal_never_ends_the_condition_early(s in "[ -~]{0,40}") {
            let q = Query::select("Customer").filter("DisplayName", Op::Eq, s.clone()).build().unwrap();
            let text = q.render();
            let lit = text.strip_prefix("SELECT * FROM Customer WHERE DisplayName = ").unwrap();
            let (back, rest) = unquote(lit).unwrap();
            prop_assert_eq!(back, s);
            prop_assert_eq!(rest, "");
        }
    }
}
