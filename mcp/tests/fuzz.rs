//! Fuzz targets for what MCP and OAuth servers send us: the event-stream
//! parser, OAuth metadata documents and `WWW-Authenticate` challenges.
//! Stable-toolchain property tests (proptest), so they run in `cargo test`;
//! `PROPTEST_CASES=100000 cargo test -p amesh-mcp --test fuzz` runs longer.
//! Properties, beyond "never panics":
//! - the event-stream parser gives the same events however the bytes are
//!   split into chunks, no event it returns exceeds its limit, and an event
//!   or line that keeps growing is refused once past the limit;
//! - a metadata document that parses survives serialize/parse unchanged,
//!   and one whose URLs pass `check_urls` names only https endpoints or
//!   plain http on loopback;
//! - challenges written out per RFC 9110 parse back to what was written.

use amesh_mcp::client::event_stream::{Event, EventParser, EventTooLarge};
use amesh_mcp::oauth::{
    AuthorizationServerMetadata, BearerChallenge, ProtectedResourceMetadata, endpoint_url,
    parse_www_authenticate,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{Value, json};
use url::{Host, Url};

/// Case count: `PROPTEST_CASES` when set (longer local runs), else the
/// CI budget given.
fn config(ci_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci_cases);
    Config {
        cases,
        // `<crate>/proptest-regressions/fuzz.txt`, committed: every failure
        // found is replayed first on every later run.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz.txt"
        )))),
        ..Config::default()
    }
}

// ---------------------------------------------------------------- SSE

/// Pieces event streams are made of, so random streams hit real fields,
/// both line endings (a CR at a chunk's end), comments and UTF-8 that a
/// chunk boundary can cut in half.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            &b"data: "[..],
            b"data:",
            b"event: ",
            b"id: ",
            b"id: 7\0",
            b"retry: 10",
            b": ping",
            b"\n",
            b"\r",
            b"\r\n",
            b"\n\n",
            b"{\"jsonrpc\":\"2.0\"}",
            "é€😀".as_bytes(),
            b"\xff\xfe",
            b":",
            b" ",
        ])
        .prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// What a stream gave before it ended or failed.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Event>,
    failed: Option<EventTooLarge>,
}

/// Feeds `bytes` split at `cuts` (positions taken modulo the length),
/// stopping at the first error as the transports do.
fn feed(limit: usize, bytes: &[u8], cuts: &[usize]) -> Outcome {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    let mut parser = EventParser::with_limit(limit);
    let mut events = Vec::new();
    for pair in at.windows(2) {
        match parser.push(&bytes[pair[0]..pair[1]]) {
            Ok(got) => events.extend(got),
            Err(e) => {
                return Outcome {
                    events,
                    failed: Some(e),
                };
            }
        }
    }
    Outcome {
        events,
        failed: None,
    }
}

fn event_size(e: &Event) -> usize {
    e.data.len() + e.id.as_ref().map_or(0, String::len)
}

proptest! {
    #![proptest_config(config(8000))]

    #[test]
    fn sse_events_do_not_depend_on_chunking(
        bytes in sse_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        limit in prop_oneof![Just(usize::MAX / 2), 8usize..200],
    ) {
        // Byte by byte is the reference: every split point at once.
        let every: Vec<usize> = (0..bytes.len()).collect();
        let reference = feed(limit, &bytes, &every);
        let chunked = feed(limit, &bytes, &cuts);
        let whole = feed(limit, &bytes, &[]);
        prop_assert_eq!(chunked.failed, reference.failed);
        prop_assert_eq!(whole.failed, reference.failed);
        if reference.failed.is_none() {
            prop_assert_eq!(&chunked.events, &reference.events);
            prop_assert_eq!(&whole.events, &reference.events);
        } else {
            // A failing push drops the events of its chunk (the stream
            // is over anyway); what came out before is the reference's.
            prop_assert!(reference.events.starts_with(&chunked.events));
            prop_assert!(reference.events.starts_with(&whole.events));
        }
        for e in &reference.events {
            prop_assert!(event_size(e) + e.event.len() <= limit.max(1) + "message".len(), "{e:?}");
            prop_assert!(!e.event.is_empty());
        }
    }

    #[test]
    fn sse_parser_refuses_to_hold_more_than_its_limit(
        prefix in sse_stream(),
        limit in 8usize..400,
        line in 1usize..20,
        unterminated_line in any::<bool>(),
    ) {
        let mut parser = EventParser::with_limit(limit);
        // Whatever came first, a blank line ends the event in progress.
        let mut bytes = prefix;
        bytes.extend_from_slice(b"\n\n");
        if parser.push(&bytes).is_err() {
            return Ok(());
        }
        // Then an event that never ends: data lines without the blank line,
        // or one line without an end. Held bytes grow with every line, so
        // the parser must give up within `limit` bytes of them (plus the
        // `id` it keeps across events, itself under the limit).
        // `held` counts what the parser keeps of them: data bytes plus the
        // newline joining each further line, or the unfinished line.
        let mut held = 0usize;
        let refused = loop {
            let chunk = if unterminated_line {
                held += line;
                vec![b'x'; line]
            } else {
                held += line + 1;
                let mut l = b"data:".to_vec();
                l.extend(std::iter::repeat_n(b'y', line));
                l.push(b'\n');
                l
            };
            match parser.push(&chunk) {
                Err(e) => break e,
                Ok(events) => prop_assert!(events.is_empty()),
            }
            prop_assert!(held <= limit + 1, "still holding {held} bytes, limit {limit}");
        };
        prop_assert_eq!(refused, EventTooLarge { limit });
    }
}

