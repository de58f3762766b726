//! QBO-shaped response bodies: pages, faults (JSON, gateway JSON, XML), HTML error pages.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::{Quirks, ScriptedFault, ThrottleBody};
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

/// A fault from Intuit's gateway: lower-case keys, `element` null, `detail` null when absent,
/// `time` in epoch milliseconds, and the null or empty sibling keys of the SDK's response
/// envelope (`warnings`, `intuitObject`, `queryResponse`, …, `requestId`, `status`), as public
/// recordings of the live API show.
pub(crate) fn gateway_json(kind: &str, code: &str, message: &str, detail: Option<&str>) -> String {
    let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut s = String::with_capacity(420);
    s.push_str("{\"warnings\":null,\"intuitObject\":null,\"fault\":{\"error\":[{\"message\":");
    js(&mut s, message);
    s.push_str(",\"detail\":");
    match detail {
        Some(d) => js(&mut s, d),
        None => s.push_str("null"),
    }
    s.push_str(",\"code\":");
    js(&mut s, code);
    s.push_str(",\"element\":null}],\"type\":");
    js(&mut s, kind);
    s.push_str("},\"report\":null,\"queryResponse\":null,\"batchItemResponse\":[],\"attachableResponse\":[],\"syncErrorResponse\":null,\"requestId\":null,\"time\":");
    s.push_str(&ms.to_string());
    s.push_str(",\"status\":null,\"cdcresponse\":[]}");
    s
}

/// The gateway's 401 for a missing, expired or unknown access token (code 3200).
pub(crate) fn gateway_401(code: &str, detail: &str) -> Response {
    let message = format!("message=AuthenticationFailed; errorCode=00{code}; statusCode=401");
    let body = gateway_json("AUTHENTICATION", code, &message, Some(detail));
    let mut r = full(StatusCode::UNAUTHORIZED, JSON, body);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"Intuit\", error=\"invalid_token\""),
    );
    r
}

/// HTTP 500 `InternalServerError` with code 3100 from the gateway (no detail).
pub(crate) fn internal_error_3100() -> Response {
    full(
        StatusCode::INTERNAL_SERVER_ERROR,
        JSON,
        gateway_json(
            "SERVICE",
            "3100",
            "message=InternalServerError; errorCode=003100; statusCode=500",
            None,
        ),
    )
}

/// HTTP 403 with code 3100 from the gateway: the app is not authorised for this request.
pub(crate) fn forbidden_3100() -> Response {
    full(
        StatusCode::FORBIDDEN,
        JSON,
        gateway_json(
            "SERVICE",
            "3100",
            "message=AuthorizationFailed; errorCode=003100; statusCode=403",
            None,
        ),
    )
}

/// The older throttle: HTTP 403 with the XML `ThrottleExceeded` fault, whatever was asked.
pub(crate) fn throttle_403() -> Response {
    full(
        StatusCode::FORBIDDEN,
        XML,
        fault_xml(
            "SERVICE",
            "3001",
            "message=ThrottleExceeded; errorCode=003001; statusCode=403",
            "The request limit was reached.  Try again later",
        ),
    )
}

/// HTTP 401, XML code 120: the company's QuickBooks subscription does not allow API access
/// (lapsed, cancelled, or a plan without it). Refreshing the token cannot fix it.
pub(crate) fn no_subscription_access() -> Response {
    full(
        StatusCode::UNAUTHORIZED,
        XML,
        fault_xml(
            "AuthorizationFault",
            "120",
            "Authorization Failure",
            "AuthorizationFailure: the company's subscription does not include access to this API, statusCode: 401",
        ),
    )
}

/// HTTP 401, XML code 100: the access token was issued for another company than the one in
/// the URL. QBO answers it in XML even when JSON was asked.
pub(crate) fn realm_mismatch() -> Response {
    full(
        StatusCode::UNAUTHORIZED,
        XML,
        fault_xml(
            "AuthenticationFault",
            "100",
            "General Authentication Error",
            "AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401",
        ),
    )
}

/// HTTP 504 as Intuit's gateway sends it: XML code 6002 with a message and no detail.
pub(crate) fn gateway_timeout() -> Response {
    let mut s = String::with_capacity(320);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<IntuitResponse xmlns=\"http://schema.intuit.com/finance/v3\" time=\"");
    s.push_str(&tz::now_pacific_millis());
    s.push_str("\"><Fault type=\"SERVICE\"><Error code=\"6002\"><Message>message=GatewayTimeout; errorCode=006002; statusCode=504</Message></Error></Fault></IntuitResponse>");
    full(StatusCode::GATEWAY_TIMEOUT, XML, s)
}

