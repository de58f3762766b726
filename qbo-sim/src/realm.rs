//! One simulated company: its tables, query execution, mutations, truth and CDC.

use std::cmp::Ordering;
use std::sync::RwLock;

use time::OffsetDateTime;

use crate::data::{self, ACTIVE, DELETED, Entry, GenConfig, Generator};
use crate::error::SimError;
use crate::query::compile::{Filter, Plan, Test, Val};
use crate::query::parse::Op;
use crate::schema::{self, ENTITIES, EntityDef, Field, FieldType, Kind};
use crate::tz;

/// A record of the dataset, as the simulator serves it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TruthRecord {
    /// `Id`.
    pub id: String,
    /// `MetaData.CreateTime`, in UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub create_time: OffsetDateTime,
    /// `MetaData.LastUpdatedTime`, in UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub last_updated_time: OffsetDateTime,
    /// `Active` for name lists (Customer, Item, Vendor…), `None` for transactions.
    pub active: Option<bool>,
    /// The exact JSON text the simulator serves for this record.
    pub json: String,
}

#[derive(Debug, Default)]
struct Table {
    /// Sorted by (create, id).
    entries: Vec<Entry>,
    next_id: u32,
}

/// What a query produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    Count(u64),
    Rows(Vec<Entry>),
}

/// One simulated company.
#[derive(Debug)]
pub(crate) struct Realm {
    pub(crate) id: String,
    pub(crate) generator: Generator,
    /// Parallel to `schema::ENTITIES`.
    tables: Vec<RwLock<Table>>,
    /// The simulated clock (shared by every realm of a simulator).
    pub(crate) clock: std::sync::Arc<crate::clock::Clock>,
}

fn entity_index(def: &EntityDef) -> usize {
    ENTITIES
        .iter()
        .position(|e| std::ptr::eq(e, def))
        .unwrap_or(0)
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i128),
    Text(String),
}

impl Realm {
    pub(crate) fn new(
        id: String,
        cfg: GenConfig,
        clock: std::sync::Arc<crate::clock::Clock>,
    ) -> Realm {
        let generator = Generator::new(cfg);
        let tables = ENTITIES
            .iter()
            .map(|def| {
                let entries = generator.build(def.kind);
                let next_id = entries.iter().map(|e| e.id).max().map_or(1, |m| m + 1);
                RwLock::new(Table { entries, next_id })
            })
            .collect();
        Realm {
            clock,
            id,
            generator,
            tables,
        }
    }

    fn table(&self, def: &EntityDef) -> &RwLock<Table> {
        &self.tables[entity_index(def)]
    }

