//! The JSON rendering (`report.json`): the report's types serialised as they are.

use super::Report;

impl Report {
    /// The report as pretty-printed JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
