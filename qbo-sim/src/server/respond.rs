//! QBO-shaped response bodies: pages, faults (JSON, gateway JSON, XML), HTML error pages.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::{Quirks, ThrottleBody};
use crate::data::js;
use crate::tz;

pub(crate) const JSON: &str = "application/json;charset=UTF-8";
pub(crate) const XML: &str = "application/xml;charset=UTF-8";
pub(crate) const HTML: &str = "text/html;charset=UTF-8";

/// Body bytes of a response whose body is a stream (for statistics).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeclaredLen(pub(crate) u64);

/// A response with a full body.
pub(crate) fn full(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A `Fault` object (QBO's capitalised form) as JSON text.
pub(crate) fn fault_json(kind: &str, code: &str, message: &str, detail: &str) -> String {
    let mut s = String::with_capacity(256);
    s.push_str("{\"Fault\":{\"Error\":[{\"Message\":");
    js(&mut s, message);
    s.push_str(",\"Detail\":");
    js(&mut s, detail);
    s.push_str(",\"code\":");
    js(&mut s, code);
    s.push_str(",\"element\":\"\"}],\"type\":");
    js(&mut s, kind);
    s.push_str("},\"time\":\"");
    s.push_str(&tz::now_pacific_millis());
    s.push_str("\"}");
    s
}

fn xml_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\r' && c != '\t' => {
                out.push_str(&format!("&#x{:x};", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// A `Fault` inside an `IntuitResponse` XML document.
pub(crate) fn fault_xml(kind: &str, code: &str, message: &str, detail: &str) -> String {
    let mut s = String::with_capacity(400);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<IntuitResponse xmlns=\"http://schema.intuit.com/finance/v3\" time=\"");
    s.push_str(&tz::now_pacific_millis());
    s.push_str("\"><Fault type=\"");
    xml_escape(&mut s, kind);
    s.push_str("\"><Error code=\"");
    xml_escape(&mut s, code);
    s.push_str("\"><Message>");
    xml_escape(&mut s, message);
    s.push_str("</Message><Detail>");
    xml_escape(&mut s, detail);
    s.push_str("</Detail></Error></Fault></IntuitResponse>");
    s
}

/// A fault in JSON or XML depending on what the client accepts.
pub(crate) fn fault(
    status: StatusCode,
    json: bool,
    kind: &str,
    code: &str,
    message: &str,
    detail: &str,
) -> Response {
    if json {
        full(status, JSON, fault_json(kind, code, message, detail))
    } else {
        full(status, XML, fault_xml(kind, code, message, detail))
    }
}

/// The gateway's 401 with lower-case keys and `time` in epoch milliseconds.
pub(crate) fn gateway_401(code: &str, detail: &str) -> Response {
    let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut s = String::with_capacity(300);
    s.push_str("{\"fault\":{\"error\":[{\"message\":\"message=AuthenticationFailed; errorCode=00");
    s.push_str(code);
    s.push_str("; statusCode=401\",\"detail\":");
    js(&mut s, detail);
    s.push_str(",\"code\":");
    js(&mut s, code);
    s.push_str(",\"element\":null}],\"type\":\"AUTHENTICATION\"},\"requestid\":\"");
    s.push_str(&crate::server::new_tid());
    s.push_str("\",\"time\":");
    s.push_str(&ms.to_string());
    s.push('}');
    let mut r = full(StatusCode::UNAUTHORIZED, JSON, s);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"Intuit\", error=\"invalid_token\""),
    );
    r
}

/// A 429 throttle response, shaped per the quirks.
pub(crate) fn throttle(quirks: &Quirks) -> Response {
    let message = "message=ThrottleExceeded; errorCode=003001; statusCode=429";
    let detail = "The request limit was reached.  Try again later";
    let mut r = match quirks.throttle_body {
        ThrottleBody::Xml => full(
            StatusCode::TOO_MANY_REQUESTS,
            XML,
            fault_xml("SERVICE", "3001", message, detail),
        ),
        ThrottleBody::Json => full(
            StatusCode::TOO_MANY_REQUESTS,
            JSON,
            fault_json("SERVICE", "3001", message, detail),
        ),
    };
    if let Some(after) = quirks.retry_after
        && let Ok(v) = HeaderValue::from_str(&after.as_secs().to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The `SystemFault` of a 500 (or of a 200 that carries a fault).
pub(crate) fn system_fault(status: StatusCode, json: bool) -> Response {
    fault(
        status,
        json,
        "SystemFault",
        "10000",
        "An application error has occurred while processing your request",
        "System Failure Error: An unexpected error occurred while accessing or saving your data. Please wait a few minutes and try again. If the problem persists, contact customer support.",
    )
}

/// An error page from a load balancer or proxy (502/503/504 are HTML, not JSON).
pub(crate) fn html_status(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head><body><center><h1>{code} {reason}</h1></center><hr><center>intuit-gateway</center></body></html>\n",
        code = status.as_u16()
    );
    full(status, HTML, body)
}

/// The response for an injected status code.
pub(crate) fn injected_status(code: u16, json: bool) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match code {
        500 => system_fault(status, json),
        502..=504 => html_status(status),
        _ => fault(
            status,
            json,
            "SystemFault",
            "10000",
            "Injected fault",
            &format!("Simulated HTTP {code}"),
        ),
    }
}

/// Sends the headers with the full `Content-Length`, about half the body, then drops the connection.
pub(crate) fn dropped(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let bytes = Bytes::from(body);
    let full_len = bytes.len();
    let half = bytes.slice(0..full_len / 2);
    let stream = futures::stream::iter(vec![Ok::<Bytes, std::io::Error>(half)]).chain(
        futures::stream::once(async {
            // Give the first half a moment to leave before the connection is cut.
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated drop",
            ))
        }),
    );
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&full_len.to_string()) {
        r.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    r.extensions_mut().insert(DeclaredLen(full_len as u64));
    r
}

