use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderMap;

use super::*;

#[derive(Default)]
struct Slots(Mutex<HashMap<String, Arc<ClusterSlot>>>);

impl ClusterResolver for Slots {
    fn cluster_slot(&self, name: &str) -> Arc<ClusterSlot> {
        self.0
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(ClusterSlot::new(name)))
            .clone()
    }
}

fn table(yaml: &str) -> RouteTable {
    let config: pb::RouteConfiguration = bosun_xds::from_yaml(
        yaml,
        "envoy.config.route.v3.RouteConfiguration",
        crate::support::support(),
    )
    .unwrap();
    RouteTable::compile(config, &Slots::default(), false).unwrap()
}

fn view<'a>(authority: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
    RequestView {
        authority,
        path_and_query: path,
        method: "GET",
        scheme: "http",
        headers,
        random: 0,
    }
}

fn routed(table: &RouteTable, authority: &str, path: &str, headers: &HeaderMap) -> Option<String> {
    table
        .route(&view(authority, path, headers))
        .map(|(vhost, route)| format!("{}/{}", vhost.name, route.name))
}

const DOMAINS: &str = r#"
name: r
virtual_hosts:
- {name: exact, domains: ["api.example.com", "api.example.com:8080"], routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]}
- {name: suffix-long, domains: ["*.b.example.com"], routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]}
- {name: suffix, domains: ["*.example.com"], routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]}
- {name: prefix, domains: ["api.*"], routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]}
- {name: any, domains: ["*"], routes: [{name: r, match: {prefix: "/"}, direct_response: {status: 200}}]}
"#;

#[test]
fn virtual_hosts_are_chosen_as_envoy_chooses() {
    let t = table(DOMAINS);
    let h = HeaderMap::new();
    assert_eq!(routed(&t, "api.example.com", "/", &h).unwrap(), "exact/r");
    assert_eq!(routed(&t, "API.Example.com", "/", &h).unwrap(), "exact/r");
    assert_eq!(
        routed(&t, "api.example.com:8080", "/", &h).unwrap(),
        "exact/r"
    );
    assert_eq!(
        routed(&t, "x.b.example.com", "/", &h).unwrap(),
        "suffix-long/r"
    );
    assert_eq!(routed(&t, "x.example.com", "/", &h).unwrap(), "suffix/r");
    assert_eq!(routed(&t, "api.other.org", "/", &h).unwrap(), "prefix/r");
    assert_eq!(routed(&t, "example.com", "/", &h).unwrap(), "any/r");
    // With a port, the host with port must be listed (Envoy does not strip it by default).
    assert_eq!(routed(&t, "x.example.com:9999", "/", &h).unwrap(), "any/r");
    assert_eq!(routed(&t, "other:80", "/", &h).unwrap(), "any/r");
}

#[test]
fn ignore_port_in_host_matching_drops_any_port_of_the_authority() {
    let hosts = "virtual_hosts: [{name: reviews, domains: [reviews, '10.0.0.7'], routes: [{name: r, match: {prefix: /}, direct_response: {status: 200}}]}]";
    let ignoring = table(&format!(
        "name: '9080'\nignore_port_in_host_matching: true\n{hosts}"
    ));
    let headers = HeaderMap::new();
    for authority in ["reviews", "reviews:9080", "reviews:1234", "10.0.0.7:9080"] {
        assert!(
            routed(&ignoring, authority, "/", &headers).is_some(),
            "{authority} should match with the port ignored"
        );
    }
    let exact = table(&format!("name: '9080'\n{hosts}"));
    assert_eq!(routed(&exact, "reviews:9080", "/", &headers), None);
    assert!(routed(&exact, "reviews", "/", &headers).is_some());
}

#[test]
fn duplicate_domains_are_refused() {
    let config: pb::RouteConfiguration = bosun_xds::from_yaml(
        "virtual_hosts: [{name: a, domains: [x]}, {name: b, domains: [x]}]",
        "envoy.config.route.v3.RouteConfiguration",
        crate::support::support(),
    )
    .unwrap();
    let error = RouteTable::compile(config, &Slots::default(), false).unwrap_err();
    assert!(error.to_string().contains("duplicate domain"), "{error}");
}