// ------------------------------------------------------ OAuth metadata

/// URL-ish strings: the schemes and hosts that matter to `check_urls`
/// (loopback look-alikes included), and arbitrary text.
fn url_text() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "https",
        "http",
        "HTTPS",
        "HtTp",
        "javascript",
        "data",
        "ftp",
        "file",
        "",
    ]);
    let host = prop::sample::select(vec![
        "localhost",
        "LOCALHOST",
        "a.localhost",
        "localhost.evil.com",
        "127.0.0.1",
        "127.1",
        "0x7f.1",
        "2130706433",
        "127.0.0.1.nip.io",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "10.0.0.1",
        "auth.example.com",
        "user:pw@localhost",
        "evil.com#@localhost",
        "",
    ]);
    let rest = prop::sample::select(vec![
        "",
        "/",
        "/token",
        ":9100/authorize",
        "/a/../b",
        "?q=1#f",
        "/%2e%2e/",
        ":0",
        ":99999",
    ]);
    prop_oneof![
        3 => (scheme, host, rest).prop_map(|(s, h, r)| format!("{s}://{h}{r}")),
        1 => Just("javascript:alert(1)".to_owned()),
        1 => ".{0,40}",
    ]
}

/// String lists: PKCE methods and such, or URLs (`authorization_servers`).
fn strings() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(
            prop::sample::select(vec!["S256", "plain", "code", "none", "", "é"])
                .prop_map(str::to_owned),
            0..4,
        ),
        prop::collection::vec(url_text(), 0..4),
    ]
    .prop_map(|v| json!(v))
}

