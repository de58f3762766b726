//! Items: services, non-inventory and inventory products, categories, sub-items.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::json::{boolean, js, meta, money, push_u64};
use super::words::{NOTES, PRODUCTS, pick};
use super::{Entry, Generator, STREAM_CONTENT, id_of};
use crate::schema::Kind;
use crate::tz;

/// An item, as far as invoices and queries need it.
pub(super) struct ItemDesc {
    pub(super) name: String,
    pub(super) parent: Option<(u32, String)>,
    pub(super) ty: &'static str,
    pub(super) description: String,
    pub(super) unit_price_cents: i64,
    pub(super) purchase_cost_cents: i64,
    pub(super) taxable: bool,
    pub(super) qty_on_hand: i64,
}

impl ItemDesc {
    pub(super) fn fqn(&self) -> String {
        match &self.parent {
            Some((_, p)) => format!("{p}:{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl Generator {
    pub(super) fn item(&self, id: u32) -> ItemDesc {
        let mut r = self.rng(Kind::Item, id, STREAM_CONTENT);
        let roll = r.random_range(0..100);
        let ty = match roll {
            0..40 => "Service",
            40..65 => "NonInventory",
            65..90 => "Inventory",
            _ => "Category",
        };
        let parent = match self.generated(Kind::Item, id) {
            Some(k) if k >= 5 && r.random_bool(0.2) => {
                let pk = r.random_range(0..k);
                let pid = id_of(pk);
                let pid = self.item_parent_id(pid).unwrap_or(pid);
                let parent_ty = self.item_type(pid);
                // Categories nest only under categories.
                if ty == "Category" && parent_ty != "Category" {
                    None
                } else {
                    Some((pid, self.item_name(pid)))
                }
            }
            _ => None,
        };
        let name = self.item_name_from(&mut r, id);
        let note = pick(&mut r, NOTES);
        let description = if r.random_bool(0.15) {
            format!("{name} — {}", note.lines().next().unwrap_or(""))
        } else {
            name.clone()
        };
        // Whole-dollar prices (`275.00`) are common; the rest carry cents. QBO money has two
        // decimals, so no price like 12.345.
        let unit_price_cents = if r.random_bool(0.15) {
            r.random_range(1..20_000) * 100
        } else {
            r.random_range(1..500_000)
        };
        let purchase_cost_cents = unit_price_cents * r.random_range(30..90) / 100;
        let taxable = r.random_bool(0.6);
        let qty_on_hand = r.random_range(0..500);
        ItemDesc {
            name,
            parent,
            ty,
            description,
            unit_price_cents,
            purchase_cost_cents,
            taxable,
            qty_on_hand,
        }
    }

    pub(super) fn item_name_from(&self, r: &mut ChaCha8Rng, id: u32) -> String {
        format!("{} {id}", pick(r, PRODUCTS))
    }

    pub(super) fn item_type(&self, id: u32) -> &'static str {
        let mut r = self.rng(Kind::Item, id, STREAM_CONTENT);
        match r.random_range(0..100) {
            0..40 => "Service",
            40..65 => "NonInventory",
            65..90 => "Inventory",
            _ => "Category",
        }
    }

    pub(super) fn item_parent_id(&self, id: u32) -> Option<u32> {
        let k = self.generated(Kind::Item, id)?;
        if k < 5 {
            return None;
        }
        let mut r = self.rng(Kind::Item, id, STREAM_CONTENT);
        let ty = match r.random_range(0..100) {
            0..90 => "Item",
            _ => "Category",
        };
        if !r.random_bool(0.2) {
            return None;
        }
        let pk = r.random_range(0..k);
        let pid = id_of(pk);
        let pid = self.item_parent_id(pid).unwrap_or(pid);
        if ty == "Category" && self.item_type(pid) != "Category" {
            return None;
        }
        Some(pid)
    }

    pub(super) fn item_name(&self, id: u32) -> String {
        let mut r = self.rng(Kind::Item, id, STREAM_CONTENT);
        let _ = r.random_range(0..100);
        if self.generated(Kind::Item, id).is_some_and(|k| k >= 5) && r.random_bool(0.2) {
            let _ = r.random_range(0..self.generated(Kind::Item, id).unwrap_or(1).max(1));
        }
        self.item_name_from(&mut r, id)
    }

    pub(super) fn render_item(&self, e: &Entry, out: &mut String) {
        let it = self.item(e.id);
        let suffix = if e.active() { "" } else { " (deleted)" };
        out.push_str("{\"Name\":");
        js(out, &format!("{}{suffix}", it.name));
        if it.ty != "Category" {
            out.push_str(",\"Description\":");
            js(out, &it.description);
        }
        out.push_str(",\"Active\":");
        boolean(out, e.active());
        out.push_str(",\"SubItem\":");
        boolean(out, it.parent.is_some());
        if let Some((pid, pname)) = &it.parent {
            out.push_str(",\"ParentRef\":{\"value\":\"");
            push_u64(out, u64::from(*pid));
            out.push_str("\",\"name\":");
            js(out, pname);
            out.push_str("},\"Level\":1");
        }
        out.push_str(",\"FullyQualifiedName\":");
        js(out, &format!("{}{suffix}", it.fqn()));
        if it.ty != "Category" {
            out.push_str(",\"Taxable\":");
            boolean(out, it.taxable);
            out.push_str(",\"UnitPrice\":");
            money(out, it.unit_price_cents);
        }
        out.push_str(",\"Type\":");
        js(out, it.ty);
        match it.ty {
            "Service" | "NonInventory" => {
                out.push_str(",\"IncomeAccountRef\":{\"value\":\"1\",\"name\":\"Services\"},\"PurchaseCost\":");
                money(out, it.purchase_cost_cents);
                out.push_str(",\"TrackQtyOnHand\":false");
            }
            "Inventory" => {
                out.push_str(",\"IncomeAccountRef\":{\"value\":\"79\",\"name\":\"Sales of Product Income\"},\"PurchaseDesc\":");
                js(out, &format!("{} (purchase)", it.name));
                out.push_str(",\"PurchaseCost\":");
                money(out, it.purchase_cost_cents);
                out.push_str(",\"ExpenseAccountRef\":{\"value\":\"80\",\"name\":\"Cost of Goods Sold\"},\"AssetAccountRef\":{\"value\":\"81\",\"name\":\"Inventory Asset\"},\"TrackQtyOnHand\":true,\"QtyOnHand\":");
                push_u64(out, it.qty_on_hand.unsigned_abs());
                out.push_str(",\"InvStartDate\":\"");
                tz::write_date(out, tz::to_pacific(e.create_time()).date());
                out.push('"');
            }
            _ => {}
        }
        out.push_str(",\"domain\":\"QBO\",\"sparse\":false,\"Id\":\"");
        push_u64(out, u64::from(e.id));
        out.push_str("\",\"SyncToken\":\"");
        push_u64(out, u64::from(e.version));
        out.push('"');
        meta(out, e);
        out.push('}');
    }
}
