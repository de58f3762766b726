//! The entities the simulator knows and the fields a query may use on each.

/// How an entity's records come to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Customer,
    Vendor,
    Item,
    Invoice,
    Payment,
    Bill,
    JournalEntry,
    Estimate,
    SalesReceipt,
    Account,
    Employee,
    /// The company itself: one record, `Id` 1.
    CompanyInfo,
    /// A name list the simulator knows but holds no data for (e.g. Class).
    EmptyNameList,
    /// A transaction entity the simulator knows but holds no data for (e.g. Transfer).
    EmptyTxn,
}

/// A queryable field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    Id,
    CreateTime,
    LastUpdatedTime,
    Active,
    TxnDate,
    DueDate,
    DocNumber,
    CustomerRef,
    VendorRef,
    DisplayName,
    GivenName,
    FamilyName,
    CompanyName,
    FullyQualifiedName,
    PrintOnCheckName,
    Name,
    Type,
    Job,
    SubItem,
    AccountType,
    Classification,
    TxnStatus,
}

/// The type of a field's values, which decides the operators and literals it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Id,
    Instant,
    Date,
    Bool,
    Text,
    Ref,
}

impl Kind {
    /// Whether records of this kind carry a `TxnDate`.
    pub(crate) fn is_transaction(self) -> bool {
        matches!(
            self,
            Kind::Invoice
                | Kind::Payment
                | Kind::Bill
                | Kind::JournalEntry
                | Kind::Estimate
                | Kind::SalesReceipt
                | Kind::EmptyTxn
        )
    }
}

impl Field {
    pub(crate) fn ty(self) -> FieldType {
        match self {
            Field::Id => FieldType::Id,
            Field::CreateTime | Field::LastUpdatedTime => FieldType::Instant,
            Field::TxnDate | Field::DueDate => FieldType::Date,
            Field::Active | Field::Job | Field::SubItem => FieldType::Bool,
            Field::CustomerRef | Field::VendorRef => FieldType::Ref,
            Field::DocNumber
            | Field::DisplayName
            | Field::GivenName
            | Field::FamilyName
            | Field::CompanyName
            | Field::FullyQualifiedName
            | Field::PrintOnCheckName
            | Field::Name
            | Field::Type
            | Field::AccountType
            | Field::Classification
            | Field::TxnStatus => FieldType::Text,
        }
    }
}

/// One entity.
#[derive(Debug)]
pub(crate) struct EntityDef {
    /// Canonical name, also the list key in responses.
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Name lists hide inactive rows unless the query filters `Active`.
    pub(crate) name_list: bool,
    pub(crate) fields: &'static [(&'static str, Field)],
}

impl EntityDef {
    /// Resolves a field path case-insensitively (`Metadata.LastUpdatedTime` = `MetaData.LastUpdatedTime`).
    pub(crate) fn field(&self, path: &str) -> Option<Field> {
        self.fields
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(path))
            .map(|(_, f)| *f)
    }
}

const META: [(&str, Field); 3] = [
    ("Id", Field::Id),
    ("MetaData.CreateTime", Field::CreateTime),
    ("MetaData.LastUpdatedTime", Field::LastUpdatedTime),
];

const CUSTOMER_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("Active", Field::Active),
    ("DisplayName", Field::DisplayName),
    ("GivenName", Field::GivenName),
    ("FamilyName", Field::FamilyName),
    ("CompanyName", Field::CompanyName),
    ("FullyQualifiedName", Field::FullyQualifiedName),
    ("PrintOnCheckName", Field::PrintOnCheckName),
    ("Job", Field::Job),
];

const VENDOR_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("Active", Field::Active),
    ("DisplayName", Field::DisplayName),
    ("GivenName", Field::GivenName),
    ("FamilyName", Field::FamilyName),
    ("CompanyName", Field::CompanyName),
    ("PrintOnCheckName", Field::PrintOnCheckName),
];

const ITEM_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("Active", Field::Active),
    ("Name", Field::Name),
    ("FullyQualifiedName", Field::FullyQualifiedName),
    ("Type", Field::Type),
    ("SubItem", Field::SubItem),
];

const INVOICE_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("TxnDate", Field::TxnDate),
    ("DueDate", Field::DueDate),
    ("DocNumber", Field::DocNumber),
    ("CustomerRef", Field::CustomerRef),
];

const PAYMENT_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("TxnDate", Field::TxnDate),
    ("CustomerRef", Field::CustomerRef),
];

const BILL_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("TxnDate", Field::TxnDate),
    ("DueDate", Field::DueDate),
    ("DocNumber", Field::DocNumber),
    ("VendorRef", Field::VendorRef),
];

const JOURNAL_ENTRY_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("TxnDate", Field::TxnDate),
    ("DocNumber", Field::DocNumber),
];

const ESTIMATE_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("TxnDate", Field::TxnDate),
    ("DocNumber", Field::DocNumber),
    ("CustomerRef", Field::CustomerRef),
    ("TxnStatus", Field::TxnStatus),
];

const SALES_RECEIPT_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("TxnDate", Field::TxnDate),
    ("DocNumber", Field::DocNumber),
    ("CustomerRef", Field::CustomerRef),
];

const ACCOUNT_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("Active", Field::Active),
    ("Name", Field::Name),
    ("FullyQualifiedName", Field::FullyQualifiedName),
    ("AccountType", Field::AccountType),
    ("Classification", Field::Classification),
];

