//! QBO faults: `{"Fault":{"Error":[...],"type":...}}` in any key case, or the XML
//! `<IntuitResponse><Fault>` form that throttling and some auth failures use.

use std::fmt;

use quick_xml::events::Event;
use serde::Deserialize;

/// A fault reported by QuickBooks, kept as QBO sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fault {
    /// The fault `type` (`ValidationFault`, `SystemFault`, `AuthenticationFault`,
    /// `AuthorizationFault`, `SERVICE`, `AUTHENTICATION`, …).
    pub fault_type: Option<String>,
    /// The individual errors (usually one).
    pub errors: Vec<FaultDetail>,
    /// The `intuit_tid` header of the response, for Intuit support.
    pub intuit_tid: Option<String>,
    /// The HTTP status the fault came with, when known (a fault can come inside HTTP 200).
    pub http_status: Option<u16>,
}

/// One `Error` entry of a [`Fault`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultDetail {
    /// The error code, as QBO sent it (a string such as `"6000"` or `"3200"`).
    pub code: Option<String>,
    /// The short message.
    pub message: Option<String>,
    /// The longer explanation.
    pub detail: Option<String>,
    /// The element the error refers to, if any.
    pub element: Option<String>,
}

impl Fault {
    /// The first error's code, leading zeros removed (`"003200"` → `"3200"`).
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        self.errors.iter().find_map(|e| e.code.as_deref()).map(|c| {
            let t = c.trim().trim_start_matches('0');
            if t.is_empty() { "0" } else { t }
        })
    }

    /// The first error's message.
    #[must_use]
    pub fn message(&self) -> Option<&str> {
        self.errors.iter().find_map(|e| e.message.as_deref())
    }

    /// The first error's detail.
    #[must_use]
    pub fn detail(&self) -> Option<&str> {
        self.errors.iter().find_map(|e| e.detail.as_deref())
    }

    /// The first error's element.
    #[must_use]
    pub fn element(&self) -> Option<&str> {
        self.errors
            .iter()
            .find_map(|e| e.element.as_deref())
            .filter(|e| !e.is_empty())
    }

    /// Whether this is QBO's throttle fault (code 3001 / `ThrottleExceeded`).
    #[must_use]
    pub fn is_throttle(&self) -> bool {
        self.code() == Some("3001")
            || self.errors.iter().any(|e| {
                e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("ThrottleExceeded"))
            })
    }

    /// Whether the fault type says authentication (or the code is an auth code).
    #[must_use]
    pub fn is_authentication(&self) -> bool {
        self.fault_type.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("AuthenticationFault")
                || t.eq_ignore_ascii_case("AUTHENTICATION")
        }) || matches!(self.code(), Some("3200" | "100" | "3100"))
    }

    /// Whether the fault type says authorization.
    #[must_use]
    pub fn is_authorization(&self) -> bool {
        self.fault_type.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("AuthorizationFault") || t.eq_ignore_ascii_case("AUTHORIZATION")
        }) || self.code() == Some("3201")
    }

    /// Whether the fault type says system (server-side) failure.
    #[must_use]
    pub fn is_system(&self) -> bool {
        self.fault_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("SystemFault"))
    }

    /// Whether the fault type says validation.
    #[must_use]
    pub fn is_validation(&self) -> bool {
        self.fault_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("ValidationFault"))
    }

    /// What this fault means and what fixes it (see [`crate::Diagnosis`]), using its HTTP
    /// status when known: an HTTP 500 `InternalServerError` with code 3100 is QBO failing, not
    /// a refused token.
    #[must_use]
    pub fn diagnose(&self) -> crate::Diagnosis {
        crate::diagnosis::of_fault(self, None)
    }

    /// The operator hint shown with the fault: its cause and the fix ([`Fault::diagnose`]),
    /// e.g. throttling, the company's subscription (120), token and company mismatch (100),
    /// wrong servers (130), keys and environment mixed up (3100, 3200; pitfall 8), the app
    /// disconnected (3201), a server-side failure (which reuses those codes with HTTP 500), or
    /// a request QBO rejects whatever the re-run. `None` for a fault with no code and no type.
    #[must_use]
    pub fn hint(&self) -> Option<crate::Diagnosis> {
        (self.code().is_some() || self.fault_type.is_some() || self.http_status.is_some())
            .then(|| self.diagnose())
    }

    /// Parses a fault from a response body (JSON or XML). `None` if the body holds no fault.
    pub(crate) fn parse(body: &[u8]) -> Option<Self> {
        let trimmed = trim_start(body);
        match trimmed.first() {
            Some(b'<') => parse_xml(trimmed),
            Some(b'{') => parse_json(trimmed),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fault_type.as_deref().unwrap_or("fault"))?;
        if let Some(code) = self.code() {
            write!(f, " {code}")?;
        }
        if let Some(m) = self.message() {
            write!(f, ": {m}")?;
        }
        if let Some(d) = self.detail() {
            write!(f, " ({d})")?;
        }
        if let Some(e) = self.element() {
            write!(f, " [element {e}]")?;
        }
        if let Some(h) = self.hint() {
            write!(f, "; {h}")?;
        }
        if let Some(t) = &self.intuit_tid {
            write!(f, " [intuit_tid {t}]")?;
        }
        Ok(())
    }
}

