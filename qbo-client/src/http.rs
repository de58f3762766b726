//! Small HTTP helpers.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::timefmt::parse_retry_after;

/// A header as text, if present and printable.
pub(crate) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `intuit_tid` header whatever its spelling: any capitalisation (HTTP names are
/// case-insensitive), or with `-` for `_` as some proxies rewrite it.
pub(crate) fn intuit_tid_of(headers: &HeaderMap) -> Option<String> {
    header_str(headers, "intuit_tid").or_else(|| {
        headers
            .iter()
            .find(|(name, _)| {
                let n = name.as_str();
                n.len() == "intuit_tid".len()
                    && n.bytes()
                        .zip("intuit_tid".bytes())
                        .all(|(a, b)| a.eq_ignore_ascii_case(&b) || (a == b'-' && b == b'_'))
            })
            .and_then(|(_, v)| v.to_str().ok())
            .map(str::to_owned)
    })
}

/// `Retry-After` (seconds or HTTP date), if present and valid.
pub(crate) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// The first `max` characters of a body, for error messages.
pub(crate) fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    let mut out: String = trimmed.chars().take(max).collect();
    if trimmed.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderName, HeaderValue};

    use super::*;

    #[test]
    fn intuit_tid_is_read_whatever_its_spelling() {
        for name in [
            "intuit_tid",
            "Intuit_Tid",
            "INTUIT_TID",
            "intuit-tid",
            "Intuit-TID",
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("1-abc"),
            );
            assert_eq!(intuit_tid_of(&h).as_deref(), Some("1-abc"), "{name}");
        }
        assert_eq!(intuit_tid_of(&HeaderMap::new()), None);
    }
}
