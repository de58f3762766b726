//! The `--help` texts: examples, environment and exit codes of the dedicated binaries, and
//! the generic binary's entity table.

use crate::entity::ENTITIES;

/// The examples, environment and exit codes shown by `--help` of a dedicated binary, with
/// `{bin}` standing for its own name.
const EXAMPLES: &str = "\
Examples:
  # One month of history (UTC):
  {bin} --fecha-inicio 2023-01-01T00:00:00+00:00 --fecha-fin 2023-02-01T00:00:00+00:00

  # Plain dates mean 00:00 UTC; any offset is converted to UTC:
  {bin} --start 2020-01-01 --end 2023-01-01T00:00:00-05:00

  # From an orchestrator's variables, 7-day windows, JSON logs:
  FECHA_INICIO=2022-01-01 FECHA_FIN=2023-01-01 {bin} --window 7d --log-format json

  # See the windows without calling anything:
  {bin} --start 2023-01-01 --end 2023-03-01 --dry-run

  # One-time triggers:
  {bin} --start 2023-01-01 --end 2024-01-01 --trigger initial-load
  {bin} triggers list
  {bin} triggers disable initial-load

  # Volumetry evidence (every entity) as report.md, report.json and rows_per_day.svg:
  {bin} report --all --out ./evidence

  # Any other QBO entity: the generic binary
  qb-backfill --entity JournalEntry --start 2023-01-01 --end 2024-01-01

  # After the backfill, daily: changed records and deletions (CDC, confirmed by a read):
  {bin} sync
  # The same within 200 QBO calls (exit 1 once spent; run again to resume):
  {bin} --max-requests 200 sync
  # A sync gap over 30 days (exit 7): deletions of any age, by comparing counts:
  {bin} reconcile

  # Four processes (any machines) sharing one backfill and the realm's QBO budget:
  {bin} --start 2020-01-01 --end 2024-01-01 --trigger initial-load --workers 4

Environment: QBO_CLIENT_ID, QBO_CLIENT_SECRET, QBO_REALM_ID, QBO_ENV (sandbox|production),
QBO_REFRESH_TOKEN unless the company was connected with `qb-backfill auth connect`, optional
QBO_APPS_FILE (a JSON file of client id to secret of the further apps companies were connected
with), QBO_BASE_URL / QBO_TOKEN_URL; DATABASE_URL or PG_HOST, PG_PORT,
PG_DB, PG_USER, PG_PASSWORD. Any secret X may be given as X_FILE (a path) instead.

Exit codes: 0 all windows of the range done and every record stored, 1 some windows failed
or mismatched (by this run or another), or records QBO returned are quarantined in
raw.qb_rejects, 2 usage or configuration error, 3 QBO authentication failed (rotate the
refresh token), 4 trigger already completed, 5 database unreachable or migrations failed,
6 QuickBooks refused for a reason no re-run fixes (app keys, company, environment,
subscription, an invalid request: the message names the fix), 7 `sync` refused: the last
sync is older than CDC's 30 days (run `reconcile`, then `sync`), 130 / 143 interrupted by SIGINT / SIGTERM (windows
released, run recorded `interrupted`; run again to resume; a second signal exits at once).
`report` exits 1 when a window is not done, mismatches its source COUNT or holds quarantined
records.";

/// The `--help` epilogue of the dedicated binary `bin` (its examples name it, not another).
pub(super) fn examples(bin: &str) -> String {
    EXAMPLES.replace("{bin}", bin)
}

/// Help text of `qb-backfill`: examples and the entity table.
pub(super) fn any_help() -> String {
    let mut text = String::from(
        "\
Examples:
  # Bills created in 2023 (windows on MetaData.CreateTime, the default):
  qb-backfill --entity Bill --fecha-inicio 2023-01-01T00:00:00+00:00 --fecha-fin 2024-01-01T00:00:00+00:00

  # Journal entries by transaction date, 7-day windows:
  qb-backfill --entity journalentry --start 2023-01-01 --end 2024-01-01 --window-field TxnDate --window 7d

  # The entity from the environment (e.g. one image, many Kubernetes Jobs):
  QB_ENTITY=Vendor FECHA_INICIO=2020-01-01 FECHA_FIN=2024-01-01 qb-backfill

  # Triggers and the volumetry report (without --entity: every entity):
  qb-backfill --entity Payment triggers list
  qb-backfill report --out ./evidence

  # Keep every backfilled entity current (daily), or reconcile one after a long gap:
  qb-backfill sync --all
  qb-backfill --entity Invoice reconcile
  # The same for every connected company, four at once, within the app's monthly quota:
  qb-backfill --all-realms --realms-in-flight 4 --monthly-requests 400000 sync --all

Entities (table; name lists include inactive records with Active IN (true, false), transactions
may be windowed on TxnDate):
",
    );
    for e in ENTITIES {
        let kind = if e.name_list {
            "name list"
        } else {
            "transaction"
        };
        text.push_str(&format!(
            "  {:<15} {:<26} {kind}\n",
            e.name,
            e.table.to_string()
        ));
    }
    text.push_str(
        "\nEnvironment, secrets (X_FILE) and exit codes: as for the dedicated binaries, e.g.\n\
         qb-invoices-backfill --help.",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_s_examples_name_that_binary() {
        let text = examples("qb-customers-backfill");
        assert!(text.contains("qb-customers-backfill --fecha-inicio"));
        assert!(text.contains("qb-customers-backfill triggers list"));
        assert!(!text.contains("qb-invoices-backfill"), "{text}");
        assert!(!text.contains("{bin}"));
    }
}