pub(crate) fn trim_start(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    &body[start..]
}

pub(crate) fn looks_like_xml(body: &[u8]) -> bool {
    trim_start(body).first() == Some(&b'<')
}

#[derive(Deserialize)]
pub(crate) struct FaultBody {
    #[serde(rename = "Error", alias = "error", default)]
    errors: Option<Vec<ErrorBody>>,
    #[serde(rename = "type", default)]
    fault_type: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "Message", alias = "message", default)]
    message: Option<String>,
    #[serde(rename = "Detail", alias = "detail", default)]
    detail: Option<String>,
    #[serde(rename = "code", alias = "Code", default)]
    code: Option<serde_json::Value>,
    #[serde(rename = "element", alias = "Element", default)]
    element: Option<String>,
}

impl FaultBody {
    pub(crate) fn into_fault(self) -> Fault {
        Fault {
            fault_type: self.fault_type,
            errors: self
                .errors
                .unwrap_or_default()
                .into_iter()
                .map(|e| FaultDetail {
                    code: e.code.and_then(|c| match c {
                        serde_json::Value::String(s) => Some(s),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    }),
                    message: e.message,
                    detail: e.detail,
                    element: e.element,
                })
                .collect(),
            intuit_tid: None,
            http_status: None,
        }
    }
}

#[derive(Deserialize)]
struct FaultEnvelope {
    #[serde(rename = "Fault", alias = "fault", default)]
    fault: Option<FaultBody>,
}

fn parse_json(body: &[u8]) -> Option<Fault> {
    let env: FaultEnvelope = serde_json::from_slice(body).ok()?;
    env.fault.map(FaultBody::into_fault)
}

/// Which text element we are inside.
#[derive(Clone, Copy, PartialEq, Eq)]
enum XmlField {
    None,
    Message,
    Detail,
}