/// The answer for one of the recorded gateway faults, `None` for other kinds of fault.
pub(crate) fn recorded_fault(f: ScriptedFault) -> Option<Response> {
    Some(match f {
        ScriptedFault::InternalError3100 => internal_error_3100(),
        ScriptedFault::Forbidden3100 => forbidden_3100(),
        ScriptedFault::Throttle403 => throttle_403(),
        ScriptedFault::NoSubscriptionAccess => no_subscription_access(),
        ScriptedFault::RealmMismatch => realm_mismatch(),
        _ => return None,
    })
}

/// HTTP 400 whose fault has neither `element` nor `time`, as many real 400s do.
pub(crate) fn bare_validation_fault(json: bool) -> Response {
    let message = "Error parsing query";
    let detail = "QueryParserError: Encountered \" <EOF> \"\" at line 1, column 0.";
    if json {
        let mut s = String::with_capacity(200);
        s.push_str("{\"Fault\":{\"Error\":[{\"Message\":");
        js(&mut s, message);
        s.push_str(",\"Detail\":");
        js(&mut s, detail);
        s.push_str(",\"code\":\"4000\"}],\"type\":\"ValidationFault\"}}");
        full(StatusCode::BAD_REQUEST, JSON, s)
    } else {
        full(
            StatusCode::BAD_REQUEST,
            XML,
            fault_xml("ValidationFault", "4000", message, detail),
        )
    }
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

/// An error page from a load balancer or proxy (502/503 are HTML, not JSON).
pub(crate) fn html_status(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head><body><center><h1>{code} {reason}</h1></center><hr><center>intuit-gateway</center></body></html>\n",
        code = status.as_u16()
    );
    full(status, HTML, body)
}

/// The response for an injected status code: 500 a `SystemFault`, 400 a validation fault
/// without `element` and `time`, 502/503 a load balancer's HTML page, 504 the gateway's XML
/// code 6002, anything else a generic fault.
pub(crate) fn injected_status(code: u16, json: bool) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match code {
        400 => bare_validation_fault(json),
        500 => system_fault(status, json),
        504 => gateway_timeout(),
        502 | 503 => html_status(status),
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

/// Marks a number kept as its JSON text inside a string (see [`parse_keeping_numbers`]).
const NUMBER_MARK: &str = "\u{0}#";

/// Parses JSON text into a value whose numbers are kept as their exact text (`639.00` stays
/// `639.00`, not the `639.0` of an `f64`), so that XML carries the amounts JSON carries.
pub(crate) fn parse_keeping_numbers(text: &str) -> Option<serde_json::Value> {
    let mut marked = String::with_capacity(text.len() + text.len() / 8);
    let mut chars = text.char_indices().peekable();
    let mut in_string = false;
    while let Some((i, c)) = chars.next() {
        if in_string {
            marked.push(c);
            match c {
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        marked.push(next);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if c == '-' || c.is_ascii_digit() {
            let mut end = i + c.len_utf8();
            while let Some((j, d)) = chars.peek().copied() {
                if d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E' | '+' | '-') {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            marked.push('"');
            marked.push_str("\\u0000#");
            marked.push_str(&text[i..end]);
            marked.push('"');
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        marked.push(c);
    }
    serde_json::from_str(&marked).ok()
}

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
        serde_json::Value::String(s) => match s.strip_prefix(NUMBER_MARK) {
            Some(number) => out.push_str(number),
            None => xml_escape(out, s),
        },
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
    fn numbers_keep_their_text_in_xml() {
        let text = r#"{"Amount":639.00,"Qty":-2.5e1,"Note":"12.50 \"x\" \\","Line":[{"UnitPrice":337.50}],"Id":"7"}"#;
        let v = parse_keeping_numbers(text).unwrap();
        let mut s = String::new();
        json_to_xml(&v, "Invoice", &mut s);
        assert_eq!(
            s,
            "<Invoice><Amount>639.00</Amount><Id>7</Id><Line><UnitPrice>337.50</UnitPrice></Line><Note>12.50 &quot;x&quot; \\</Note><Qty>-2.5e1</Qty></Invoice>"
        );
        assert!(parse_keeping_numbers("{\"a\":").is_none());
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
