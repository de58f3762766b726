//! What varies between QBO entities: the [`Entity`] trait and the built-in entities.

use std::fmt;
use std::str::FromStr;

use raw_sink::RawTable;

/// The record timestamp that decides which window a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowField {
    /// `MetaData.CreateTime`: a record belongs to exactly one window forever (the default).
    CreateTime,
    /// `MetaData.LastUpdatedTime`: a record moves to a later window when it changes.
    LastUpdatedTime,
    /// `TxnDate` (transactions only): a calendar date, so windows must be whole UTC days.
    TxnDate,
}

impl WindowField {
    /// Every window field, in the order the CLI documents them.
    pub const ALL: [WindowField; 3] = [
        WindowField::CreateTime,
        WindowField::LastUpdatedTime,
        WindowField::TxnDate,
    ];

    /// The attribute name as written in a QBO query (and stored in the ledger).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            WindowField::CreateTime => "MetaData.CreateTime",
            WindowField::LastUpdatedTime => "MetaData.LastUpdatedTime",
            WindowField::TxnDate => "TxnDate",
        }
    }

    /// Whether the field holds a calendar date rather than an instant.
    #[must_use]
    pub const fn is_date(self) -> bool {
        matches!(self, WindowField::TxnDate)
    }
}

impl fmt::Display for WindowField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string names no [`WindowField`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown window field {0:?}; expected MetaData.CreateTime, MetaData.LastUpdatedTime or TxnDate"
)]
pub struct UnknownWindowField(pub String);

impl FromStr for WindowField {
    type Err = UnknownWindowField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // QBO attribute names are case-insensitive; connectors write `Metadata.` as often as `MetaData.`.
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "metadata.createtime" | "createtime" => Ok(WindowField::CreateTime),
            "metadata.lastupdatedtime" | "lastupdatedtime" => Ok(WindowField::LastUpdatedTime),
            "txndate" => Ok(WindowField::TxnDate),
            _ => Err(UnknownWindowField(s.to_owned())),
        }
    }
}

/// A QBO entity that a pipeline can back-fill.
///
/// Only what differs between entities lives here; the loop ([`crate::run()`]) is generic over
/// it. Adding an entity outside this crate takes a unit struct and a few constants:
///
/// ```
/// use backfill_core::{Entity, WindowField};
/// use raw_sink::RawTable;
///
/// /// Vendors, a name list like customers.
/// pub struct Vendor;
///
/// impl Entity for Vendor {
///     const NAME: &'static str = "Vendor";
///     const PIPELINE: &'static str = "qb_vendors_backfill";
///     const TABLE: RawTable = RawTable::new("qb_vendors");
///     const NAME_LIST: bool = true;
/// }
///
/// assert_eq!(Vendor::DEFAULT_WINDOW_FIELD, WindowField::CreateTime);
/// ```
pub trait Entity: Send + Sync + 'static {
    /// The QBO entity name, as written after `FROM` and as the list key of a response.
    const NAME: &'static str;
    /// The pipeline name recorded in the ledger and the logs, e.g. `qb_invoices_backfill`.
    const PIPELINE: &'static str;
    /// The raw table (`raw.qb_<plural>`) the records are upserted into.
    const TABLE: RawTable;
    /// Whether this is a name list, whose inactive rows QBO hides unless asked for
    /// (`Active IN (true, false)`).
    const NAME_LIST: bool = false;
    /// Whether this is a transaction (it has a `TxnDate` that windows may be cut on).
    const TRANSACTION: bool = false;
    /// The window field used when the CLI does not choose one.
    const DEFAULT_WINDOW_FIELD: WindowField = WindowField::CreateTime;

    /// Whether `field` can define this entity's windows.
    #[must_use]
    fn supports_window_field(field: WindowField) -> bool {
        !field.is_date() || Self::TRANSACTION
    }
}

