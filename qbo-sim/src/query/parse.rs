//! Lexer and parser for the QBO query language subset.
//!
//! `SELECT * | COUNT(*) FROM Entity [WHERE cond AND cond ...] [ORDERBY field [ASC|DESC], ...]
//! [STARTPOSITION n] [MAXRESULTS m]`. Keywords are case-insensitive; `ORDER BY` is accepted as
//! well as `ORDERBY`. This module checks syntax only; names and types are checked by
//! `compile`.

use std::fmt;

/// What the query selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Projection {
    /// `SELECT *`
    All,
    /// `SELECT COUNT(*)`
    Count,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Like,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
            Op::In => "IN",
            Op::Like => "LIKE",
        })
    }
}

/// A literal as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Literal {
    /// A quoted string, unescaped.
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// An unquoted number, as written.
    Num(String),
}

/// One `field op value` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    pub(crate) field: String,
    pub(crate) op: Op,
    /// One value, or several for `IN`.
    pub(crate) values: Vec<Literal>,
}

/// A parsed (not yet validated) query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedQuery {
    pub(crate) projection: Projection,
    pub(crate) entity: String,
    pub(crate) conditions: Vec<Condition>,
    /// Field and `true` for descending.
    pub(crate) order_by: Vec<(String, bool)>,
    pub(crate) start_position: Option<i64>,
    pub(crate) max_results: Option<i64>,
}

/// A syntax error, with the 1-based column where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) column: usize,
    pub(crate) found: String,
    pub(crate) expected: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QueryParserError: Encountered \"{}\" at line 1, column {}.\nWas expecting one of:\n    {}",
            self.found, self.column, self.expected
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Star,
    LParen,
    RParen,
    Comma,
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    /// `!=`, `<>` and other symbols the language does not have.
    Other(String),
    Eof,
}

impl Tok {
    fn show(&self) -> String {
        match self {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Num(n) => n.clone(),
            Tok::Star => "*".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Eq => "=".into(),
            Tok::Lt => "<".into(),
            Tok::Gt => ">".into(),
            Tok::Le => "<=".into(),
            Tok::Ge => ">=".into(),
            Tok::Other(s) => s.clone(),
            Tok::Eof => "<EOF>".into(),
        }
    }
}