fn parse_xml(body: &[u8]) -> Option<Fault> {
    let text = std::str::from_utf8(body).ok()?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut fault: Option<Fault> = None;
    let mut current: Option<FaultDetail> = None;
    let mut field = XmlField::None;
    let mut buf = String::new();
    loop {
        let event = reader.read_event().ok()?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name();
                match name.as_ref() {
                    "Fault" => {
                        fault = Some(Fault {
                            fault_type: attr(e, "type"),
                            ..Fault::default()
                        });
                    }
                    "Error" if fault.is_some() => {
                        let detail = FaultDetail {
                            code: attr(e, "code"),
                            element: attr(e, "element"),
                            ..FaultDetail::default()
                        };
                        if empty {
                            if let Some(f) = fault.as_mut() {
                                f.errors.push(detail);
                            }
                        } else {
                            current = Some(detail);
                        }
                    }
                    "Message" if current.is_some() && !empty => {
                        field = XmlField::Message;
                        buf.clear();
                    }
                    "Detail" if current.is_some() && !empty => {
                        field = XmlField::Detail;
                        buf.clear();
                    }
                    _ => {}
                }
            }
            Event::Text(t) if field != XmlField::None => {
                buf.push_str(&t.xml10_content());
            }
            Event::CData(t) if field != XmlField::None => {
                buf.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) if field != XmlField::None => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    buf.push(c);
                } else {
                    let name = r.xml10_content();
                    let entity = format!("&{name};");
                    match quick_xml::escape::unescape(&entity) {
                        Ok(s) => buf.push_str(&s),
                        Err(_) => buf.push_str(&entity),
                    }
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "Message" => {
                    if let Some(c) = current.as_mut() {
                        c.message = Some(buf.trim().to_owned());
                    }
                    field = XmlField::None;
                }
                "Detail" => {
                    if let Some(c) = current.as_mut() {
                        c.detail = Some(buf.trim().to_owned());
                    }
                    field = XmlField::None;
                }
                "Error" => {
                    if let (Some(f), Some(c)) = (fault.as_mut(), current.take()) {
                        f.errors.push(c);
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if let (Some(f), Some(c)) = (fault.as_mut(), current.take()) {
        f.errors.push(c);
    }
    fault
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_validation_fault() {
        let body = br#"{"Fault":{"Error":[{"Message":"A business validation error has occurred","Detail":"Business Validation Error: x","code":"6000","element":""}],"type":"ValidationFault"},"time":"2015-07-29T09:29:56.229-07:00"}"#;
        let f = Fault::parse(body).unwrap();
        assert_eq!(f.fault_type.as_deref(), Some("ValidationFault"));
        assert_eq!(f.code(), Some("6000"));
        assert_eq!(
            f.message(),
            Some("A business validation error has occurred")
        );
        assert_eq!(f.detail(), Some("Business Validation Error: x"));
        assert_eq!(f.element(), None);
        assert!(f.is_validation());
        assert!(!f.is_throttle());
    }

    #[test]
    fn json_gateway_fault_lower_case() {
        let body = br#"{"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200; statusCode=401","detail":"Token expired: 1633520295688","code":"3200","element":null}],"type":"AUTHENTICATION"},"time":1633520295688}"#;
        let f = Fault::parse(body).unwrap();
        assert_eq!(f.fault_type.as_deref(), Some("AUTHENTICATION"));
        assert_eq!(f.code(), Some("3200"));
        assert_eq!(f.element(), None);
        assert!(f.is_authentication());
        let text = f.to_string();
        assert!(text.contains("QBO_ENV"), "{text}");
        assert!(text.contains("sandbox"), "{text}");
    }

    #[test]
    fn numeric_code_and_leading_zeros() {
        let f =
            Fault::parse(br#"{"Fault":{"Error":[{"code":3100}],"type":"AuthenticationFault"}}"#)
                .unwrap();
        assert_eq!(f.code(), Some("3100"));
        assert!(f.hint().unwrap().to_string().contains("production"));
        let f = Fault::parse(br#"{"Fault":{"Error":[{"code":"003200"}]}}"#).unwrap();
        assert_eq!(f.code(), Some("3200"));
    }

    #[test]
    fn xml_throttle_fault() {
        let body = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2024-09-01T10:00:00.000-07:00"><Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message><Detail>The request limit was reached.  Try again later</Detail></Error></Fault></IntuitResponse>"#;
        let f = Fault::parse(body).unwrap();
        assert_eq!(f.fault_type.as_deref(), Some("SERVICE"));
        assert_eq!(f.code(), Some("3001"));
        assert_eq!(
            f.message(),
            Some("message=ThrottleExceeded; errorCode=003001; statusCode=429")
        );
        assert_eq!(
            f.detail(),
            Some("The request limit was reached.  Try again later")
        );
        assert!(f.is_throttle());
    }

    #[test]
    fn xml_with_entities_and_prefix() {
        let body = br#"  <ns:IntuitResponse xmlns:ns="x"><ns:Fault type="ValidationFault"><ns:Error code="2010" element="Query"><ns:Message>bad &amp; worse &#65;</ns:Message><ns:Detail><![CDATA[a<b]]></ns:Detail></ns:Error></ns:Fault></ns:IntuitResponse>"#;
        let f = Fault::parse(body).unwrap();
        assert_eq!(f.message(), Some("bad & worse A"));
        assert_eq!(f.detail(), Some("a<b"));
        assert_eq!(f.element(), Some("Query"));
        assert_eq!(f.code(), Some("2010"));
    }

    #[test]
    fn non_faults() {
        assert_eq!(Fault::parse(br#"{"QueryResponse":{}}"#), None);
        assert_eq!(Fault::parse(b"<html>502 Bad Gateway</html>"), None);
        assert_eq!(Fault::parse(b""), None);
        assert_eq!(Fault::parse(b"garbage"), None);
        assert_eq!(Fault::parse(b"{\"Fault\":"), None);
    }
}