/// Facts about an entity as a value: what the report, the generic binary and the docs list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntityInfo {
    /// [`Entity::NAME`].
    pub name: &'static str,
    /// [`Entity::PIPELINE`].
    pub pipeline: &'static str,
    /// [`Entity::TABLE`].
    pub table: RawTable,
    /// [`Entity::NAME_LIST`].
    pub name_list: bool,
    /// [`Entity::TRANSACTION`].
    pub transaction: bool,
}

impl EntityInfo {
    /// The facts of entity `E`.
    #[must_use]
    pub const fn of<E: Entity>() -> EntityInfo {
        EntityInfo {
            name: E::NAME,
            pipeline: E::PIPELINE,
            table: E::TABLE,
            name_list: E::NAME_LIST,
            transaction: E::TRANSACTION,
        }
    }

    /// The built-in entity named `name` (case-insensitive), if any.
    #[must_use]
    pub fn find(name: &str) -> Option<&'static EntityInfo> {
        ENTITIES
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name.trim()))
    }
}

/// Code generic over the entity, run for an entity chosen at run time: see [`with_entity`].
pub trait EntityVisitor {
    /// What the visit returns.
    type Output;
    /// Called with the static type of the chosen entity.
    fn visit<E: Entity>(self) -> Self::Output;
}

/// Declares the built-in entities once: the unit structs, their [`Entity`] impls, [`ENTITIES`]
/// and [`with_entity`]. `name_list` entities get `Active IN (true, false)`; `transaction`
/// entities may be windowed on `TxnDate`.
macro_rules! entities {
    (@name_list name_list) => { true };
    (@name_list transaction) => { false };
    (@transaction name_list) => { false };
    (@transaction transaction) => { true };
    (@kind name_list) => { "a name list; inactive records included" };
    (@kind transaction) => { "a transaction" };
    ($($ty:ident => $table:literal, $kind:ident;)+) => {
        $(
            #[doc = concat!("QBO `", stringify!($ty), "` (", entities!(@kind $kind), "): `raw.", $table, "`.")]
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;

            impl Entity for $ty {
                const NAME: &'static str = stringify!($ty);
                const PIPELINE: &'static str = concat!($table, "_backfill");
                const TABLE: RawTable = RawTable::new($table);
                const NAME_LIST: bool = entities!(@name_list $kind);
                const TRANSACTION: bool = entities!(@transaction $kind);
            }
        )+

        /// Every built-in entity, in alphabetical order of QBO name.
        pub const ENTITIES: &[EntityInfo] = &[$(EntityInfo::of::<$ty>()),+];

        /// Runs `visitor` with the static type of the built-in entity named `name`
        /// (case-insensitive, e.g. `invoice`, `JournalEntry`); `None` when no entity has that name.
        pub fn with_entity<V: EntityVisitor>(name: &str, visitor: V) -> Option<V::Output> {
            let name = name.trim();
            $(
                if name.eq_ignore_ascii_case(stringify!($ty)) {
                    return Some(visitor.visit::<$ty>());
                }
            )+
            None
        }
    };
}

