//! What bosun proxy implements of Envoy's API. Configuration that sets anything else is refused
//! at load time (bootstrap) or NACKed (xDS), naming the field: a proxy that silently ignores a
//! setting does something other than what its operator asked for.

use std::sync::OnceLock;

use bosun_xds::support::{Fields, Support};

const ALL_ROUTE_HEADER_MUTATIONS: [&str; 4] = [
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
];

/// The support table of bosun proxy.
pub fn support() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(|| Support::new("bosun proxy", MESSAGES, EXTENSIONS))
}

/// Extensions (`typed_config` types) bosun proxy implements.
pub const EXTENSIONS: &[&str] = &[
    HTTP_CONNECTION_MANAGER,
    TCP_PROXY,
    ROUTER,
    TLS_INSPECTOR,
    HTTP_INSPECTOR,
    ORIGINAL_DST,
    UPSTREAM_TLS_CONTEXT,
    DOWNSTREAM_TLS_CONTEXT,
    RAW_BUFFER,
    FILE_ACCESS_LOG,
    STDOUT_ACCESS_LOG,
    STDERR_ACCESS_LOG,
    HTTP_PROTOCOL_OPTIONS,
];

/// `envoy.filters.network.http_connection_manager`.
pub const HTTP_CONNECTION_MANAGER: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/// `envoy.filters.network.tcp_proxy`.
pub const TCP_PROXY: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
/// `envoy.filters.http.router`.
pub const ROUTER: &str = "envoy.extensions.filters.http.router.v3.Router";
/// `envoy.filters.listener.tls_inspector`.
pub const TLS_INSPECTOR: &str = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
/// `envoy.filters.listener.http_inspector`.
pub const HTTP_INSPECTOR: &str =
    "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";
/// `envoy.filters.listener.original_dst`.
pub const ORIGINAL_DST: &str = "envoy.extensions.filters.listener.original_dst.v3.OriginalDst";
/// `envoy.transport_sockets.tls` (upstream).
pub const UPSTREAM_TLS_CONTEXT: &str =
    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// `envoy.transport_sockets.tls` (downstream).
pub const DOWNSTREAM_TLS_CONTEXT: &str =
    "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
/// `envoy.transport_sockets.raw_buffer`.
pub const RAW_BUFFER: &str = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
/// `envoy.access_loggers.file`.
pub const FILE_ACCESS_LOG: &str = "envoy.extensions.access_loggers.file.v3.FileAccessLog";
/// `envoy.access_loggers.stdout`.
pub const STDOUT_ACCESS_LOG: &str = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
/// `envoy.access_loggers.stderr`.
pub const STDERR_ACCESS_LOG: &str = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog";
/// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

macro_rules! with_header_mutations {
    ($($field:literal),* $(,)?) => {
        &[
            $($field,)*
            ALL_ROUTE_HEADER_MUTATIONS[0],
            ALL_ROUTE_HEADER_MUTATIONS[1],
            ALL_ROUTE_HEADER_MUTATIONS[2],
            ALL_ROUTE_HEADER_MUTATIONS[3],
        ]
    };
}

