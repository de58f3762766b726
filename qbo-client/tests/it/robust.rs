//! Robust decoding: whatever QBO (or a proxy, or a broken network) answers, the client returns
//! a value or a typed error and never panics. Property tests drive the public API end to end
//! against a raw server that answers with generated statuses, headers and bodies: the page
//! decoder, the COUNT decoder, the fault parser (JSON in any key case, XML, faults inside 200),
//! `Retry-After` parsing, and the token endpoint's answers. The query builder's literal
//! escaping is checked against the simulator's independent query parser.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use qbo_client::{
    Credentials, Environment, MemoryTokenStore, Op, Order, QboClient, QboConfig, Query, RateLimit,
    RetryPolicy, Value,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// One programmed answer.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Declare the full length but send half the body, then close.
    truncate: bool,
}

impl Reply {
    fn json(body: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            truncate: false,
        }
    }
}

const GRANT: &str = r#"{"access_token":"at-robust","refresh_token":"rt-robust","token_type":"bearer","expires_in":3600,"x_refresh_token_expires_in":8726400}"#;

/// A raw HTTP/1.1 server: the token endpoint answers `token`, everything else `api`.
struct Server {
    base: String,
    api: Arc<Mutex<Reply>>,
    token: Arc<Mutex<Reply>>,
}