entities! {
    Account => "qb_accounts", name_list;
    Bill => "qb_bills", transaction;
    BillPayment => "qb_bill_payments", transaction;
    Class => "qb_classes", name_list;
    CreditMemo => "qb_credit_memos", transaction;
    Customer => "qb_customers", name_list;
    Department => "qb_departments", name_list;
    Deposit => "qb_deposits", transaction;
    Employee => "qb_employees", name_list;
    Estimate => "qb_estimates", transaction;
    Invoice => "qb_invoices", transaction;
    Item => "qb_items", name_list;
    JournalEntry => "qb_journal_entries", transaction;
    Payment => "qb_payments", transaction;
    PaymentMethod => "qb_payment_methods", name_list;
    Purchase => "qb_purchases", transaction;
    PurchaseOrder => "qb_purchase_orders", transaction;
    RefundReceipt => "qb_refund_receipts", transaction;
    SalesReceipt => "qb_sales_receipts", transaction;
    TaxCode => "qb_tax_codes", name_list;
    TaxRate => "qb_tax_rates", name_list;
    Term => "qb_terms", name_list;
    TimeActivity => "qb_time_activities", transaction;
    Transfer => "qb_transfers", transaction;
    Vendor => "qb_vendors", name_list;
    VendorCredit => "qb_vendor_credits", transaction;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_field_round_trips_and_is_case_insensitive() {
        for f in WindowField::ALL {
            assert_eq!(f.as_str().parse::<WindowField>(), Ok(f));
            assert_eq!(f.to_string().to_uppercase().parse::<WindowField>(), Ok(f));
        }
        assert_eq!(
            "Metadata.LastUpdatedTime".parse::<WindowField>(),
            Ok(WindowField::LastUpdatedTime)
        );
        assert!("TxnDateTime".parse::<WindowField>().is_err());
    }

    #[test]
    fn txn_date_only_for_transactions() {
        assert!(Invoice::supports_window_field(WindowField::TxnDate));
        assert!(!Customer::supports_window_field(WindowField::TxnDate));
        assert!(!Item::supports_window_field(WindowField::TxnDate));
        assert!(Customer::supports_window_field(
            WindowField::LastUpdatedTime
        ));
    }

    #[test]
    fn the_first_three_keep_their_names() {
        assert_eq!(Customer::TABLE, RawTable::CUSTOMERS);
        assert_eq!(Item::TABLE, RawTable::ITEMS);
        assert_eq!(Invoice::TABLE, RawTable::INVOICES);
    }

    #[test]
    fn registry_is_complete_sorted_and_consistent() {
        assert_eq!(ENTITIES.len(), 26);
        let names: Vec<&str> = ENTITIES.iter().map(|e| e.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(
            names, sorted,
            "alphabetical, so help and reports are stable"
        );
        for e in ENTITIES {
            assert_eq!(e.pipeline, format!("{}_backfill", e.table.name()));
            assert!(e.table.name().starts_with("qb_"), "{}", e.name);
            assert!(
                e.name_list != e.transaction,
                "{} is exactly one kind",
                e.name
            );
            assert_eq!(EntityInfo::find(&e.name.to_lowercase()), Some(e));
            struct Name;
            impl EntityVisitor for Name {
                type Output = EntityInfo;
                fn visit<E: Entity>(self) -> EntityInfo {
                    EntityInfo::of::<E>()
                }
            }
            assert_eq!(with_entity(&e.name.to_uppercase(), Name), Some(*e));
        }
        assert!(EntityInfo::find("Invoices").is_none());
    }

    #[test]
    fn active_rule_and_txn_date_per_entity() {
        let name_lists = [
            "Account",
            "Class",
            "Customer",
            "Department",
            "Employee",
            "Item",
            "PaymentMethod",
            "TaxCode",
            "TaxRate",
            "Term",
            "Vendor",
        ];
        for e in ENTITIES {
            assert_eq!(e.name_list, name_lists.contains(&e.name), "{}", e.name);
        }
        assert!(JournalEntry::supports_window_field(WindowField::TxnDate));
        assert!(!Vendor::supports_window_field(WindowField::TxnDate));
        assert_eq!(TimeActivity::TABLE.name(), "qb_time_activities");
        assert_eq!(JournalEntry::TABLE.name(), "qb_journal_entries");
        assert_eq!(Class::TABLE.name(), "qb_classes");
    }

    #[test]
    fn every_table_has_a_migration() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut ddl = String::new();
        for f in std::fs::read_dir(&dir).unwrap() {
            ddl.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
        }
        for e in ENTITIES {
            assert!(
                ddl.contains(&format!("CREATE TABLE raw.{} (", e.table.name())),
                "no migration creates {}",
                e.table
            );
        }
    }

    #[test]
    fn built_in_entities() {
        assert_eq!(Customer::PIPELINE, "qb_customers_backfill");
        assert_eq!(Item::PIPELINE, "qb_items_backfill");
        assert_eq!(Invoice::PIPELINE, "qb_invoices_backfill");
        const { assert!(Customer::NAME_LIST && Item::NAME_LIST && !Invoice::NAME_LIST) };
        assert_eq!(Invoice::DEFAULT_WINDOW_FIELD, WindowField::CreateTime);
    }
}