fn lex(input: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), col));
            continue;
        }
        if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push((Tok::Num(chars[start..i].iter().collect()), col));
            continue;
        }
        if c == '\'' {
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            while i < chars.len() {
                match chars[i] {
                    '\\' if matches!(chars.get(i + 1), Some('\'') | Some('\\')) => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    '\'' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    other => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            if !closed {
                return Err(ParseError {
                    column: col,
                    found: "<unterminated string>".into(),
                    expected: "'".into(),
                });
            }
            out.push((Tok::Str(s), col));
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let (tok, len) = match two.as_str() {
            "<=" => (Tok::Le, 2),
            ">=" => (Tok::Ge, 2),
            "<>" | "!=" => (Tok::Other(two.clone()), 2),
            _ => match c {
                '*' => (Tok::Star, 1),
                '(' => (Tok::LParen, 1),
                ')' => (Tok::RParen, 1),
                ',' => (Tok::Comma, 1),
                '=' => (Tok::Eq, 1),
                '<' => (Tok::Lt, 1),
                '>' => (Tok::Gt, 1),
                other => (Tok::Other(other.to_string()), 1),
            },
        };
        out.push((tok, col));
        i += len;
    }
    out.push((Tok::Eof, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::Eof, |t| &t.0)
    }

    fn err(&self, expected: &str) -> ParseError {
        let (tok, column) = self.toks.get(self.pos).cloned().unwrap_or((Tok::Eof, 0));
        ParseError {
            column,
            found: tok.show(),
            expected: expected.to_string(),
        }
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.is_kw(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("\"{kw}\"")))
        }
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == tok {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn identifier(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek() {
            Tok::Word(w) if !is_reserved(w) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.err(what)),
        }
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.pos += 1;
                Ok(Literal::Str(s))
            }
            Tok::Num(n) => {
                self.pos += 1;
                Ok(Literal::Num(n))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => {
                self.pos += 1;
                Ok(Literal::Bool(true))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => {
                self.pos += 1;
                Ok(Literal::Bool(false))
            }
            _ => Err(self.err("<STRING> | <NUMBER> | \"true\" | \"false\"")),
        }
    }

    fn integer(&mut self, what: &str) -> Result<i64, ParseError> {
        match self.peek().clone() {
            Tok::Num(n) => match n.parse::<i64>() {
                Ok(v) => {
                    self.pos += 1;
                    Ok(v)
                }
                Err(_) => Err(self.err(what)),
            },
            _ => Err(self.err(what)),
        }
    }

    fn condition(&mut self) -> Result<Condition, ParseError> {
        let field = self.identifier("<IDENTIFIER>")?;
        if self.is_kw("NOT") {
            return Err(self.err("\"=\" | \"<\" | \">\" | \"<=\" | \">=\" | \"IN\" | \"LIKE\""));
        }
        let op = match self.peek() {
            Tok::Eq => Op::Eq,
            Tok::Lt => Op::Lt,
            Tok::Gt => Op::Gt,
            Tok::Le => Op::Le,
            Tok::Ge => Op::Ge,
            Tok::Word(w) if w.eq_ignore_ascii_case("IN") => Op::In,
            Tok::Word(w) if w.eq_ignore_ascii_case("LIKE") => Op::Like,
            _ => {
                return Err(self.err("\"=\" | \"<\" | \">\" | \"<=\" | \">=\" | \"IN\" | \"LIKE\""));
            }
        };
        self.pos += 1;
        let values = if op == Op::In {
            self.expect(&Tok::LParen, "\"(\"")?;
            let mut vals = vec![self.literal()?];
            while self.peek() == &Tok::Comma {
                self.pos += 1;
                vals.push(self.literal()?);
            }
            self.expect(&Tok::RParen, "\")\" | \",\"")?;
            vals
        } else {
            vec![self.literal()?]
        };
        Ok(Condition { field, op, values })
    }

    fn query(&mut self) -> Result<ParsedQuery, ParseError> {
        self.expect_kw("SELECT")?;
        let projection = match self.peek() {
            Tok::Star => {
                self.pos += 1;
                Projection::All
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("COUNT") => {
                self.pos += 1;
                self.expect(&Tok::LParen, "\"(\"")?;
                self.expect(&Tok::Star, "\"*\"")?;
                self.expect(&Tok::RParen, "\")\"")?;
                Projection::Count
            }
            // Projections (`SELECT Id, Name`) are not supported by the simulator.
            _ => return Err(self.err("\"*\" | \"COUNT\"")),
        };
        self.expect_kw("FROM")?;
        let entity = self.identifier("<IDENTIFIER>")?;
        let mut conditions = Vec::new();
        if self.is_kw("WHERE") {
            self.pos += 1;
            conditions.push(self.condition()?);
            while self.is_kw("AND") {
                self.pos += 1;
                conditions.push(self.condition()?);
            }
        }
        let mut order_by = Vec::new();
        if self.is_kw("ORDERBY") || self.is_kw("ORDER") {
            if self.is_kw("ORDER") {
                self.pos += 1;
                self.expect_kw("BY")?;
            } else {
                self.pos += 1;
            }
            loop {
                let field = self.identifier("<IDENTIFIER>")?;
                let desc = if self.is_kw("DESC") {
                    self.pos += 1;
                    true
                } else {
                    if self.is_kw("ASC") {
                        self.pos += 1;
                    }
                    false
                };
                order_by.push((field, desc));
                if self.peek() == &Tok::Comma {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        let mut start_position = None;
        let mut max_results = None;
        loop {
            if start_position.is_none() && self.is_kw("STARTPOSITION") {
                self.pos += 1;
                start_position = Some(self.integer("<INTEGER>")?);
            } else if max_results.is_none() && self.is_kw("MAXRESULTS") {
                self.pos += 1;
                max_results = Some(self.integer("<INTEGER>")?);
            } else {
                break;
            }
        }
        if self.peek() != &Tok::Eof {
            let mut expected = Vec::new();
            if conditions.is_empty() && order_by.is_empty() {
                expected.push("\"WHERE\"");
            } else if order_by.is_empty() {
                expected.push("\"AND\"");
            }
            if order_by.is_empty() {
                expected.push("\"ORDERBY\"");
            }
            if start_position.is_none() {
                expected.push("\"STARTPOSITION\"");
            }
            if max_results.is_none() {
                expected.push("\"MAXRESULTS\"");
            }
            expected.push("<EOF>");
            return Err(self.err(&expected.join(" | ")));
        }
        let _ = self.bump();
        Ok(ParsedQuery {
            projection,
            entity,
            conditions,
            order_by,
            start_position,
            max_results,
        })
    }
}

fn is_reserved(w: &str) -> bool {
    const RESERVED: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "IN",
        "LIKE",
        "ORDERBY",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "STARTPOSITION",
        "MAXRESULTS",
        "COUNT",
        "TRUE",
        "FALSE",
        "NOT",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w))
}

/// Parses query text.
pub(crate) fn parse(input: &str) -> Result<ParsedQuery, ParseError> {
    let toks = lex(input)?;
    Parser { toks, pos: 0 }.query()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Query, projection, entity, conditions, order fields, STARTPOSITION, MAXRESULTS.
    type Case = (
        &'static str,
        Projection,
        &'static str,
        usize,
        usize,
        Option<i64>,
        Option<i64>,
    );

    #[test]
    fn valid_queries() {
        let cases: &[Case] = &[
            (
                "SELECT * FROM Customer",
                Projection::All,
                "Customer",
                0,
                0,
                None,
                None,
            ),
            (
                "select * from invoice",
                Projection::All,
                "invoice",
                0,
                0,
                None,
                None,
            ),
            (
                "SELECT COUNT(*) FROM Item",
                Projection::Count,
                "Item",
                0,
                0,
                None,
                None,
            ),
            (
                "select count( * ) from Item where Active = true",
                Projection::Count,
                "Item",
                1,
                0,
                None,
                None,
            ),
            (
                "SELECT * FROM Invoice WHERE MetaData.CreateTime >= '2023-01-01T00:00:00Z' AND MetaData.CreateTime < '2023-01-02T00:00:00Z' ORDERBY MetaData.CreateTime STARTPOSITION 1 MAXRESULTS 1000",
                Projection::All,
                "Invoice",
                2,
                1,
                Some(1),
                Some(1000),
            ),
            (
                "SELECT * FROM Customer WHERE Active IN (true, false) ORDER BY Id DESC MAXRESULTS 10 STARTPOSITION 11",
                Projection::All,
                "Customer",
                1,
                1,
                Some(11),
                Some(10),
            ),
            (
                "SELECT * FROM Customer WHERE DisplayName LIKE 'A%'",
                Projection::All,
                "Customer",
                1,
                0,
                None,
                None,
            ),
            (
                "SELECT * FROM Customer ORDERBY DisplayName ASC, Id",
                Projection::All,
                "Customer",
                0,
                2,
                None,
                None,
            ),
            (
                "  SELECT\n*\tFROM Customer  ",
                Projection::All,
                "Customer",
                0,
                0,
                None,
                None,
            ),
        ];
        for (q, proj, entity, nconds, norder, sp, mr) in cases {
            let p = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(p.projection, *proj, "{q}");
            assert_eq!(p.entity, *entity, "{q}");
            assert_eq!(p.conditions.len(), *nconds, "{q}");
            assert_eq!(p.order_by.len(), *norder, "{q}");
            assert_eq!(p.start_position, *sp, "{q}");
            assert_eq!(p.max_results, *mr, "{q}");
        }
    }

    #[test]
    fn literals_and_escapes() {
        let p = parse(
            r"SELECT * FROM Customer WHERE DisplayName = 'Amy\'s Bird' AND Id IN ('1', '2', 3)",
        )
        .unwrap();
        assert_eq!(
            p.conditions[0].values,
            vec![Literal::Str("Amy's Bird".into())]
        );
        assert_eq!(p.conditions[1].op, Op::In);
        assert_eq!(
            p.conditions[1].values,
            vec![
                Literal::Str("1".into()),
                Literal::Str("2".into()),
                Literal::Num("3".into())
            ]
        );
        let p = parse(r"SELECT * FROM Customer WHERE DisplayName = 'back\\slash'").unwrap();
        assert_eq!(
            p.conditions[0].values,
            vec![Literal::Str("back\\slash".into())]
        );
        let p = parse("SELECT * FROM Customer WHERE Active = FALSE").unwrap();
        assert_eq!(p.conditions[0].values, vec![Literal::Bool(false)]);
        let p = parse("SELECT * FROM Customer WHERE DisplayName = 'Zoë 北京'").unwrap();
        assert_eq!(
            p.conditions[0].values,
            vec![Literal::Str("Zoë 北京".into())]
        );
        let p = parse("SELECT * FROM Customer ORDER BY Metadata.LastUpdatedTime desc").unwrap();
        assert_eq!(
            p.order_by,
            vec![("Metadata.LastUpdatedTime".to_string(), true)]
        );
    }

    #[test]
    fn invalid_queries() {
        let cases = [
            "",
            "SELECT",
            "SELECT * FROM",
            "SELECT Id FROM Customer",
            "SELECT Id, DisplayName FROM Customer",
            "SELECT * FROM Customer WHERE Active = true OR Active = false",
            "SELECT * FROM Customer WHERE",
            "SELECT * FROM Customer WHERE Id != '1'",
            "SELECT * FROM Customer WHERE Id <> '1'",
            "SELECT * FROM Customer WHERE Id NOT IN ('1')",
            "SELECT * FROM Customer WHERE DisplayName = 'unterminated",
            "SELECT * FROM Customer WHERE Id IN ()",
            "SELECT * FROM Customer WHERE Id IN ('1'",
            "SELECT * FROM Customer MAXRESULTS",
            "SELECT * FROM Customer MAXRESULTS ten",
            "SELECT * FROM Customer MAXRESULTS 10 MAXRESULTS 10",
            "SELECT * FROM Customer STARTPOSITION 1.5",
            "SELECT * FROM Customer ORDER Id",
            "SELECT * FROM Customer ORDERBY",
            "SELECT * FROM Customer;",
            "SELECT * FROM Customer, Invoice",
            "SELECT * FROM Customer JOIN Invoice",
            "SELECT * FROM Customer GROUP BY Id",
            "SELECT * FROM Customer WHERE DisplayName = \"double\"",
            "SELECT COUNT(Id) FROM Customer",
            "DELETE FROM Customer",
        ];
        for q in cases {
            assert!(parse(q).is_err(), "should fail: {q}");
        }
    }

    #[test]
    fn error_names_column() {
        let e = parse("SELECT * FROM Customer WHERE Active = true OR Id = '1'").unwrap_err();
        assert_eq!(e.found, "OR");
        assert_eq!(e.column, 44);
        assert!(
            e.to_string()
                .starts_with("QueryParserError: Encountered \"OR\"")
        );
    }
}
