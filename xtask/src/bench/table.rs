//! The figures of a bench run: printed as each scenario ends, then as one Markdown table
//! (`results.md`) and as JSON (`results.json`).

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::{Value, json};

use super::{Env, Outcome, Scenario};

pub(super) fn print_outcome(s: Scenario, o: &Outcome) {
    println!("{}:", s.name());
    for f in &o.figures {
        println!("  {:<22} {:>14} {}", f.key, fmt_value(f.value), f.unit);
    }
    for t in &o.targets {
        println!(
            "  target: {} — {}",
            t.what,
            if t.met { "met" } else { "MISSED" }
        );
    }
    for n in &o.notes {
        println!("  note: {n}");
    }
    println!("  reproduce: cargo xtask bench {}", s.name());
    for c in &o.commands {
        println!("    {c}");
    }
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(super) fn markdown_table(
    env: &Env,
    machine: &Value,
    results: &[(Scenario, Result<Outcome>)],
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Machine: {} core(s) ({}), {:.1} GiB, PostgreSQL {}, load {} at start / {} at end{}; {}",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_gib"].as_f64().unwrap_or(0.0),
        machine["postgres"].as_str().unwrap_or("?"),
        machine["load_at_start"].as_str().unwrap_or("?"),
        machine["load_at_end"].as_str().unwrap_or("?"),
        if env.opts.quick {
            " — QUICK mode"
        } else {
            ""
        },
        machine["date_utc"].as_str().unwrap_or("")
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "| scenario | target | met |");
    let _ = writeln!(t, "|---|---|---|");
    for (s, r) in results {
        match r {
            Err(e) => {
                let _ = writeln!(t, "| {} | FAILED: {e:#} | |", s.name());
            }
            Ok(o) => {
                for tg in &o.targets {
                    let met = if tg.met { "yes" } else { "**no**" };
                    let _ = writeln!(t, "| {} | {} | {met} |", s.name(), tg.what);
                }
            }
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "| scenario | figure | value |");
    let _ = writeln!(t, "|---|---|---|");
    for (s, r) in results {
        if let Ok(o) = r {
            for (i, f) in o.figures.iter().enumerate() {
                let _ = writeln!(
                    t,
                    "| {} | {} | {} {} |",
                    if i == 0 { s.name() } else { "" },
                    f.key,
                    fmt_value(f.value),
                    f.unit
                );
            }
        }
    }
    let _ = writeln!(t);
    for (s, r) in results {
        if let Ok(o) = r {
            let _ = writeln!(t, "`{}`: `cargo xtask bench {}`", s.name(), s.name());
            for c in &o.commands {
                let _ = writeln!(t, "    {c}");
            }
            for n in &o.notes {
                let _ = writeln!(t, "  - {n}");
            }
        }
    }
    t
}

pub(super) fn results_json(
    env: &Env,
    machine: &Value,
    results: &[(Scenario, Result<Outcome>)],
) -> Value {
    let scenarios: Vec<Value> = results
        .iter()
        .map(|(s, r)| match r {
            Err(e) => json!({ "scenario": s.name(), "error": format!("{e:#}") }),
            Ok(o) => json!({
                "scenario": s.name(),
                "reproduce": format!("cargo xtask bench {}{}", s.name(), if env.opts.quick { " --quick" } else { "" }),
                "figures": o.figures.iter().map(|f| json!({
                    "key": f.key,
                    "value": if f.value.is_finite() { json!(f.value) } else { Value::Null },
                    "unit": f.unit,
                })).collect::<Vec<_>>(),
                "targets": o.targets.iter().map(|t| json!({ "what": t.what, "met": t.met })).collect::<Vec<_>>(),
                "commands": o.commands,
                "notes": o.notes,
            }),
        })
        .collect();
    json!({ "machine": machine, "scenarios": scenarios })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_compactly() {
        assert_eq!(fmt_value(200_000.0), "200000");
        assert_eq!(fmt_value(12.345), "12.3");
        assert_eq!(fmt_value(1.234), "1.23");
        assert_eq!(fmt_value(f64::NAN), "n/a");
    }
}
