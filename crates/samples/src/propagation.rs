//! The request headers Bookinfo's services copy from an incoming request to their outbound
//! calls, so the mesh can join the spans of one request into one trace and route by user.

use http::HeaderMap;

/// Headers copied verbatim, the union of what productpage and reviews forward in Istio's
/// Bookinfo (plus `b3`, the single-header form of B3).
const PROPAGATED: &[&str] = &[
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-ot-span-context",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "sw8",
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
];

/// Datadog uses a family of headers (`x-datadog-trace-id`, `-parent-id`,
/// `-sampling-priority`, `-origin`, `-tags`); all of them travel together.
const PROPAGATED_PREFIX: &str = "x-datadog-";

/// The headers of `incoming` to send on every outbound call made while serving it.
pub(crate) fn forward_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut forwarded = HeaderMap::new();
    for (name, value) in incoming {
        let name_str = name.as_str();
        if PROPAGATED.contains(&name_str) || name_str.starts_with(PROPAGATED_PREFIX) {
            forwarded.append(name.clone(), value.clone());
        }
    }
    forwarded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tracing_and_session_headers_are_forwarded() {
        let mut incoming = HeaderMap::new();
        incoming.insert("x-request-id", "r1".parse().unwrap());
        incoming.insert("x-datadog-trace-id", "7".parse().unwrap());
        incoming.append("cookie", "a=1".parse().unwrap());
        incoming.append("cookie", "b=2".parse().unwrap());
        incoming.insert("x-secret", "no".parse().unwrap());
        incoming.insert("content-length", "12".parse().unwrap());
        let forwarded = forward_headers(&incoming);
        assert_eq!(forwarded["x-request-id"], "r1");
        assert_eq!(forwarded["x-datadog-trace-id"], "7");
        assert_eq!(forwarded.get_all("cookie").iter().count(), 2);
        assert!(!forwarded.contains_key("x-secret"));
        assert!(!forwarded.contains_key("content-length"));
    }
}