/// A metadata document: its required fields as URL-ish text (so most
/// documents parse and reach the URL check), then known fields with the
/// right or a wrong type, and an unknown field now and then.
fn document(
    required: &'static [&'static str],
    fields: &'static [&'static str],
) -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        4 => url_text().prop_map(Value::from),
        2 => strings(),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::Null),
    ];
    let base = prop::collection::vec(url_text(), required.len()..=required.len());
    let extra = prop::collection::vec((prop::sample::select(fields), value), 0..fields.len() + 2);
    let doc = (base, extra).prop_map(move |(base, extra)| {
        let object: serde_json::Map<String, Value> = required
            .iter()
            .map(|k| (*k).to_owned())
            .zip(base.into_iter().map(Value::from))
            .chain(extra.into_iter().map(|(k, v)| (k.to_owned(), v)))
            .collect();
        serde_json::to_vec(&object).expect("json")
    });
    prop_oneof![
        8 => doc,
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

const PROTECTED_RESOURCE_FIELDS: &[&str] = &[
    "resource",
    "authorization_servers",
    "scopes_supported",
    "bearer_methods_supported",
    "resource_name",
    "unknown",
];

const AUTHORIZATION_SERVER_FIELDS: &[&str] = &[
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "registration_endpoint",
    "revocation_endpoint",
    "scopes_supported",
    "code_challenge_methods_supported",
    "authorization_response_iss_parameter_supported",
    "client_id_metadata_document_supported",
    "unknown",
];

/// Independent of amesh's check: https, or http to a loopback host.
fn safe_endpoint(text: &str) -> bool {
    let Ok(url) = Url::parse(text) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(Host::Domain(d)) => {
                let d = d.to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// One Bearer-style challenge as a server writes it.
#[derive(Debug, Clone)]
struct WrittenChallenge {
    scheme: String,
    params: Vec<(String, String, bool)>,
}

fn tchar_token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn written_challenges() -> impl Strategy<Value = Vec<WrittenChallenge>> {
    let param = (
        prop_oneof![
            prop::sample::select(vec![
                "realm",
                "scope",
                "error",
                "error_description",
                "resource_metadata",
                "Resource_Metadata"
            ])
            .prop_map(str::to_owned),
            tchar_token(),
        ],
        prop_oneof![tchar_token(), ".{0,30}"],
        any::<bool>(),
    );
    let challenge = (
        prop_oneof![
            prop::sample::select(vec!["Bearer", "bearer", "Basic", "DPoP"]).prop_map(str::to_owned),
            tchar_token(),
        ],
        prop::collection::vec(param, 0..4),
    )
        .prop_map(|(scheme, params)| WrittenChallenge { scheme, params });
    prop::collection::vec(challenge, 1..4)
}

/// `scheme name=value, name="quoted \" value"`, challenges joined by `, `.
fn render(challenges: &[WrittenChallenge]) -> String {
    challenges
        .iter()
        .map(|c| {
            let params: Vec<String> = c
                .params
                .iter()
                .map(|(name, value, quote)| {
                    let is_token = !value.is_empty()
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if *quote || !is_token {
                        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
                        format!("{name}=\"{escaped}\"")
                    } else {
                        format!("{name}={value}")
                    }
                })
                .collect();
            if params.is_empty() {
                c.scheme.clone()
            } else {
                format!("{} {}", c.scheme, params.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn protected_resource_metadata_parses_to_checked_values(
        body in document(&["resource"], PROTECTED_RESOURCE_FIELDS),
    ) {
        let Ok(doc) = serde_json::from_slice::<ProtectedResourceMetadata>(&body) else {
            return Ok(());
        };
        let again: ProtectedResourceMetadata =
            serde_json::from_slice(&serde_json::to_vec(&doc).expect("serializes")).expect("parses");
        prop_assert_eq!(&again, &doc);
        if doc.check_urls().is_ok() {
            for issuer in &doc.authorization_servers {
                prop_assert!(safe_endpoint(issuer), "{issuer}");
            }
        }
    }

    #[test]
    fn authorization_server_metadata_parses_to_checked_values(
        body in document(
            &["issuer", "authorization_endpoint", "token_endpoint"],
            AUTHORIZATION_SERVER_FIELDS,
        ),
    ) {
        let Ok(doc) = serde_json::from_slice::<AuthorizationServerMetadata>(&body) else {
            return Ok(());
        };
        let again: AuthorizationServerMetadata =
            serde_json::from_slice(&serde_json::to_vec(&doc).expect("serializes")).expect("parses");
        prop_assert_eq!(&again, &doc);
        match doc.check_urls() {
            Ok(()) => {
                prop_assert!(safe_endpoint(&doc.issuer), "{}", doc.issuer);
                for url in [
                    Some(&doc.authorization_endpoint),
                    Some(&doc.token_endpoint),
                    doc.registration_endpoint.as_ref(),
                    doc.revocation_endpoint.as_ref(),
                ]
                .into_iter()
                .flatten()
                {
                    prop_assert!(safe_endpoint(url.as_str()), "{url}");
                }
            }
            Err(e) => {
                // The refusal is a value naming the field, not the URL's secrets.
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn endpoint_check_agrees_with_an_independent_one(text in url_text()) {
        prop_assert_eq!(endpoint_url("token_endpoint", &text).is_ok(), safe_endpoint(&text), "{}", text);
    }

    #[test]
    fn written_challenges_parse_back(challenges in written_challenges()) {
        let header = render(&challenges);
        let parsed = parse_www_authenticate(&header);
        prop_assert_eq!(parsed.len(), challenges.len(), "{}", header);
        for (got, sent) in parsed.iter().zip(&challenges) {
            prop_assert_eq!(&got.scheme, &sent.scheme);
            prop_assert_eq!(got.token68.as_deref(), None);
            let want: Vec<(String, String)> = sent
                .params
                .iter()
                .map(|(n, v, _)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            prop_assert_eq!(&got.params, &want, "{}", header);
        }
        let bearer = challenges.iter().find(|c| c.scheme.eq_ignore_ascii_case("bearer"));
        let got = BearerChallenge::from_header(&header);
        prop_assert_eq!(got.is_some(), bearer.is_some());
        if let (Some(got), Some(sent)) = (got, bearer) {
            let first = |name: &str| {
                sent.params
                    .iter()
                    .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v, _)| v.clone())
            };
            prop_assert_eq!(got.scope, first("scope"));
            prop_assert_eq!(got.resource_metadata, first("resource_metadata"));
        }
    }

    #[test]
    fn arbitrary_challenge_headers_parse_to_well_formed_challenges(header in ".{0,120}") {
        for c in parse_www_authenticate(&header) {
            prop_assert!(!c.scheme.is_empty());
            prop_assert!(c.params.iter().all(|(n, _)| !n.is_empty() && *n == n.to_ascii_lowercase()));
            prop_assert!(c.token68.is_none() || c.params.is_empty());
        }
        let _ = BearerChallenge::from_header(&header);
    }
}

/// The documents of the OAuth tests, as explicit seeds: they parse, pass
/// the URL check and round-trip.
#[test]
fn seed_documents_parse_and_pass() {
    let server: AuthorizationServerMetadata = serde_json::from_value(json!({
        "issuer": "https://auth.example.com",
        "authorization_endpoint": "https://auth.example.com/authorize",
        "token_endpoint": "http://127.0.0.1:9100/token",
        "registration_endpoint": "http://localhost:9100/register",
        "code_challenge_methods_supported": ["S256"],
    }))
    .expect("parses");
    assert!(server.check_urls().is_ok());
    assert!(server.supports_s256());
    let resource: ProtectedResourceMetadata = serde_json::from_value(json!({
        "resource": "https://mcp.example.com/mcp",
        "authorization_servers": ["https://auth.example.com", "javascript:alert(1)"],
    }))
    .expect("parses");
    assert!(resource.check_urls().is_err());
}