const PATHS: &str = r#"
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {name: exact, match: {path: "/exact"}, direct_response: {status: 200}}
  - {name: insensitive, match: {prefix: "/Case", case_sensitive: false}, direct_response: {status: 200}}
  - {name: separated, match: {path_separated_prefix: "/api"}, direct_response: {status: 200}}
  - {name: regex, match: {safe_regex: {regex: "/v[0-9]+/.*"}}, direct_response: {status: 200}}
  - {name: header, match: {prefix: "/h", headers: [{name: end-user, string_match: {exact: jason}}]}, direct_response: {status: 200}}
  - {name: absent, match: {prefix: "/h", headers: [{name: end-user, present_match: false}]}, direct_response: {status: 200}}
  - {name: inverted, match: {prefix: "/h", headers: [{name: end-user, string_match: {exact: bob}, invert_match: true}]}, direct_response: {status: 200}}
  - {name: range, match: {prefix: "/r", headers: [{name: x-n, range_match: {start: 10, end: 20}}]}, direct_response: {status: 200}}
  - {name: query, match: {prefix: "/q", query_parameters: [{name: debug, string_match: {exact: "a b"}}]}, direct_response: {status: 200}}
  - {name: method, match: {prefix: "/m", headers: [{name: ":method", string_match: {exact: POST}}]}, direct_response: {status: 200}}
  - {name: fallback, match: {prefix: "/"}, direct_response: {status: 404}}
"#;

#[test]
fn routes_match_in_order_on_path_headers_and_query() {
    let t = table(PATHS);
    let none = HeaderMap::new();
    let mut jason = HeaderMap::new();
    jason.insert("end-user", "jason".parse().unwrap());
    let mut alice = HeaderMap::new();
    alice.insert("end-user", "alice".parse().unwrap());
    let mut bob = HeaderMap::new();
    bob.insert("end-user", "bob".parse().unwrap());
    let mut fifteen = HeaderMap::new();
    fifteen.insert("x-n", "15".parse().unwrap());
    let r = |path: &str, headers: &HeaderMap| routed(&t, "any", path, headers).unwrap();
    assert_eq!(r("/exact", &none), "v/exact");
    assert_eq!(r("/exact?x=1", &none), "v/exact");
    assert_eq!(r("/exactly", &none), "v/fallback");
    assert_eq!(r("/case/x", &none), "v/insensitive");
    assert_eq!(r("/api", &none), "v/separated");
    assert_eq!(r("/api/x", &none), "v/separated");
    assert_eq!(r("/apix", &none), "v/fallback");
    assert_eq!(r("/v2/thing", &none), "v/regex");
    assert_eq!(r("/vx/thing", &none), "v/fallback");
    assert_eq!(r("/h", &jason), "v/header");
    assert_eq!(r("/h", &none), "v/absent");
    // An inverted value matcher does not match a missing header.
    assert_eq!(r("/h", &alice), "v/inverted");
    assert_eq!(r("/h", &bob), "v/fallback");
    assert_eq!(r("/r", &fifteen), "v/range");
    assert_eq!(r("/r", &none), "v/fallback");
    assert_eq!(r("/q?debug=a%20b", &none), "v/query");
    assert_eq!(r("/q?debug=ab", &none), "v/fallback");
    let post = RequestView {
        method: "POST",
        ..view("any", "/m", &none)
    };
    assert_eq!(t.route(&post).unwrap().1.name, "method");
    assert_eq!(r("/m", &none), "v/fallback");
}

#[test]
fn unknown_hosts_have_no_route() {
    let t = table(
        "virtual_hosts: [{name: v, domains: [a], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]",
    );
    assert!(t.route(&view("b", "/", &HeaderMap::new())).is_none());
}

