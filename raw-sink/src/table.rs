//! Names of raw tables, fixed in code so that no runtime text reaches SQL as an identifier.

use std::fmt;

/// A table of schema `raw` (`raw.qb_<entity plural>`, SPEC §6).
///
/// It can only be built from a `&'static str` checked by a `const fn`: a name outside
/// `[a-z_][a-z0-9_]{0,62}` fails the build when used in a `const`, so SQL built from it is safe
/// to quote as `"raw"."<name>"`. The table itself is created by a migration.
///
/// ```
/// use raw_sink::RawTable;
/// const VENDORS: RawTable = RawTable::new("qb_vendors");
/// assert_eq!(VENDORS.to_string(), "raw.qb_vendors");
/// ```
///
/// ```compile_fail
/// use raw_sink::RawTable;
/// const BAD: RawTable = RawTable::new("qb_vendors; DROP TABLE x");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawTable {
    name: &'static str,
}

impl RawTable {
    /// `raw.qb_customers`.
    pub const CUSTOMERS: RawTable = RawTable::new("qb_customers");
    /// `raw.qb_items`.
    pub const ITEMS: RawTable = RawTable::new("qb_items");
    /// `raw.qb_invoices`.
    pub const INVOICES: RawTable = RawTable::new("qb_invoices");

    /// A raw table named `name` (without schema).
    ///
    /// # Panics
    /// When `name` is empty, longer than 63 bytes, or not made of `[a-z0-9_]` starting with a
    /// letter or `_`. In a `const` item that panic is a compile error.
    #[must_use]
    pub const fn new(name: &'static str) -> RawTable {
        let bytes = name.as_bytes();
        assert!(
            !bytes.is_empty() && bytes.len() <= 63,
            "raw table name must have 1 to 63 bytes"
        );
        assert!(
            bytes[0].is_ascii_lowercase() || bytes[0] == b'_',
            "raw table name must start with [a-z_]"
        );
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            assert!(
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_',
                "raw table name must be made of [a-z0-9_]"
            );
            i += 1;
        }
        RawTable { name }
    }

    /// The table name without schema, e.g. `qb_customers`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The quoted, schema-qualified identifier for SQL: `"raw"."qb_customers"`.
    #[must_use]
    pub fn quoted(&self) -> String {
        format!("\"raw\".\"{}\"", self.name)
    }
}

impl fmt::Display for RawTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raw.{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::RawTable;

    #[test]
    fn builtin_names_and_quoting() {
        assert_eq!(RawTable::CUSTOMERS.quoted(), "\"raw\".\"qb_customers\"");
        assert_eq!(RawTable::ITEMS.to_string(), "raw.qb_items");
        assert_eq!(RawTable::INVOICES.name(), "qb_invoices");
    }

    #[test]
    #[should_panic(expected = "[a-z0-9_]")]
    fn runtime_construction_still_validates() {
        let leaked: &'static str = Box::leak(String::from("qb\"x").into_boxed_str());
        let _ = RawTable::new(leaked);
    }

    #[test]
    #[should_panic(expected = "1 to 63 bytes")]
    fn empty_name_is_rejected() {
        let _ = RawTable::new("");
    }
}