    fn read(&self, def: &EntityDef) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table(def)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, def: &EntityDef) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table(def)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ---------- queries ----------

    fn value_matches(&self, kind: Kind, e: &Entry, f: &Filter) -> bool {
        let ty = f.field.ty();
        match &f.test {
            Test::Like(parts) => {
                let text = self.generator.text(kind, e, f.field).to_lowercase();
                like(&text, parts)
            }
            Test::In(vals) => vals
                .iter()
                .any(|v| self.cmp(kind, e, f.field, ty, v) == Some(Ordering::Equal)),
            Test::Cmp(op, v) => match self.cmp(kind, e, f.field, ty, v) {
                None => false,
                Some(ord) => match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Le => ord != Ordering::Greater,
                    Op::Ge => ord != Ordering::Less,
                    Op::In | Op::Like => false,
                },
            },
        }
    }

    /// Compares the record's field with a value: `record.cmp(value)`.
    fn cmp(&self, kind: Kind, e: &Entry, field: Field, ty: FieldType, v: &Val) -> Option<Ordering> {
        match (ty, v) {
            (FieldType::Id, Val::Id(id)) => id.map(|id| u64::from(e.id).cmp(&id)),
            (FieldType::Ref, Val::Id(id)) => {
                id.map(|id| self.generator.reference(kind, e, field).cmp(&id))
            }
            (FieldType::Instant, Val::Instant(n)) => {
                let secs = if field == Field::CreateTime {
                    e.create
                } else {
                    e.updated
                };
                Some((i128::from(secs) * 1_000_000_000).cmp(n))
            }
            (FieldType::Date, Val::Date(d)) => Some(self.generator.date(kind, e, field).cmp(d)),
            (FieldType::Bool, Val::Bool(b)) => Some(self.generator.boolean(kind, e, field).cmp(b)),
            (FieldType::Text, Val::Text(t)) => Some(
                self.generator
                    .text(kind, e, field)
                    .to_lowercase()
                    .as_str()
                    .cmp(t.as_str()),
            ),
            _ => None,
        }
    }

    fn sort_key(&self, kind: Kind, e: &Entry, field: Field) -> Key {
        match field.ty() {
            FieldType::Id => Key::Int(i128::from(e.id)),
            FieldType::Ref => Key::Int(i128::from(self.generator.reference(kind, e, field))),
            FieldType::Instant => Key::Int(i128::from(if field == Field::CreateTime {
                e.create
            } else {
                e.updated
            })),
            FieldType::Date => Key::Int(i128::from(
                self.generator.date(kind, e, field).to_julian_day(),
            )),
            FieldType::Bool => Key::Int(i128::from(self.generator.boolean(kind, e, field))),
            FieldType::Text => Key::Text(self.generator.text(kind, e, field).to_lowercase()),
        }
    }

    fn visible(&self, plan: &Plan, e: &Entry) -> bool {
        !e.deleted()
            && (!plan.active_only || e.active())
            && plan
                .filters
                .iter()
                .all(|f| self.value_matches(plan.entity.kind, e, f))
    }

    /// Runs a plan. Rows come oldest first (create time, then numeric id) unless ordered.
    pub(crate) fn execute(&self, plan: &Plan) -> Outcome {
        let table = self.read(plan.entity);
        let (lo, hi) = create_bounds(&table.entries, &plan.filters);
        let slice = &table.entries[lo..hi];
        let kind = plan.entity.kind;
        let skip = usize::try_from(plan.start_position.saturating_sub(1)).unwrap_or(usize::MAX);
        let take = usize::try_from(plan.max_results).unwrap_or(usize::MAX);
        if plan.count {
            return Outcome::Count(slice.iter().filter(|e| self.visible(plan, e)).count() as u64);
        }
        let natural = plan.order.is_empty() || plan.order == [(Field::CreateTime, false)];
        if natural {
            let rows = slice
                .iter()
                .filter(|e| self.visible(plan, e))
                .skip(skip)
                .take(take)
                .copied()
                .collect();
            return Outcome::Rows(rows);
        }
        let matched: Vec<Entry> = slice
            .iter()
            .filter(|e| self.visible(plan, e))
            .copied()
            .collect();
        drop(table);
        let mut keyed: Vec<(Vec<Key>, Entry)> = matched
            .into_iter()
            .map(|e| {
                (
                    plan.order
                        .iter()
                        .map(|(f, _)| self.sort_key(kind, &e, *f))
                        .collect(),
                    e,
                )
            })
            .collect();
        keyed.sort_by(|(ka, ea), (kb, eb)| {
            for (i, (_, desc)) in plan.order.iter().enumerate() {
                let o = ka[i].cmp(&kb[i]);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            (ea.create, ea.id).cmp(&(eb.create, eb.id))
        });
        Outcome::Rows(
            keyed
                .into_iter()
                .skip(skip)
                .take(take)
                .map(|(_, e)| e)
                .collect(),
        )
    }

    // ---------- truth ----------

    /// Every live record (inactive included, hard-deleted excluded), oldest first.
    pub(crate) fn truth(&self, def: &'static EntityDef) -> Vec<TruthRecord> {
        let entries: Vec<Entry> = self
            .read(def)
            .entries
            .iter()
            .filter(|e| !e.deleted())
            .copied()
            .collect();
        entries.iter().map(|e| self.truth_record(def, e)).collect()
    }

    /// The JSON of the live records of `def` whose `TxnDate` lies in `from..=to` (reports).
    pub(crate) fn rendered_by_txn_date(
        &self,
        def: &'static EntityDef,
        from: time::Date,
        to: time::Date,
    ) -> Vec<String> {
        let (lo, hi) = (from.to_julian_day(), to.to_julian_day());
        let entries: Vec<Entry> = self
            .read(def)
            .entries
            .iter()
            .filter(|e| !e.deleted() && (lo..=hi).contains(&e.txn_day))
            .copied()
            .collect();
        entries
            .iter()
            .map(|e| self.generator.render_string(def.kind, e))
            .collect()
    }

    /// Live records (inactive included, hard-deleted excluded), without rendering them.
    pub(crate) fn live_count(&self, def: &'static EntityDef) -> usize {
        self.read(def)
            .entries
            .iter()
            .filter(|e| !e.deleted())
            .count()
    }

    fn truth_record(&self, def: &EntityDef, e: &Entry) -> TruthRecord {
        TruthRecord {
            id: e.id.to_string(),
            create_time: e.create_time(),
            last_updated_time: e.updated_time(),
            active: def.name_list.then(|| e.active()),
            json: self.generator.render_string(def.kind, e),
        }
    }

    // ---------- mutations ----------

    fn mutable(def: &'static EntityDef) -> Result<(), SimError> {
        match def.kind {
            Kind::EmptyNameList | Kind::EmptyTxn | Kind::CompanyInfo => {
                Err(SimError::Unsupported(def.name.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Adds a record. `create_time` defaults to now; an explicit one also becomes its
    /// `LastUpdatedTime`, so a record can be slipped into a window being paged.
    pub(crate) fn create(
        &self,
        def: &'static EntityDef,
        create_time: Option<OffsetDateTime>,
    ) -> Result<TruthRecord, SimError> {
        Self::mutable(def)?;
        let now = self.clock.unix();
        let create = create_time.map_or(now, OffsetDateTime::unix_timestamp);
        let mut t = self.write(def);
        let id = t.next_id;
        t.next_id += 1;
        let e = self.generator.new_entry(def.kind, id, create, create);
        let pos = t
            .entries
            .partition_point(|x| (x.create, x.id) < (e.create, e.id));
        t.entries.insert(pos, e);
        drop(t);
        Ok(self.truth_record(def, &e))
    }

    fn modify(
        &self,
        def: &'static EntityDef,
        id: &str,
        f: impl FnOnce(&mut Entry),
    ) -> Result<Entry, SimError> {
        Self::mutable(def)?;
        let not_found = || SimError::NotFound {
            entity: def.name.to_string(),
            id: id.to_string(),
        };
        let n: u32 = id.parse().map_err(|_| not_found())?;
        let mut t = self.write(def);
        let e = t
            .entries
            .iter_mut()
            .find(|e| e.id == n && !e.deleted())
            .ok_or_else(not_found)?;
        let now = self.clock.unix();
        e.updated = now.max(e.updated + 1);
        e.version += 1;
        f(e);
        Ok(*e)
    }

    /// Bumps `SyncToken` and `LastUpdatedTime` (now, or one second after the previous value).
    pub(crate) fn update(
        &self,
        def: &'static EntityDef,
        id: &str,
    ) -> Result<TruthRecord, SimError> {
        let e = self.modify(def, id, |_| {})?;
        Ok(self.truth_record(def, &e))
    }

    /// Sets `Active` on a name-list record (a QBO "delete" of a customer or item makes it inactive).
    pub(crate) fn set_active(
        &self,
        def: &'static EntityDef,
        id: &str,
        active: bool,
    ) -> Result<TruthRecord, SimError> {
        if !def.name_list {
            return Err(SimError::Unsupported(def.name.to_string()));
        }
        let e = self.modify(def, id, |e| {
            if active {
                e.flags |= ACTIVE
            } else {
                e.flags &= !ACTIVE
            }
        })?;
        Ok(self.truth_record(def, &e))
    }

    /// Deletes: name lists become inactive; transactions are hard-deleted (gone from
    /// queries, reported by CDC as `"status":"Deleted"`).
    pub(crate) fn delete(&self, def: &'static EntityDef, id: &str) -> Result<(), SimError> {
        if def.name_list {
            self.set_active(def, id, false).map(|_| ())
        } else {
            self.modify(def, id, |e| e.flags |= DELETED).map(|_| ())
        }
    }

    // ---------- rendering ----------

    /// Appends records as a JSON array body (no brackets), comma-separated.
    pub(crate) fn render_rows(&self, def: &EntityDef, rows: &[Entry], out: &mut String) {
        for (i, e) in rows.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            self.generator.render(def.kind, e, out);
        }
    }

    /// Changed records since `since` (Unix seconds), per entity, newest change last,
    /// `cap` objects in all. Deleted transactions are `{"domain":"QBO","status":"Deleted",…}`.
    pub(crate) fn cdc(
        &self,
        defs: &[&'static EntityDef],
        since: i64,
        cap: usize,
    ) -> Vec<(&'static str, String, usize)> {
        let mut left = cap;
        let mut out = Vec::new();
        for def in defs {
            let mut changed: Vec<Entry> = self
                .read(def)
                .entries
                .iter()
                .filter(|e| e.updated >= since)
                .copied()
                .collect();
            changed.sort_by_key(|e| (e.updated, e.id));
            changed.truncate(left);
            left -= changed.len();
            let mut body = String::new();
            for (i, e) in changed.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                if e.deleted() {
                    body.push_str("{\"domain\":\"QBO\",\"status\":\"Deleted\",\"Id\":\"");
                    data::push_u64(&mut body, u64::from(e.id));
                    body.push_str("\",\"MetaData\":{\"LastUpdatedTime\":\"");
                    tz::write_pacific_secs(&mut body, e.updated_time());
                    body.push_str("\"}}");
                } else {
                    self.generator.render(def.kind, e, &mut body);
                }
            }
            out.push((def.name, body, changed.len()));
        }
        out
    }

    /// Looks an entity up by name.
    pub(crate) fn entity(name: &str) -> Result<&'static EntityDef, SimError> {
        schema::entity(name).ok_or_else(|| SimError::UnknownEntity(name.to_string()))
    }
}

/// Narrows the (create, id)-sorted entries using `MetaData.CreateTime` comparisons.
fn create_bounds(entries: &[Entry], filters: &[Filter]) -> (usize, usize) {
    let mut lo = 0usize;
    let mut hi = entries.len();
    let nanos = |e: &Entry| i128::from(e.create) * 1_000_000_000;
    for f in filters {
        if f.field != Field::CreateTime {
            continue;
        }
        if let Test::Cmp(op, Val::Instant(n)) = &f.test {
            let n = *n;
            match op {
                Op::Ge => lo = lo.max(entries.partition_point(|e| nanos(e) < n)),
                Op::Gt => lo = lo.max(entries.partition_point(|e| nanos(e) <= n)),
                Op::Lt => hi = hi.min(entries.partition_point(|e| nanos(e) < n)),
                Op::Le => hi = hi.min(entries.partition_point(|e| nanos(e) <= n)),
                Op::Eq => {
                    lo = lo.max(entries.partition_point(|e| nanos(e) < n));
                    hi = hi.min(entries.partition_point(|e| nanos(e) <= n));
                }
                Op::In | Op::Like => {}
            }
        }
    }
    if lo > hi { (0, 0) } else { (lo, hi) }
}

/// `%`-only LIKE over lower-cased text; `parts` is the pattern split at `%`.
fn like(text: &str, parts: &[String]) -> bool {
    match parts {
        [] => text.is_empty(),
        [only] => text == only,
        [first, middle @ .., last] => {
            if !text.starts_with(first.as_str()) {
                return false;
            }
            let mut rest = &text[first.len()..];
            for m in middle {
                match rest.find(m.as_str()) {
                    Some(i) => rest = &rest[i + m.len()..],
                    None => return false,
                }
            }
            rest.len() >= last.len() && rest.ends_with(last.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::query::compile::{CompileOptions, compile};
    use time::macros::datetime;

    fn realm() -> Realm {
        Realm::new(
            "r1".into(),
            GenConfig {
                seed: 3,
                customers: 120,
                items: 60,
                invoices: 500,
                vendors: 20,
                start: datetime!(2023-01-01 00:00 UTC).unix_timestamp(),
                end: datetime!(2023-03-01 00:00 UTC).unix_timestamp(),
                ..GenConfig::default()
            },
            std::sync::Arc::default(),
        )
    }

    fn rows(r: &Realm, q: &str) -> Vec<Entry> {
        match r.execute(&compile(q, CompileOptions::default()).unwrap()) {
            Outcome::Rows(v) => v,
            Outcome::Count(_) => panic!("count"),
        }
    }

    fn count(r: &Realm, q: &str) -> u64 {
        match r.execute(&compile(q, CompileOptions::default()).unwrap()) {
            Outcome::Count(n) => n,
            Outcome::Rows(_) => panic!("rows"),
        }
    }

    #[test]
    fn like_patterns() {
        let p = |s: &str| s.split('%').map(str::to_string).collect::<Vec<_>>();
        assert!(like("amy's bird", &p("amy%")));
        assert!(like("amy's bird", &p("%bird")));
        assert!(like("amy's bird", &p("%'s%")));
        assert!(like("amy's bird", &p("%")));
        assert!(like("abc", &p("a%b%c")));
        assert!(!like("ab", &p("a%b%c")));
        assert!(!like("aa", &p("a%a%a")));
        assert!(like("amy", &p("amy")));
        assert!(!like("amy2", &p("amy")));
    }

    #[test]
    fn counts_match_rows_and_filters_combine() {
        let r = realm();
        let all = rows(&r, "SELECT * FROM Invoice MAXRESULTS 1000");
        assert_eq!(all.len(), 500);
        assert_eq!(count(&r, "SELECT COUNT(*) FROM Invoice"), 500);
        let jan = "WHERE MetaData.CreateTime >= '2023-01-01T00:00:00Z' AND MetaData.CreateTime < '2023-02-01T00:00:00Z'";
        let n = count(&r, &format!("SELECT COUNT(*) FROM Invoice {jan}"));
        assert_eq!(
            rows(&r, &format!("SELECT * FROM Invoice {jan} MAXRESULTS 1000")).len() as u64,
            n
        );
        assert!(n > 100 && n < 400);
        // Customers: inactive hidden by default.
        let active = count(&r, "SELECT COUNT(*) FROM Customer");
        let everything = count(
            &r,
            "SELECT COUNT(*) FROM Customer WHERE Active IN (true, false)",
        );
        let inactive = count(&r, "SELECT COUNT(*) FROM Customer WHERE Active = false");
        assert_eq!(everything, 120);
        assert_eq!(active + inactive, everything);
        assert!(inactive > 0);
    }

    #[test]
    fn ordering_and_paging() {
        let r = realm();
        let desc = rows(
            &r,
            "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime DESC MAXRESULTS 1000",
        );
        assert!(desc.windows(2).all(|w| w[0].updated >= w[1].updated));
        let by_id = rows(&r, "SELECT * FROM Invoice ORDER BY Id MAXRESULTS 1000");
        assert!(by_id.windows(2).all(|w| w[0].id < w[1].id));
        let p2 = rows(&r, "SELECT * FROM Invoice STARTPOSITION 101 MAXRESULTS 100");
        let all = rows(&r, "SELECT * FROM Invoice MAXRESULTS 1000");
        assert_eq!(p2, all[100..200].to_vec());
        assert!(rows(&r, "SELECT * FROM Invoice STARTPOSITION 501").is_empty());
    }

    #[test]
    fn mutations() {
        let r = realm();
        let inv = Realm::entity("invoice").unwrap();
        let before = count(&r, "SELECT COUNT(*) FROM Invoice");
        let rec = r
            .create(inv, Some(datetime!(2023-01-15 12:00 UTC)))
            .unwrap();
        assert_eq!(count(&r, "SELECT COUNT(*) FROM Invoice"), before + 1);
        let found = rows(
            &r,
            &format!("SELECT * FROM Invoice WHERE Id = '{}'", rec.id),
        );
        assert_eq!(found.len(), 1);
        let up = r.update(inv, &rec.id).unwrap();
        assert!(up.json.contains("\"SyncToken\":\"1\""));
        r.delete(inv, &rec.id).unwrap();
        assert_eq!(count(&r, "SELECT COUNT(*) FROM Invoice"), before);
        assert!(r.update(inv, &rec.id).is_err());
        let cdc = r.cdc(
            &[inv],
            OffsetDateTime::now_utc().unix_timestamp() - 60,
            1000,
        );
        assert!(cdc[0].1.contains("\"status\":\"Deleted\""));
        let cust = Realm::entity("Customer").unwrap();
        let first = r
            .truth(cust)
            .into_iter()
            .find(|t| t.active == Some(true))
            .unwrap();
        r.delete(cust, &first.id).unwrap();
        assert!(
            rows(
                &r,
                &format!("SELECT * FROM Customer WHERE Id = '{}'", first.id)
            )
            .is_empty()
        );
        assert_eq!(
            rows(
                &r,
                &format!(
                    "SELECT * FROM Customer WHERE Id = '{}' AND Active = false",
                    first.id
                )
            )
            .len(),
            1
        );
        assert!(matches!(
            r.create(Realm::entity("Transfer").unwrap(), None),
            Err(SimError::Unsupported(_))
        ));
    }
}