static RT: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let api = Arc::new(Mutex::new(Reply::json(r#"{"QueryResponse":{}}"#)));
    let token = Arc::new(Mutex::new(Reply::json(GRANT)));
    let listener = RT.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (a, t) = (api.clone(), token.clone());
    RT.spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let (a, t) = (a.clone(), t.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut have = buf.len() - head_end - 4;
                while have < len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                }
                let reply = if head.contains("/oauth2/") {
                    t.lock().unwrap().clone()
                } else {
                    a.lock().unwrap().clone()
                };
                let mut out = format!("HTTP/1.1 {} X\r\n", reply.status).into_bytes();
                for (k, v) in &reply.headers {
                    out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
                }
                out.extend_from_slice(
                    format!(
                        "Content-Length: {}\r\nConnection: close\r\n\r\n",
                        reply.body.len()
                    )
                    .as_bytes(),
                );
                let body = if reply.truncate {
                    &reply.body[..reply.body.len() / 2]
                } else {
                    &reply.body[..]
                };
                out.extend_from_slice(body);
                let _ = sock.write_all(&out).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Server { base, api, token }
});

/// Serialises the cases (they share the server's programmed answers).
static CASE: Mutex<()> = Mutex::new(());

fn client() -> QboClient {
    let s = &*SERVER;
    let cfg = QboConfig::new(
        Environment::Sandbox,
        "4620816365",
        Credentials::new("client-id", "client-secret-robust", "rt-initial-robust"),
    )
    .with_base_url(&s.base)
    .unwrap()
    .with_token_url(&format!("{}/oauth2/v1/tokens/bearer", s.base))
    .unwrap();
    QboClient::builder(cfg)
        .token_store(Arc::new(MemoryTokenStore::new()))
        .rate_limit(RateLimit::unlimited())
        .retry_policy(RetryPolicy::default().with_max_attempts(1).with_backoff(
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::from_millis(1),
        ))
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn page_query() -> Query {
    Query::select("Invoice")
        .filter(
            "MetaData.CreateTime",
            Op::Ge,
            time::macros::datetime!(2023-01-01 00:00 UTC),
        )
        .order_by("MetaData.CreateTime", Order::Asc)
        .start_position(1)
        .max_results(3)
        .build()
        .unwrap()
}

/// What the cases of a property produced, so that a test can check it reached every path.
#[derive(Debug, Default)]
struct Outcomes {
    pages_with_records: u64,
    empty_pages: u64,
    counts: u64,
    faults: u64,
    other_errors: u64,
}

/// Answers the API with `reply` and runs a page query and a COUNT: both must return (any
/// result), never panic. The error text must be printable (Display never panics either).
fn exercise(reply: Reply, seen: &Mutex<Outcomes>) {
    let _one = CASE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *SERVER.api.lock().unwrap() = reply;
    *SERVER.token.lock().unwrap() = Reply::json(GRANT);
    let c = client();
    RT.block_on(async {
        let page = c.query_page(&page_query()).await;
        let count = c.count(&page_query()).await;
        let mut seen = seen.lock().unwrap();
        match page {
            Ok(p) if p.records.is_empty() => seen.empty_pages += 1,
            Ok(p) => {
                assert!(p.records.len() <= 3);
                for r in &p.records {
                    assert!(r.raw.get().starts_with('{'));
                }
                seen.pages_with_records += 1;
            }
            Err(e) => {
                let _ = (
                    e.to_string(),
                    format!("{e:?}"),
                    e.is_retryable(),
                    e.is_auth(),
                );
                if e.fault().is_some() {
                    seen.faults += 1;
                } else {
                    seen.other_errors += 1;
                }
            }
        }
        match count {
            Ok(_) => seen.counts += 1,
            Err(e) => {
                let _ = (e.to_string(), e.fault().map(ToString::to_string));
            }
        }
    });
}

/// Runs `cases` cases of `strategy` through [`exercise`]; returns what they produced.
fn run_cases(cases: u32, strategy: impl Strategy<Value = Reply>) -> Outcomes {
    let seen = Mutex::new(Outcomes::default());
    // The normal suite runs a fixed, reproducible sample (so that the coverage checks of the
    // callers cannot flake); `ROBUST_CASES=20000` digs deeper with fresh random cases.
    let deep: Option<u32> = std::env::var("ROBUST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    let config = ProptestConfig {
        cases: deep.unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = match deep {
        Some(_) => proptest::test_runner::TestRunner::new(config),
        None => proptest::test_runner::TestRunner::new_with_rng(
            config,
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        ),
    };
    runner
        .run(&strategy, |reply| {
            exercise(reply, &seen);
            Ok(())
        })
        .unwrap();
    seen.into_inner().unwrap()
}

/// Statuses QBO and proxies answer with.
fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => Just(200u16),
        1 => prop::sample::select(vec![201u16, 204, 301, 400, 401, 403, 404, 408, 429, 500, 502, 503, 504, 599]),
        1 => 100u16..=599,
    ]
}

/// Header values, some of them meant for `Retry-After`.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "[0-9]{1,25}",
        Just("Wed, 21 Oct 2015 07:28:00 GMT".to_owned()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_owned()),
        Just("Mon, 01 Jan -0001 00:00:00 GMT".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("18446744073709551616".to_owned()),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["Retry-After", "intuit_tid", "Content-Type", "X-Other"]),
            header_value(),
        ),
        0..4,
    )
    .prop_map(|v| v.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A JSON scalar or small structure, as text.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "-?[0-9]{1,30}(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?",
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        prop::sample::select(vec![
            "\"2023-01-30T16:00:00-08:00\"",
            "\"2023-03-12T03:30:00-0700\"",
            "\"2023-01-01T00:00:00Z\"",
            "\"2023-13-45T99:99:99Z\"",
            "\"9999-12-31T23:59:59+14:00\"",
            "\"0000-01-01T00:00:00-23:59\"",
            "\"2023-01-31\"",
            "\"yesterday\"",
            "\"\"",
        ])
        .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// Object keys: the ones the decoders look for (in any case) and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Id",
            "id",
            "MetaData",
            "Metadata",
            "CreateTime",
            "LastUpdatedTime",
            "TxnDate",
            "QueryResponse",
            "Invoice",
            "invoice",
            "Customer",
            "startPosition",
            "maxResults",
            "totalCount",
            "Fault",
            "fault",
            "Error",
            "error",
            "Message",
            "message",
            "Detail",
            "detail",
            "code",
            "Code",
            "element",
            "type",
            "time",
            "access_token",
            "refresh_token",
            "expires_in",
            "error_description",
        ])
        .prop_map(|k| format!("\"{k}\"")),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
}

/// A timestamp, mostly valid in one of QBO's forms.
fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (2000i32..2100, 1u8..=12, 1u8..=28, 0u8..24, 0u8..60, prop::sample::select(vec!["Z", "-08:00", "-0700", "+05:30", "+14:00"]))
            .prop_map(|(y, mo, d, h, mi, off)| format!("\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:00{off}\"")),
        1 => json_value(),
    ]
}

/// A record that is nearly right: the fields the decoder needs, each possibly broken.
fn record() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            4 => "[0-9]{1,6}".prop_map(|s| format!("\"{s}\"")),
            1 => json_value()
        ],
        timestamp(),
        timestamp(),
        prop::option::of(prop_oneof![Just("\"2023-01-31\"".to_owned()), json_value()]),
        prop::collection::vec((key(), json_value()), 0..3),
    )
        .prop_map(|(id, create, updated, txn, extra)| {
            let mut fields = vec![
                format!("\"Id\":{id}"),
                format!("\"MetaData\":{{\"CreateTime\":{create},\"LastUpdatedTime\":{updated}}}"),
            ];
            if let Some(t) = txn {
                fields.push(format!("\"TxnDate\":{t}"));
            }
            fields.extend(extra.into_iter().map(|(k, v)| format!("{k}:{v}")));
            format!("{{{}}}", fields.join(","))
        })
}