const EMPLOYEE_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("Active", Field::Active),
    ("DisplayName", Field::DisplayName),
    ("GivenName", Field::GivenName),
    ("FamilyName", Field::FamilyName),
    ("PrintOnCheckName", Field::PrintOnCheckName),
];

const COMPANY_INFO_FIELDS: &[(&str, Field)] = &[META[0], META[1], META[2]];

const NAMED_LIST_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("Active", Field::Active),
    ("Name", Field::Name),
];

const TAX_AGENCY_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("DisplayName", Field::DisplayName),
];

const EMPTY_NAME_LIST_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("Active", Field::Active),
    ("Name", Field::Name),
    ("DisplayName", Field::DisplayName),
    ("FullyQualifiedName", Field::FullyQualifiedName),
];

const EMPTY_TXN_FIELDS: &[(&str, Field)] = &[
    META[0],
    META[1],
    META[2],
    ("TxnDate", Field::TxnDate),
    ("DocNumber", Field::DocNumber),
];

macro_rules! entity {
    ($name:literal, $kind:expr, $nl:expr, $fields:expr) => {
        EntityDef {
            name: $name,
            kind: $kind,
            name_list: $nl,
            fields: $fields,
        }
    };
}

/// Every entity the simulator knows.
pub(crate) static ENTITIES: &[EntityDef] = &[
    entity!("Customer", Kind::Customer, true, CUSTOMER_FIELDS),
    entity!("Item", Kind::Item, true, ITEM_FIELDS),
    entity!("Invoice", Kind::Invoice, false, INVOICE_FIELDS),
    entity!("Vendor", Kind::Vendor, true, VENDOR_FIELDS),
    entity!("Account", Kind::Account, true, ACCOUNT_FIELDS),
    entity!("Employee", Kind::Employee, true, EMPLOYEE_FIELDS),
    entity!("Class", Kind::EmptyNameList, true, EMPTY_NAME_LIST_FIELDS),
    entity!(
        "Department",
        Kind::EmptyNameList,
        true,
        EMPTY_NAME_LIST_FIELDS
    ),
    entity!("Term", Kind::EmptyNameList, true, EMPTY_NAME_LIST_FIELDS),
    entity!(
        "PaymentMethod",
        Kind::EmptyNameList,
        true,
        EMPTY_NAME_LIST_FIELDS
    ),
    entity!("TaxCode", Kind::EmptyNameList, true, EMPTY_NAME_LIST_FIELDS),
    entity!("TaxRate", Kind::EmptyNameList, true, EMPTY_NAME_LIST_FIELDS),
    entity!("Budget", Kind::EmptyNameList, true, NAMED_LIST_FIELDS),
    entity!("CustomerType", Kind::EmptyNameList, true, NAMED_LIST_FIELDS),
    // TaxAgency has no `Active`: nothing is hidden.
    entity!("TaxAgency", Kind::EmptyNameList, false, TAX_AGENCY_FIELDS),
    entity!("CompanyInfo", Kind::CompanyInfo, false, COMPANY_INFO_FIELDS),
    entity!("TimeActivity", Kind::EmptyTxn, false, EMPTY_TXN_FIELDS),
    entity!("Bill", Kind::Bill, false, BILL_FIELDS),
    entity!("BillPayment", Kind::EmptyTxn, false, EMPTY_TXN_FIELDS),
    entity!("CreditMemo", Kind::EmptyTxn, false, EMPTY_TXN_FIELDS),
    entity!("Deposit", Kind::EmptyTxn, false, EMPTY_TXN_FIELDS),
    entity!("Estimate", Kind::Estimate, false, ESTIMATE_FIELDS),
    entity!(
        "JournalEntry",
        Kind::JournalEntry,
        false,
        JOURNAL_ENTRY_FIELDS
    ),
    entity!("Payment", Kind::Payment, false, PAYMENT_FIELDS),
    entity!("Purchase", Kind::EmptyTxn, false, EMPTY_TXN_FIELDS),
    entity!("PurchaseOrder", Kind::EmptyTxn, false, EMPTY_TXN_FIELDS),
    entity!("RefundReceipt", Kind::EmptyTxn, false, EMPTY_TXN_FIELDS),
    entity!(
        "SalesReceipt",
        Kind::SalesReceipt,
        false,
        SALES_RECEIPT_FIELDS
    ),
    entity!("Transfer", Kind::EmptyTxn, false, EMPTY_TXN_FIELDS),
    entity!("VendorCredit", Kind::EmptyTxn, false, EMPTY_TXN_FIELDS),
];

/// Looks an entity up by name, case-insensitively.
pub(crate) fn entity(name: &str) -> Option<&'static EntityDef> {
    ENTITIES.iter().find(|e| e.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lookups_are_case_insensitive() {
        assert_eq!(entity("invoice").unwrap().name, "Invoice");
        assert_eq!(entity("CUSTOMER").unwrap().name, "Customer");
        assert!(entity("Customers").is_none());
        let inv = entity("Invoice").unwrap();
        assert_eq!(inv.field("metadata.createtime"), Some(Field::CreateTime));
        assert_eq!(
            inv.field("Metadata.LastUpdatedTime"),
            Some(Field::LastUpdatedTime)
        );
        assert_eq!(inv.field("Active"), None);
        assert_eq!(
            entity("Customer").unwrap().field("active"),
            Some(Field::Active)
        );
    }
}
