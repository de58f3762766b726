//! The exact bytes on the wire, checked against a raw capture server.

use std::sync::{Arc, Mutex};

use qbo_client::{
    ConfigError, Credentials, Environment, Op, QboClient, QboConfig, QboError, Query, RateLimit,
    Url,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Captured {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Reply = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Answers the token endpoint with a fixed grant and every other request with an empty page.
async fn capture_server() -> (String, Arc<Mutex<Vec<Captured>>>) {
    capture_server_with(Arc::new(|_| {
        r#"{"QueryResponse":{},"time":"2015-07-29T09:29:56.229-07:00"}"#.to_owned()
    }))
    .await
}

/// Like [`capture_server`], with API answers from `reply` (given the request target).
async fn capture_server_with(reply: Reply) -> (String, Arc<Mutex<Vec<Captured>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let log = log2.clone();
            let reply_for = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap().split(' ');
                let method = first.next().unwrap().to_owned();
                let target = first.next().unwrap().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    body.extend_from_slice(&chunk[..n]);
                }
                let reply = if target.contains("/oauth2/") {
                    r#"{"access_token":"at-wire-1","refresh_token":"rt-wire-2","token_type":"bearer","expires_in":3600,"x_refresh_token_expires_in":8726400}"#.to_owned()
                } else {
                    reply_for(&target)
                };
                log.lock().unwrap().push(Captured {
                    method,
                    target,
                    headers,
                    body: String::from_utf8(body).unwrap(),
                });
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nintuit_tid: tid-wire\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                sock.write_all(resp.as_bytes()).await.unwrap();
            });
        }
    });
    (url, log)
}