/// A 200 whose JSON is cut short (the length header matches what is sent).
pub(crate) fn malformed(content_type: &'static str, body: String) -> Response {
    let mut cut = body.len() * 2 / 3;
    while cut > 0 && !body.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut b = body;
    b.truncate(cut.max(1).min(b.len()));
    full(StatusCode::OK, content_type, b)
}

use futures::StreamExt as _;

/// Converts a JSON document to QBO-style XML under an element `name`.
/// Objects of the form `{"value": v, "name": n}` become `<X name="n">v</X>`; `domain` and
/// `sparse` become attributes of the entity element; arrays repeat the element.
pub(crate) fn json_to_xml(v: &serde_json::Value, name: &str, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Array(items) => {
            for item in items {
                json_to_xml(item, name, out);
            }
        }
        Value::Object(map) => {
            let is_ref =
                map.contains_key("value") && map.values().all(|x| !x.is_object() && !x.is_array());
            out.push('<');
            out.push_str(name);
            for attr in ["domain", "sparse", "status"] {
                if let Some(a) = map.get(attr).filter(|a| !a.is_object() && !a.is_array()) {
                    push_attr(out, attr, a);
                }
            }
            if is_ref {
                for (k, a) in map {
                    if k != "value" {
                        push_attr(out, k, a);
                    }
                }
                out.push('>');
                scalar(out, &map["value"]);
            } else {
                out.push('>');
                for (k, child) in map {
                    if matches!(k.as_str(), "domain" | "sparse" | "status")
                        && !child.is_object()
                        && !child.is_array()
                    {
                        continue;
                    }
                    json_to_xml(child, k, out);
                }
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Value::Null => {}
        other => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            scalar(out, other);
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
}

fn push_attr(out: &mut String, k: &str, v: &serde_json::Value) {
    out.push(' ');
    out.push_str(k);
    out.push_str("=\"");
    scalar(out, v);
    out.push('"');
}

fn scalar(out: &mut String, v: &serde_json::Value) {
    match v {
        serde_json::Value::String(s) => xml_escape(out, s),
        serde_json::Value::Null => {}
        other => out.push_str(&other.to_string()),
    }
}

/// Wraps XML content in an `IntuitResponse` document.
pub(crate) fn intuit_xml(inner: &str) -> String {
    let mut s = String::with_capacity(inner.len() + 200);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<IntuitResponse xmlns=\"http://schema.intuit.com/finance/v3\" time=\"");
    s.push_str(&tz::now_pacific_millis());
    s.push_str("\">");
    s.push_str(inner);
    s.push_str("</IntuitResponse>");
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn xml_conversion() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"domain":"QBO","sparse":false,"Id":"7","CustomerRef":{"value":"24","name":"A & B"},"Line":[{"Amount":1.5},{"Amount":2}],"Note":"<x>"}"#,
        )
        .unwrap();
        let mut s = String::new();
        json_to_xml(&v, "Invoice", &mut s);
        assert_eq!(
            s,
            "<Invoice domain=\"QBO\" sparse=\"false\"><CustomerRef name=\"A &amp; B\">24</CustomerRef><Id>7</Id><Line><Amount>1.5</Amount></Line><Line><Amount>2</Amount></Line><Note>&lt;x&gt;</Note></Invoice>"
        );
    }

    #[test]
    fn fault_bodies_parse() {
        let j: serde_json::Value =
            serde_json::from_str(&fault_json("ValidationFault", "4000", "m \"q\"", "d")).unwrap();
        assert_eq!(j["Fault"]["Error"][0]["code"], "4000");
        assert_eq!(j["Fault"]["type"], "ValidationFault");
        let x = fault_xml("SERVICE", "3001", "a<b", "c");
        assert!(
            x.contains("<Fault type=\"SERVICE\"><Error code=\"3001\"><Message>a&lt;b</Message>")
        );
    }
}
