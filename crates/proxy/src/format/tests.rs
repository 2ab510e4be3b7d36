use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};

use super::*;

fn ctx<'a>(headers: &'a HeaderMap) -> FormatContext<'a> {
    FormatContext {
        start_time: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
        duration: Some(Duration::from_millis(12)),
        request_headers: Some(headers),
        method: Some("GET"),
        path: Some("/productpage?x=1"),
        authority: Some("bookinfo.example.com"),
        protocol: Some("HTTP/1.1"),
        response_code: Some(200),
        response_flags: ResponseFlags::NONE,
        bytes_received: 0,
        bytes_sent: 5,
        upstream_host: Some("127.0.0.1:9080".parse().unwrap()),
        upstream_cluster: Some("outbound|9080||productpage.default.svc.cluster.local"),
        ..Default::default()
    }
}

#[test]
fn the_default_format_reads_like_envoys() {
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", HeaderValue::from_static("abc"));
    headers.insert("user-agent", HeaderValue::from_static("curl/8"));
    let line = Template::parse(DEFAULT_ACCESS_LOG_FORMAT)
        .unwrap()
        .render(&ctx(&headers));
    assert_eq!(
        line,
        "[2023-11-14T22:13:20.123Z] \"GET /productpage?x=1 HTTP/1.1\" 200 - 0 5 12 - \"-\" \"curl/8\" \"abc\" \"bookinfo.example.com\" \"127.0.0.1:9080\"\n"
    );
}

#[test]
fn header_fallbacks_and_truncation() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-envoy-original-path",
        HeaderValue::from_static("/original"),
    );
    let template = Template::parse("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %REQ(:PATH):3% %%").unwrap();
    assert_eq!(template.render(&ctx(&headers)), "/original /pr %");
}

#[test]
fn response_flags_print_in_the_order_they_were_set() {
    // Envoy keeps flags in a list: retries ran out (URX) before the failure was answered (UF).
    let mut flags = ResponseFlags::NONE;
    flags.insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
    flags.insert(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
    flags.insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
    assert_eq!(flags.to_string(), "URX,UF");
    assert!(flags.contains(ResponseFlags::UPSTREAM_CONNECTION_FAILURE));
    let flags = ResponseFlags::UPSTREAM_CONNECTION_FAILURE | ResponseFlags::NO_HEALTHY_UPSTREAM;
    assert_eq!(flags.to_string(), "UF,UH");
    assert_eq!(ResponseFlags::NONE.to_string(), "-");
}

#[test]
fn json_values_keep_numbers() {
    let headers = HeaderMap::new();
    let template = Template::parse("%RESPONSE_CODE%").unwrap();
    assert_eq!(template.render_json(&ctx(&headers)), serde_json::json!(200));
    let template = Template::parse("%REQ(X-MISSING)%").unwrap();
    assert_eq!(
        template.render_json(&ctx(&headers)),
        serde_json::Value::Null
    );
}

#[test]
fn unknown_commands_are_refused() {
    assert_eq!(
        Template::parse("%NOT_A_COMMAND%"),
        Err(FormatError::UnknownCommand("NOT_A_COMMAND".into()))
    );
    assert!(Template::parse("50% off").is_err());
}

#[test]
fn times_format_like_strftime() {
    let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(
        format_time(t, "%Y-%m-%d %H:%M:%S %s"),
        "2000-02-29 00:00:00 951782400"
    );
}
