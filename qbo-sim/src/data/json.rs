//! JSON writing helpers: exact text, never through `f64`.

use super::Entry;
use super::names::Addr;
use crate::tz;

pub(super) fn meta(out: &mut String, e: &Entry) {
    out.push_str(",\"MetaData\":{\"CreateTime\":\"");
    tz::write_pacific_secs(out, e.create_time());
    out.push_str("\",\"LastUpdatedTime\":\"");
    tz::write_pacific_secs(out, e.updated_time());
    out.push_str("\"}");
}

pub(super) fn addr(out: &mut String, a: &Addr, id: u32) {
    out.push_str("{\"Id\":\"");
    push_u64(out, u64::from(id));
    out.push_str("\",\"Line1\":");
    js(out, &a.line1);
    out.push_str(",\"City\":");
    js(out, a.city.0);
    out.push_str(",\"CountrySubDivisionCode\":\"");
    out.push_str(a.city.1);
    out.push_str("\",\"PostalCode\":\"");
    out.push_str(a.city.2);
    out.push_str("\",\"Lat\":\"");
    out.push_str(a.city.3);
    out.push_str("\",\"Long\":\"");
    out.push_str(a.city.4);
    out.push_str("\"}");
}

pub(super) fn boolean(out: &mut String, b: bool) {
    out.push_str(if b { "true" } else { "false" });
}

pub(crate) fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(char::from(*b));
    }
}

pub(super) fn hex(out: &mut String, v: u64) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(H[((v >> (shift * 4)) & 0xF) as usize]));
    }
}

/// A decimal number `v / 10^scale`, trailing zeros trimmed (quantities, percentages; money
/// goes through [`money`]): exact text, never via f64.
pub(crate) fn dec(out: &mut String, v: i64, scale: u32) {
    if v < 0 {
        out.push('-');
    }
    let a = v.unsigned_abs();
    let p = 10u64.pow(scale);
    push_u64(out, a / p);
    let mut frac = a % p;
    let mut digits = scale;
    while digits > 0 && frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    if digits > 0 {
        out.push('.');
        let s = frac.to_string();
        for _ in s.len()..digits as usize {
            out.push('0');
        }
        out.push_str(&s);
    }
}

/// An amount of money in cents as QBO writes it: always two decimals (`639.00`, `337.50`,
/// `-2.50`), exact text, never via f64.
pub(crate) fn money(out: &mut String, cents: i64) {
    if cents < 0 {
        out.push('-');
    }
    let a = cents.unsigned_abs();
    push_u64(out, a / 100);
    out.push('.');
    let frac = a % 100;
    if frac < 10 {
        out.push('0');
    }
    push_u64(out, frac);
}

/// A JSON string literal.
pub(crate) fn js(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xF)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decimals_are_exact_text() {
        let mut s = String::new();
        dec(&mut s, 36207, 2);
        s.push(' ');
        dec(&mut s, 27500, 2);
        s.push(' ');
        dec(&mut s, 12345, 3);
        s.push(' ');
        dec(&mut s, 5, 2);
        s.push(' ');
        dec(&mut s, -250, 2);
        s.push(' ');
        dec(&mut s, 0, 2);
        assert_eq!(s, "362.07 275 12.345 0.05 -2.5 0");
    }

    #[test]
    fn money_keeps_its_trailing_zeros() {
        let mut s = String::new();
        for cents in [63900, 33750, 36207, 5, 0, -250, -1, 10_000_000_000] {
            money(&mut s, cents);
            s.push(' ');
        }
        assert_eq!(
            s,
            "639.00 337.50 362.07 0.05 0.00 -2.50 -0.01 100000000.00 "
        );
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        js(&mut s, "a\"b\\c\nd\u{1}é🍕");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é🍕""#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é🍕");
    }
}