fn decode_component(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn query_params(target: &str) -> Vec<(String, String)> {
    let (_, q) = target.split_once('?').unwrap();
    q.split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn cfg(base: &str) -> QboConfig {
    QboConfig::new(
        Environment::Production,
        "9130355555",
        Credentials::new("client-w", "secret-w", "rt-wire-1"),
    )
    .with_base_url(base)
    .unwrap()
    .with_token_url(&format!("{base}/oauth2/v1/tokens/bearer"))
    .unwrap()
}

#[tokio::test]
async fn requests_carry_the_documented_headers_and_parameters() {
    let (url, log) = capture_server().await;
    let client = QboClient::builder(cfg(&url))
        .rate_limit(RateLimit::unlimited())
        .build()
        .unwrap();
    let q = Query::select("Customer")
        .filter("DisplayName", Op::Like, "O'Hara & Sons + 100%")
        .include_inactive()
        .build()
        .unwrap();
    let page = client.query_page(&q).await.unwrap();
    assert!(page.is_empty());
    assert_eq!(page.intuit_tid.as_deref(), Some("tid-wire"));

    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2);
    let token = &log[0];
    assert_eq!(token.method, "POST");
    assert_eq!(token.target, "/oauth2/v1/tokens/bearer");
    assert_eq!(
        token.header("authorization"),
        Some("Basic Y2xpZW50LXc6c2VjcmV0LXc=")
    );
    assert_eq!(
        token.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(token.header("accept"), Some("application/json"));
    assert_eq!(
        token.header("x-include-refresh-token-hard-expires-in"),
        Some("true")
    );
    assert_eq!(
        token.body,
        "grant_type=refresh_token&refresh_token=rt-wire-1"
    );

    let query = &log[1];
    assert_eq!(query.method, "GET");
    assert!(
        query.target.starts_with("/v3/company/9130355555/query?"),
        "{}",
        query.target
    );
    let params = query_params(&query.target);
    assert_eq!(
        params,
        vec![
            ("query".to_owned(), q.render()),
            ("minorversion".to_owned(), "75".to_owned())
        ]
    );
    assert_eq!(query.header("accept"), Some("application/json"));
    assert_eq!(query.header("authorization"), Some("Bearer at-wire-1"));
    assert!(
        query
            .header("user-agent")
            .unwrap()
            .starts_with("qb-backfill-qbo-client/")
    );
}

#[tokio::test]
async fn path_prefix_minor_version_and_user_agent_are_configurable() {
    let (url, log) = capture_server().await;
    let mut c = cfg(&format!("{url}/qbo-proxy/"));
    c.token_url = Some(Url::parse(&format!("{url}/oauth2/v1/tokens/bearer")).unwrap());
    let client = QboClient::builder(c)
        .rate_limit(RateLimit::unlimited())
        .minor_version(80)
        .user_agent("my-service/2.0")
        .build()
        .unwrap();
    assert_eq!(
        client.query_url().path(),
        "/qbo-proxy/v3/company/9130355555/query"
    );
    assert_eq!(
        client
            .count(&Query::select("Invoice").build().unwrap())
            .await
            .unwrap(),
        0
    );
    let log = log.lock().unwrap().clone();
    let query = &log[1];
    assert!(
        query
            .target
            .starts_with("/qbo-proxy/v3/company/9130355555/query?")
    );
    let params = query_params(&query.target);
    assert_eq!(params[0].1, "SELECT COUNT(*) FROM Invoice");
    assert_eq!(params[1], ("minorversion".to_owned(), "80".to_owned()));
    assert_eq!(query.header("user-agent"), Some("my-service/2.0"));
}

#[tokio::test]
async fn plain_http_is_refused_for_remote_hosts_and_defaults_are_intuits() {
    let mut c = cfg("http://127.0.0.1:9");
    c.base_url = Some(Url::parse("http://quickbooks.api.intuit.com").unwrap());
    let err = QboClient::builder(c).build().unwrap_err();
    assert!(
        matches!(err, QboError::Config(ConfigError::InsecureUrl { .. })),
        "{err:?}"
    );
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(text.contains("https"), "{text}");

    for (env, base) in [
        (
            Environment::Production,
            "https://quickbooks.api.intuit.com/v3/company/1/query",
        ),
        (
            Environment::Sandbox,
            "https://sandbox-quickbooks.api.intuit.com/v3/company/1/query",
        ),
    ] {
        let c = QboConfig::new(env, "1", Credentials::new("a", "b", "c"));
        assert_eq!(
            c.resolved_token_url().unwrap().as_str(),
            "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
        );
        let client = QboClient::builder(c).build().unwrap();
        assert_eq!(client.query_url().as_str(), base);
        assert_eq!(client.realm_id(), "1");
    }
}

const TWO: &str = r#"[{"Id":"1","MetaData":{"CreateTime":"2023-01-01T00:00:00-08:00","LastUpdatedTime":"2023-01-01T00:00:00-08:00"}},{"Id":"2","MetaData":{"CreateTime":"2023-01-01T00:00:01-08:00","LastUpdatedTime":"2023-01-01T00:00:01-08:00"}}]"#;

/// A server that ignores STARTPOSITION makes paging fail loudly instead of looping forever.
#[tokio::test]
async fn paging_fails_loudly_when_the_position_does_not_advance() {
    // Same page every time, without a startPosition echo.
    let (url, log) = capture_server_with(Arc::new(|_| {
        format!(r#"{{"QueryResponse":{{"Customer":{TWO}}}}}"#)
    }))
    .await;
    let client = QboClient::builder(cfg(&url))
        .rate_limit(RateLimit::unlimited())
        .build()
        .unwrap();
    let q = Query::select("Customer").max_results(2).build().unwrap();
    let items: Vec<_> = futures::StreamExt::collect::<Vec<_>>(client.pages(q.clone())).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap().len(), 2);
    let err = items[1].as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            QboError::PagingStalled {
                start_position: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(log.lock().unwrap().len(), 3, "token + two pages, then stop");

    // Same page with a startPosition echo that contradicts the request: rejected at once.
    let (url, _log) = capture_server_with(Arc::new(|_| {
        format!(r#"{{"QueryResponse":{{"Customer":{TWO},"startPosition":1,"maxResults":2}}}}"#)
    }))
    .await;
    let client = QboClient::builder(cfg(&url))
        .rate_limit(RateLimit::unlimited())
        .retry_policy(qbo_client::RetryPolicy::no_retries())
        .build()
        .unwrap();
    let items: Vec<_> = futures::StreamExt::collect::<Vec<_>>(client.pages(q)).await;
    assert_eq!(items.len(), 2);
    let err = items[1].as_ref().unwrap_err();
    assert!(
        err.to_string()
            .contains("startPosition 1 in the answer, 3 requested"),
        "{err}"
    );
}

/// A 200 in XML without a fault (a proxy page, say) is malformed and retried; XML faults in a
/// 200 are faults.
#[tokio::test]
async fn xml_in_a_200_is_never_taken_for_data() {
    let calls = Arc::new(Mutex::new(0u32));
    let c2 = calls.clone();
    let (url, _log) = capture_server_with(Arc::new(move |_| {
        let mut n = c2.lock().unwrap();
        *n += 1;
        match *n {
            1 => "<html><body>maintenance</body></html>".to_owned(),
            2 => r#"<IntuitResponse><Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded</Message></Error></Fault></IntuitResponse>"#.to_owned(),
            _ => r#"{"QueryResponse":{"totalCount":7}}"#.to_owned(),
        }
    }))
    .await;
    let client = QboClient::builder(cfg(&url))
        .rate_limit(RateLimit::unlimited())
        .retry_policy(qbo_client::RetryPolicy::default().with_backoff(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(5),
        ))
        .build()
        .unwrap();
    assert_eq!(
        client
            .count(&Query::count("Invoice").build().unwrap())
            .await
            .unwrap(),
        7
    );
    assert_eq!(*calls.lock().unwrap(), 3);
}