const MESSAGES: &[(&str, Fields)] = &[
    // Bootstrap.
    (
        "envoy.config.bootstrap.v3.Bootstrap",
        Fields::Only(&["node", "static_resources", "dynamic_resources", "admin"]),
    ),
    ("envoy.config.core.v3.Node", Fields::Opaque),
    (
        "envoy.config.bootstrap.v3.Bootstrap.StaticResources",
        Fields::Only(&["listeners", "clusters"]),
    ),
    (
        "envoy.config.bootstrap.v3.Bootstrap.DynamicResources",
        Fields::Only(&["lds_config", "cds_config", "ads_config"]),
    ),
    (
        "envoy.config.bootstrap.v3.Admin",
        Fields::Only(&["address", "access_log_path", "access_log"]),
    ),
    (
        "envoy.config.core.v3.ConfigSource",
        Fields::Only(&["ads", "resource_api_version", "initial_fetch_timeout"]),
    ),
    (
        "envoy.config.core.v3.AggregatedConfigSource",
        Fields::Only(&[]),
    ),
    (
        "envoy.config.core.v3.ApiConfigSource",
        Fields::Only(&[
            "api_type",
            "transport_api_version",
            "grpc_services",
            "set_node_on_first_message_only",
        ]),
    ),
    (
        "envoy.config.core.v3.GrpcService",
        Fields::Only(&["envoy_grpc", "timeout"]),
    ),
    (
        "envoy.config.core.v3.GrpcService.EnvoyGrpc",
        Fields::Only(&["cluster_name"]),
    ),
    // Addresses.
    (
        "envoy.config.core.v3.Address",
        Fields::Only(&["socket_address"]),
    ),
    (
        "envoy.config.core.v3.SocketAddress",
        Fields::Only(&["protocol", "address", "port_value", "ipv4_compat"]),
    ),
    (
        "envoy.config.core.v3.CidrRange",
        Fields::Only(&["address_prefix", "prefix_len"]),
    ),
    // Listeners.
    (
        "envoy.config.listener.v3.Listener",
        Fields::Only(&[
            "name",
            "address",
            "filter_chains",
            "default_filter_chain",
            "listener_filters",
            "listener_filters_timeout",
            "continue_on_listener_filters_timeout",
            "use_original_dst",
            "bind_to_port",
            "traffic_direction",
            "access_log",
            "stat_prefix",
            "metadata",
        ]),
    ),
    (
        "envoy.config.listener.v3.FilterChain",
        Fields::Only(&[
            "filter_chain_match",
            "filters",
            "transport_socket",
            "name",
            "metadata",
        ]),
    ),
    (
        "envoy.config.listener.v3.FilterChainMatch",
        Fields::Only(&[
            "destination_port",
            "prefix_ranges",
            "server_names",
            "transport_protocol",
            "application_protocols",
            "source_prefix_ranges",
            "source_ports",
        ]),
    ),
    (
        "envoy.config.listener.v3.Filter",
        Fields::Only(&["name", "typed_config"]),
    ),
    (
        "envoy.config.listener.v3.ListenerFilter",
        Fields::Only(&["name", "typed_config"]),
    ),
    ("envoy.config.core.v3.Metadata", Fields::Opaque),
    ("envoy.config.core.v3.Locality", Fields::Opaque),
    (
        "envoy.config.core.v3.TransportSocket",
        Fields::Only(&["name", "typed_config"]),
    ),
    (TLS_INSPECTOR, Fields::Only(&[])),
    (HTTP_INSPECTOR, Fields::Only(&[])),
    (ORIGINAL_DST, Fields::Only(&[])),
    (RAW_BUFFER, Fields::Only(&[])),
    // HTTP connection manager.
    (
        HTTP_CONNECTION_MANAGER,
        Fields::Only(&[
            "codec_type",
            "stat_prefix",
            "rds",
            "route_config",
            "http_filters",
            "server_name",
            "server_header_transformation",
            "stream_idle_timeout",
            "request_timeout",
            "max_request_headers_kb",
            "common_http_protocol_options",
            "use_remote_address",
            "xff_num_trusted_hops",
            "skip_xff_append",
            "generate_request_id",
            "preserve_external_request_id",
            "always_set_request_id_in_response",
            "access_log",
            "upgrade_configs",
            "drain_timeout",
            "normalize_path",
            "merge_slashes",
            "path_with_escaped_slashes_action",
        ]),
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.Rds",
        Fields::Only(&["config_source", "route_config_name"]),
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
        Fields::Only(&["name", "typed_config", "is_optional"]),
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig",
        Fields::Only(&["upgrade_type", "enabled"]),
    ),
    (
        "envoy.config.core.v3.HttpProtocolOptions",
        Fields::Only(&["idle_timeout", "max_headers_count", "max_stream_duration"]),
    ),
    (ROUTER, Fields::Only(&["suppress_envoy_headers"])),
    // Routes.
    (
        "envoy.config.route.v3.RouteConfiguration",
        Fields::Only(with_header_mutations![
            "name",
            "virtual_hosts",
            "validate_clusters",
            "most_specific_header_mutations_wins",
            "ignore_port_in_host_matching",
            "max_direct_response_body_size_bytes",
        ]),
    ),
    (
        "envoy.config.route.v3.VirtualHost",
        Fields::Only(with_header_mutations![
            "name",
            "domains",
            "routes",
            "typed_per_filter_config",
            "include_request_attempt_count",
            "include_attempt_count_in_response",
        ]),
    ),
    (
        "envoy.config.route.v3.Route",
        Fields::Only(with_header_mutations![
            "name",
            "match",
            "route",
            "redirect",
            "direct_response",
            "typed_per_filter_config",
            "decorator",
            "metadata",
        ]),
    ),
    ("envoy.config.route.v3.Decorator", Fields::Opaque),
    (
        "envoy.config.route.v3.RouteMatch",
        Fields::Only(&[
            "prefix",
            "path",
            "safe_regex",
            "path_separated_prefix",
            "case_sensitive",
            "runtime_fraction",
            "headers",
            "query_parameters",
            "grpc",
        ]),
    ),
    (
        "envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions",
        Fields::Only(&[]),
    ),
    (
        "envoy.config.route.v3.HeaderMatcher",
        Fields::Only(&[
            "name",
            "exact_match",
            "safe_regex_match",
            "range_match",
            "present_match",
            "prefix_match",
            "suffix_match",
            "contains_match",
            "string_match",
            "invert_match",
            "treat_missing_header_as_empty",
        ]),
    ),
    (
        "envoy.config.route.v3.QueryParameterMatcher",
        Fields::Only(&["name", "string_match", "present_match"]),
    ),
    (
        "envoy.type.matcher.v3.StringMatcher",
        Fields::Only(&[
            "exact",
            "prefix",
            "suffix",
            "safe_regex",
            "contains",
            "ignore_case",
        ]),
    ),
    (
        "envoy.type.matcher.v3.RegexMatcher",
        Fields::Only(&["google_re2", "regex"]),
    ),
    (
        "envoy.type.matcher.v3.RegexMatcher.GoogleRE2",
        Fields::Only(&[]),
    ),
    (
        "envoy.type.matcher.v3.RegexMatchAndSubstitute",
        Fields::Only(&["pattern", "substitution"]),
    ),
    ("envoy.type.v3.Int64Range", Fields::Only(&["start", "end"])),
    (
        "envoy.config.core.v3.RuntimeFractionalPercent",
        Fields::Only(&["default_value", "runtime_key"]),
    ),
    (
        "envoy.type.v3.FractionalPercent",
        Fields::Only(&["numerator", "denominator"]),
    ),
    (
        "envoy.config.route.v3.RouteAction",
        Fields::Only(&[
            "cluster",
            "cluster_header",
            "weighted_clusters",
            "cluster_not_found_response_code",
            "prefix_rewrite",
            "regex_rewrite",
            "host_rewrite_literal",
            "auto_host_rewrite",
            "timeout",
            "idle_timeout",
            "upgrade_configs",
        ]),
    ),
    (
        "envoy.config.route.v3.RouteAction.UpgradeConfig",
        Fields::Only(&["upgrade_type", "enabled"]),
    ),
    (
        "envoy.config.route.v3.WeightedCluster",
        Fields::Only(&["clusters", "total_weight"]),
    ),
    (
        "envoy.config.route.v3.WeightedCluster.ClusterWeight",
        Fields::Only(with_header_mutations![
            "name",
            "weight",
            "typed_per_filter_config"
        ]),
    ),
    (
        "envoy.config.route.v3.RedirectAction",
        Fields::Only(&[
            "https_redirect",
            "scheme_redirect",
            "host_redirect",
            "port_redirect",
            "path_redirect",
            "prefix_rewrite",
            "regex_rewrite",
            "response_code",
            "strip_query",
        ]),
    ),
    (
        "envoy.config.route.v3.DirectResponseAction",
        Fields::Only(&["status", "body"]),
    ),
    (
        "envoy.config.core.v3.DataSource",
        Fields::Only(&["filename", "inline_bytes", "inline_string"]),
    ),
    (
        "envoy.config.core.v3.HeaderValueOption",
        Fields::Only(&["header", "append", "append_action", "keep_empty_value"]),
    ),
    (
        "envoy.config.core.v3.HeaderValue",
        Fields::Only(&["key", "value", "raw_value"]),
    ),
    // Clusters and endpoints.
    (
        "envoy.config.cluster.v3.Cluster",
        Fields::Only(&[
            "name",
            "alt_stat_name",
            "type",
            "eds_cluster_config",
            "connect_timeout",
            "lb_policy",
            "load_assignment",
            "transport_socket",
            "typed_extension_protocol_options",
            "http2_protocol_options",
            "dns_lookup_family",
            "dns_refresh_rate",
            "respect_dns_ttl",
            "metadata",
            "cleanup_interval",
        ]),
    ),
    (
        "envoy.config.cluster.v3.Cluster.EdsClusterConfig",
        Fields::Only(&["eds_config", "service_name"]),
    ),
    (
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        Fields::Only(&["cluster_name", "endpoints"]),
    ),
    (
        "envoy.config.endpoint.v3.LocalityLbEndpoints",
        Fields::Only(&[
            "locality",
            "lb_endpoints",
            "load_balancing_weight",
            "priority",
        ]),
    ),
    (
        "envoy.config.endpoint.v3.LbEndpoint",
        Fields::Only(&[
            "endpoint",
            "health_status",
            "load_balancing_weight",
            "metadata",
        ]),
    ),
    (
        "envoy.config.endpoint.v3.Endpoint",
        Fields::Only(&["address", "hostname"]),
    ),
    (
        HTTP_PROTOCOL_OPTIONS,
        Fields::Only(&[
            "explicit_http_config",
            "use_downstream_protocol_config",
            "common_http_protocol_options",
        ]),
    ),
    (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig",
        Fields::Only(&["http_protocol_options", "http2_protocol_options"]),
    ),
    (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig",
        Fields::Only(&["http_protocol_options", "http2_protocol_options"]),
    ),
    (
        "envoy.config.core.v3.Http1ProtocolOptions",
        Fields::Only(&[]),
    ),
    (
        "envoy.config.core.v3.Http2ProtocolOptions",
        Fields::Only(&["max_concurrent_streams"]),
    ),
    // TLS.
    (
        UPSTREAM_TLS_CONTEXT,
        Fields::Only(&["common_tls_context", "sni"]),
    ),
    (
        DOWNSTREAM_TLS_CONTEXT,
        Fields::Only(&["common_tls_context", "require_client_certificate"]),
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext",
        Fields::Only(&[
            "tls_certificates",
            "validation_context",
            "alpn_protocols",
            "tls_params",
        ]),
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.TlsParameters",
        Fields::Only(&[
            "tls_minimum_protocol_version",
            "tls_maximum_protocol_version",
        ]),
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.TlsCertificate",
        Fields::Only(&["certificate_chain", "private_key"]),
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext",
        Fields::Only(&["trusted_ca"]),
    ),
    // TCP proxy.
    (
        TCP_PROXY,
        Fields::Only(&[
            "stat_prefix",
            "cluster",
            "weighted_clusters",
            "idle_timeout",
            "access_log",
        ]),
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster",
        Fields::Only(&["clusters"]),
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight",
        Fields::Only(&["name", "weight"]),
    ),
    // Access logs.
    (
        "envoy.config.accesslog.v3.AccessLog",
        Fields::Only(&["name", "typed_config"]),
    ),
    (
        FILE_ACCESS_LOG,
        Fields::Only(&["path", "format", "json_format", "log_format"]),
    ),
    (STDOUT_ACCESS_LOG, Fields::Only(&["log_format"])),
    (STDERR_ACCESS_LOG, Fields::Only(&["log_format"])),
    (
        "envoy.config.core.v3.SubstitutionFormatString",
        Fields::Only(&[
            "text_format",
            "json_format",
            "text_format_source",
            "omit_empty_values",
            "content_type",
        ]),
    ),
];
