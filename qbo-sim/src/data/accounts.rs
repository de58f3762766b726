//! The chart of accounts (`Account`, a name list) and the account references of transactions.
//!
//! The first accounts follow [`CHART`] in order; any beyond it are sub-accounts of the chart
//! account at the same position (`Utilities:Utilities 57`), so names stay unique and a
//! record's parent needs no draw.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::json::{boolean, js, meta, money, push_u64};
use super::words::{CHART, EXPENSE_NOTES, pick};
use super::{Entry, Generator, STREAM_CONTENT, id_of, index_of};
use crate::schema::{Field, Kind};

/// An account, as far as queries and references need it.
pub(super) struct AccountDesc {
    pub(super) name: String,
    pub(super) parent: Option<(u32, &'static str)>,
    pub(super) ty: &'static str,
    pub(super) sub_type: &'static str,
    pub(super) classification: &'static str,
}

impl AccountDesc {
    pub(super) fn fqn(&self) -> String {
        match self.parent {
            Some((_, p)) => format!("{p}:{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl Generator {
    /// The account with this id (generated or not: ids outside the pattern take the chart's
    /// first entry).
    pub(super) fn account(&self, id: u32) -> AccountDesc {
        let k = index_of(id).unwrap_or(0);
        let (name, ty, sub_type, classification) = CHART[k % CHART.len()];
        if k < CHART.len() {
            AccountDesc {
                name: name.to_string(),
                parent: None,
                ty,
                sub_type,
                classification,
            }
        } else {
            AccountDesc {
                name: format!("{name} {id}"),
                parent: Some((id_of(k % CHART.len()), name)),
                ty,
                sub_type,
                classification,
            }
        }
    }

    /// A reference to an account of one of `types` (AccountType; empty = any): `(id, fully
    /// qualified name)`.
    /// Without generated accounts of that type, the chart's first such entry is named anyway
    /// (as a company whose chart was not exported).
    pub(super) fn account_ref(&self, r: &mut ChaCha8Rng, types: &[&str]) -> (u32, String) {
        let n = self.cfg.accounts;
        let fits = |k: usize| types.is_empty() || types.contains(&CHART[k % CHART.len()].1);
        let candidates = (0..n.min(CHART.len() * 3)).filter(|k| fits(*k)).count();
        if candidates == 0 {
            let k = (0..CHART.len()).find(|k| fits(*k)).unwrap_or(0);
            return (id_of(k), CHART[k].0.to_string());
        }
        let pick = r.random_range(0..candidates);
        let k = (0..n.min(CHART.len() * 3))
            .filter(|k| fits(*k))
            .nth(pick)
            .unwrap_or(0);
        let id = id_of(k);
        (id, self.account(id).fqn())
    }

    /// A reference to the chart account of this name: `(id, name)`.
    pub(super) fn chart_account(&self, name: &str) -> (u32, String) {
        let k = CHART.iter().position(|c| c.0 == name).unwrap_or(0);
        (id_of(k), CHART[k].0.to_string())
    }

    /// A text field of an account.
    pub(super) fn account_text(&self, e: &Entry, field: Field) -> String {
        let a = self.account(e.id);
        let deleted = |s: String| {
            if e.active() {
                s
            } else {
                format!("{s} (deleted)")
            }
        };
        match field {
            Field::Name => deleted(a.name.clone()),
            Field::FullyQualifiedName => deleted(a.fqn()),
            Field::AccountType => a.ty.to_string(),
            Field::Classification => a.classification.to_string(),
            _ => String::new(),
        }
    }

    pub(super) fn render_account(&self, e: &Entry, out: &mut String) {
        let a = self.account(e.id);
        let mut r = self.rng(Kind::Account, e.id, STREAM_CONTENT);
        let suffix = if e.active() { "" } else { " (deleted)" };
        out.push_str("{\"Name\":");
        js(out, &format!("{}{suffix}", a.name));
        out.push_str(",\"SubAccount\":");
        boolean(out, a.parent.is_some());
        if let Some((pid, _)) = a.parent {
            out.push_str(",\"ParentRef\":{\"value\":\"");
            push_u64(out, u64::from(pid));
            out.push_str("\"}");
        }
        out.push_str(",\"FullyQualifiedName\":");
        js(out, &format!("{}{suffix}", a.fqn()));
        out.push_str(",\"Active\":");
        boolean(out, e.active());
        out.push_str(",\"Classification\":");
        js(out, a.classification);
        out.push_str(",\"AccountType\":");
        js(out, a.ty);
        out.push_str(",\"AccountSubType\":");
        js(out, a.sub_type);
        if r.random_bool(0.4) {
            out.push_str(",\"AcctNum\":\"");
            push_u64(out, 1000 + u64::from(e.id) * 10);
            out.push('"');
        }
        let note = pick(&mut r, EXPENSE_NOTES);
        if !note.is_empty() && r.random_bool(0.3) {
            out.push_str(",\"Description\":");
            js(out, note);
        }
        // Balance-sheet accounts carry a balance; income and expense accounts show 0.00.
        let balance = if matches!(a.classification, "Asset" | "Liability" | "Equity") {
            r.random_range(-500_000..5_000_000)
        } else {
            0
        };
        out.push_str(",\"CurrentBalance\":");
        money(out, balance);
        out.push_str(",\"CurrentBalanceWithSubAccounts\":");
        money(out, balance);
        out.push_str(",\"CurrencyRef\":{\"value\":\"USD\",\"name\":\"United States Dollar\"},\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push('}');
    }
}
