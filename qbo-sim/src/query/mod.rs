//! The QBO query language: parsing, validation and execution plans.

pub(crate) mod compile;
pub(crate) mod parse;