/// Bodies shaped like QBO's answers, with generated parts.
fn qbo_body() -> impl Strategy<Value = String> {
    prop_oneof![
        // Pages.
        3 => (
            prop::sample::select(vec!["Invoice", "invoice", "INVOICE", "Customer", "x"]),
            prop::collection::vec(record(), 0..5),
            prop::option::of(prop_oneof![3 => Just("1".to_owned()), 1 => json_value()]),
            prop::option::of(json_value()),
        )
            .prop_map(|(list, recs, start, total)| {
                let mut parts = vec![format!("\"{list}\":[{}]", recs.join(","))];
                if let Some(s) = start {
                    parts.push(format!("\"startPosition\":{s}"));
                }
                if let Some(t) = total {
                    parts.push(format!("\"totalCount\":{t}"));
                }
                format!("{{\"QueryResponse\":{{{}}},\"time\":\"2015-07-29T09:29:56.229-07:00\"}}", parts.join(","))
            }),
        // JSON faults in both key cases, codes of any type.
        1 => (
            prop::sample::select(vec!["Fault", "fault"]),
            prop::sample::select(vec!["Error", "error"]),
            json_value(),
            json_value(),
            json_value(),
            json_value(),
        )
            .prop_map(|(f, e, msg, detail, code, ty)| format!(
                "{{\"{f}\":{{\"{e}\":[{{\"Message\":{msg},\"Detail\":{detail},\"code\":{code}}}],\"type\":{ty}}},\"time\":1633520295688}}"
            )),
        // XML faults with generated text, attributes and entities.
        1 => (
            "[ -~]{0,30}",
            "[ -~]{0,30}",
            "[ -~]{0,12}",
            prop::sample::select(vec!["", "ns:"]),
        )
            .prop_map(|(msg, detail, code, ns)| format!(
                "<?xml version=\"1.0\"?><{ns}IntuitResponse xmlns:ns=\"x\"><{ns}Fault type=\"SERVICE\"><{ns}Error code=\"{code}\"><{ns}Message>{msg}</{ns}Message><{ns}Detail>{detail}</{ns}Detail></{ns}Error></{ns}Fault></{ns}IntuitResponse>"
            )),
        // XML soup: fault-like tokens, entities and character references in any order.
        1 => prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "<", ">", "</", "/>", "Fault", "Error", "Message", "Detail", "IntuitResponse",
                    " type=\"", " code=\"", " element=\"", "\"", "&amp;", "&lt;", "&#65;",
                    "&#x110000;", "&#0;", "&#xD800;", "&#99999999999;", "&bogus;", "&", ";",
                    "<![CDATA[", "]]>", "<?xml version=\"1.0\"?>", "<!--", "-->", "ns:",
                ])
                .prop_map(str::to_owned),
                "[ -~]{0,8}",
            ],
            0..40,
        )
        .prop_map(|parts| format!("<{}", parts.concat())),
        // COUNT answers.
        1 => prop_oneof![3 => any::<u64>().prop_map(|n| n.to_string()), 1 => json_value()]
            .prop_map(|v| format!("{{\"QueryResponse\":{{\"totalCount\":{v}}}}}")),
        // Anything JSON.
        1 => json_value(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn token_endpoint_answers_never_panic(
        status in status(),
        headers in headers(),
        body in prop_oneof![
            json_value(),
            prop::collection::vec((key(), json_value()), 0..6).prop_map(|v| {
                let f: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", f.join(","))
            }),
            "[ -~]{0,60}",
        ],
    ) {
        let _one = CASE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *SERVER.token.lock().unwrap() = Reply { status, headers, body: body.into_bytes(), truncate: false };
        *SERVER.api.lock().unwrap() = Reply::json(r#"{"QueryResponse":{}}"#);
        let c = client();
        RT.block_on(async {
            if let Err(e) = c.query_page(&page_query()).await {
                let text = e.to_string();
                // Whatever the endpoint said, no token value is ever echoed.
                prop_assert!(!text.contains("rt-initial-robust"));
                prop_assert!(!text.contains("client-secret-robust"));
            }
            Ok(())
        })?;
    }

    #[test]
    fn any_query_input_builds_or_is_refused_without_panicking(
        entity in prop_oneof!["[A-Za-z]{1,12}", any::<String>()],
        field in prop_oneof!["[A-Za-z][A-Za-z.]{0,20}", any::<String>()],
        op in prop::sample::select(vec![Op::Eq, Op::Lt, Op::Gt, Op::Le, Op::Ge, Op::In, Op::Like]),
        text in any::<String>(),
        list in prop::collection::vec(any::<String>(), 0..4),
        n in any::<i64>(),
        start in any::<u32>(),
        max in any::<u32>(),
    ) {
        let values = vec![
            Value::from(text.clone()),
            Value::from(list.clone()),
            Value::Int(n),
            Value::Bool(n % 2 == 0),
        ];
        for v in values {
            let built = Query::select(entity.clone())
                .filter(field.clone(), op, v)
                .start_position(start)
                .max_results(max)
                .build();
            if let Ok(q) = built {
                let rendered = q.render();
                prop_assert!(rendered.starts_with("SELECT * FROM "));
                let _ = (q.with_start_position(start.wrapping_add(1)), q.to_count().render());
            }
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let seen = run_cases(
        200,
        (
            status(),
            headers(),
            prop::collection::vec(any::<u8>(), 0..400),
            any::<bool>(),
        )
            .prop_map(|(status, headers, body, truncate)| Reply {
                status,
                headers,
                body,
                truncate,
            }),
    );
    assert!(seen.other_errors > 0, "{seen:?}");
}

#[test]
fn qbo_shaped_bodies_never_panic() {
    let seen = run_cases(
        400,
        (status(), headers(), qbo_body(), prop::bool::weighted(0.1)).prop_map(
            |(status, headers, body, truncate)| Reply {
                status,
                headers,
                body: body.into_bytes(),
                truncate,
            },
        ),
    );
    eprintln!("qbo-shaped bodies: {seen:?}");
    // The generator reaches every outcome: decoded records, empty pages, counts, QBO faults
    // and other errors (so a decoder that refused everything would fail this test).
    assert!(seen.pages_with_records > 0, "{seen:?}");
    assert!(seen.empty_pages > 0, "{seen:?}");
    assert!(seen.counts > 0, "{seen:?}");
    assert!(seen.faults > 0, "{seen:?}");
    assert!(seen.other_errors > 0, "{seen:?}");
}

/// Every generated customer name (unicode, quotes, backslashes, newlines) used as a literal
/// finds exactly its record at the simulator, whose query parser is independent of ours.
#[tokio::test]
async fn escaped_literals_are_read_back_by_an_independent_parser() {
    let sim = crate::common::sim_builder()
        .seed(77)
        .customers(150)
        .spawn()
        .await
        .unwrap();
    let c = crate::common::client(&sim);
    let mut tricky = 0;
    for t in sim.truth("Customer") {
        let v: serde_json::Value = serde_json::from_str(&t.json).unwrap();
        let name = v["DisplayName"].as_str().unwrap().to_owned();
        if name.contains(['\'', '\\', '\n', '"']) || !name.is_ascii() {
            tricky += 1;
        }
        let q = Query::select("Customer")
            .filter("DisplayName", Op::Eq, name.clone())
            .include_inactive()
            .build()
            .unwrap();
        let page = c.query_page(&q).await.unwrap();
        let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
        assert!(
            ids.contains(&t.id.as_str()),
            "{name:?} did not find {}",
            t.id
        );
    }
    assert!(tricky > 5, "the data holds too few tricky names ({tricky})");
    sim.shutdown().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any string as a literal is accepted by the simulator's parser (no 400), and LIKE with
    /// `%` around it too.
    #[test]
    fn any_literal_is_valid_query_syntax(s in any::<String>()) {
        let _one = CASE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let sim = &*SIM;
        let c = crate::common::client(sim);
        for op in [Op::Eq, Op::Like] {
            let value = if op == Op::Like { format!("%{s}%") } else { s.clone() };
            let q = Query::select("Customer")
                .filter("DisplayName", op, value)
                .include_inactive()
                .build()
                .unwrap();
            let r = RT.block_on(c.query_page(&q));
            prop_assert!(r.is_ok(), "{:?}: {:?}", q.render(), r.err().map(|e| e.to_string()));
        }
    }
}

static SIM: LazyLock<qbo_sim::SimHandle> = LazyLock::new(|| {
    RT.block_on(crate::common::sim_builder().seed(78).customers(20).spawn())
        .unwrap()
});