fn forward<'a>(t: &'a RouteTable, path: &str) -> (&'a Route, &'a Forward) {
    let headers = Box::leak(Box::new(HeaderMap::new()));
    let (_, route) = t.route(&view("x", path, headers)).unwrap();
    match &route.action {
        Action::Forward(f) => (route, f),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rewrites_replace_the_prefix_or_apply_the_regex() {
    let t = table(
        r#"
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {match: {prefix: "/receiveapi/"}, route: {cluster: c, prefix_rewrite: "/"}}
  - {match: {path: "/"}, route: {cluster: c, prefix_rewrite: "/productpage"}}
  - {match: {prefix: "/re"}, route: {cluster: c, regex_rewrite: {pattern: {regex: "^/re/(\\w+)/(\\w+)$"}, substitution: "/\\2/\\1"}}}
"#,
    );
    let (route, f) = forward(&t, "/receiveapi/orders?id=1");
    assert_eq!(
        rewrite_path(f, route, "/receiveapi/orders?id=1").unwrap(),
        "/orders?id=1"
    );
    let (route, f) = forward(&t, "/");
    assert_eq!(rewrite_path(f, route, "/").unwrap(), "/productpage");
    let (route, f) = forward(&t, "/re/a/b");
    assert_eq!(rewrite_path(f, route, "/re/a/b").unwrap(), "/b/a");
    assert_eq!(f.timeout, Some(Duration::from_secs(15)));
}

#[test]
fn redirects_build_envoys_location() {
    let t = table(
        r#"
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {match: {prefix: "/old"}, redirect: {host_redirect: x.example, path_redirect: "/new?type=blog"}}
  - {match: {prefix: "/secure"}, redirect: {https_redirect: true}}
  - {match: {prefix: "/moved"}, redirect: {prefix_rewrite: "/here", response_code: FOUND, port_redirect: 8443}}
  - {match: {prefix: "/strip"}, redirect: {path_redirect: "/s", strip_query: true}}
"#,
    );
    let headers = HeaderMap::new();
    let location = |authority: &str, path: &str| {
        let request = view(authority, path, &headers);
        let (_, route) = t.route(&request).unwrap();
        match &route.action {
            Action::Redirect(r) => (r.status.as_u16(), r.location(&request, route)),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        location("bookinfo:8080", "/old/x?a=1"),
        (301, "http://x.example/new?type=blog".into())
    );
    assert_eq!(
        location("bookinfo:8080", "/secure/x?a=1"),
        (301, "https://bookinfo:8080/secure/x?a=1".into())
    );
    assert_eq!(
        location("bookinfo:80", "/secure/x"),
        (301, "https://bookinfo/secure/x".into())
    );
    assert_eq!(
        location("bookinfo", "/moved/x"),
        (302, "http://bookinfo:8443/here/x".into())
    );
    assert_eq!(
        location("bookinfo", "/strip?a=1"),
        (301, "http://bookinfo/s".into())
    );
}

#[test]
fn inline_route_configurations_validate_their_clusters() {
    let config: pb::RouteConfiguration = bosun_xds::from_yaml(
        "virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: missing}}]}]",
        "envoy.config.route.v3.RouteConfiguration",
        crate::support::support(),
    )
    .unwrap();
    let error = RouteTable::compile(config.clone(), &Slots::default(), true).unwrap_err();
    assert_eq!(error.to_string(), "route: unknown cluster 'missing'");
    // RDS does not validate by default.
    assert!(RouteTable::compile(config, &Slots::default(), false).is_ok());
}

#[test]
fn weighted_clusters_need_a_positive_total() {
    let config: pb::RouteConfiguration = bosun_xds::from_yaml(
        "virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {weighted_clusters: {clusters: [{name: a, weight: 0}]}}}]}]",
        "envoy.config.route.v3.RouteConfiguration",
        crate::support::support(),
    )
    .unwrap();
    assert!(RouteTable::compile(config, &Slots::default(), false).is_err());
}
