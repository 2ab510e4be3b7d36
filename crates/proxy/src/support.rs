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
    HTTP_FAULT,
    FILTER_CONFIG,
    PREVIOUS_HOSTS_PREDICATE,
    CARES_DNS_RESOLVER,
];

/// `envoy.filters.network.http_connection_manager`.
pub const HTTP_CONNECTION_MANAGER: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/// `envoy.network.dns_resolver.cares`: the name servers a DNS cluster asks.
pub const CARES_DNS_RESOLVER: &str =
    "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig";
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
/// `envoy.filters.http.fault`.
pub const HTTP_FAULT: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";
/// The wrapper of per-route filter configuration (`typed_per_filter_config`).
pub const FILTER_CONFIG: &str = "envoy.config.route.v3.FilterConfig";
/// `envoy.retry_host_predicates.previous_hosts`.
pub const PREVIOUS_HOSTS_PREDICATE: &str =
    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";

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
            "internal_address_config",
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
        Fields::Only(&[
            "idle_timeout",
            "max_headers_count",
            "max_stream_duration",
            "max_requests_per_connection",
        ]),
    ),
    (ROUTER, Fields::Only(&["suppress_envoy_headers"])),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig",
        Fields::Only(&["cidr_ranges"]),
    ),
    // Fault injection.
    (
        HTTP_FAULT,
        Fields::Only(&[
            "delay",
            "abort",
            "upstream_cluster",
            "headers",
            "downstream_nodes",
            "max_active_faults",
            "delay_percent_runtime",
            "abort_percent_runtime",
            "delay_duration_runtime",
            "abort_http_status_runtime",
            "max_active_faults_runtime",
            "abort_grpc_status_runtime",
            "disable_downstream_cluster_stats",
        ]),
    ),
    (
        "envoy.extensions.filters.http.fault.v3.FaultAbort",
        Fields::Only(&[
            "http_status",
            "grpc_status",
            "header_abort",
            "percentage",
            "response_body",
        ]),
    ),
    (
        "envoy.extensions.filters.http.fault.v3.FaultAbort.HeaderAbort",
        Fields::Only(&[]),
    ),
    (
        "envoy.extensions.filters.common.fault.v3.FaultDelay",
        Fields::Only(&["fixed_delay", "header_delay", "percentage"]),
    ),
    (
        "envoy.extensions.filters.common.fault.v3.FaultDelay.HeaderDelay",
        Fields::Only(&[]),
    ),
    (FILTER_CONFIG, Fields::Only(&["config", "disabled"])),
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
            "typed_per_filter_config",
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
            "retry_policy",
            "per_request_buffer_limit_bytes",
            "request_body_buffer_limit",
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
            "per_request_buffer_limit_bytes",
            "request_body_buffer_limit",
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
            "retry_policy",
            "hash_policy",
            "request_mirror_policies",
            "priority",
            "max_stream_duration",
            "max_grpc_timeout",
            "grpc_timeout_offset",
        ]),
    ),
    (
        "envoy.config.route.v3.RetryPolicy",
        Fields::Only(&[
            "retry_on",
            "num_retries",
            "per_try_timeout",
            "per_try_idle_timeout",
            "retry_host_predicate",
            "host_selection_retry_max_attempts",
            "retriable_status_codes",
            "retry_back_off",
            "retriable_headers",
            "retriable_request_headers",
        ]),
    ),
    (
        "envoy.config.route.v3.RetryPolicy.RetryBackOff",
        Fields::Only(&["base_interval", "max_interval"]),
    ),
    (
        "envoy.config.route.v3.RetryPolicy.RetryHostPredicate",
        Fields::Only(&["name", "typed_config"]),
    ),
    (PREVIOUS_HOSTS_PREDICATE, Fields::Only(&[])),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy",
        Fields::Only(&[
            "header",
            "cookie",
            "connection_properties",
            "query_parameter",
            "terminal",
        ]),
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.Header",
        Fields::Only(&["header_name", "regex_rewrite"]),
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.Cookie",
        Fields::Only(&["name", "ttl", "path", "attributes"]),
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.CookieAttribute",
        Fields::Only(&["name", "value"]),
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties",
        Fields::Only(&["source_ip"]),
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter",
        Fields::Only(&["name"]),
    ),
    (
        "envoy.config.route.v3.RouteAction.RequestMirrorPolicy",
        Fields::Only(&[
            "cluster",
            "cluster_header",
            "runtime_fraction",
            "disable_shadow_host_suffix_append",
            "host_rewrite_literal",
            "trace_sampled",
        ]),
    ),
    (
        "envoy.config.route.v3.RouteAction.MaxStreamDuration",
        Fields::Only(&[
            "max_stream_duration",
            "grpc_timeout_header_max",
            "grpc_timeout_header_offset",
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
            "typed_dns_resolver_config",
            "metadata",
            "cleanup_interval",
            "circuit_breakers",
            "outlier_detection",
            "health_checks",
            "common_lb_config",
            "least_request_lb_config",
            "ring_hash_lb_config",
            "maglev_lb_config",
            "round_robin_lb_config",
            "max_requests_per_connection",
            "upstream_bind_config",
        ]),
    ),
    (
        "envoy.config.core.v3.TypedExtensionConfig",
        Fields::Only(&["name", "typed_config"]),
    ),
    (
        "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
        Fields::Only(&["resolvers"]),
    ),
    (
        "envoy.config.core.v3.BindConfig",
        Fields::Only(&["source_address"]),
    ),
    (
        "envoy.config.cluster.v3.CircuitBreakers",
        Fields::Only(&["thresholds"]),
    ),
    (
        "envoy.config.cluster.v3.CircuitBreakers.Thresholds",
        Fields::Only(&[
            "priority",
            "max_connections",
            "max_pending_requests",
            "max_requests",
            "max_retries",
            "track_remaining",
            "max_connection_pools",
        ]),
    ),
    (
        "envoy.config.cluster.v3.OutlierDetection",
        Fields::Only(&[
            "consecutive_5xx",
            "interval",
            "base_ejection_time",
            "max_ejection_percent",
            "enforcing_consecutive_5xx",
            "enforcing_success_rate",
            "success_rate_minimum_hosts",
            "success_rate_request_volume",
            "success_rate_stdev_factor",
            "consecutive_gateway_failure",
            "enforcing_consecutive_gateway_failure",
            "split_external_local_origin_errors",
            "consecutive_local_origin_failure",
            "enforcing_consecutive_local_origin_failure",
            "enforcing_local_origin_success_rate",
            "failure_percentage_threshold",
            "enforcing_failure_percentage",
            "enforcing_failure_percentage_local_origin",
            "failure_percentage_minimum_hosts",
            "failure_percentage_request_volume",
            "max_ejection_time",
            "max_ejection_time_jitter",
            "successful_active_health_check_uneject_host",
            "always_eject_one_host",
        ]),
    ),
    (
        "envoy.config.core.v3.HealthCheck",
        Fields::Only(&[
            "timeout",
            "interval",
            "interval_jitter",
            "interval_jitter_percent",
            "unhealthy_threshold",
            "healthy_threshold",
            "alt_port",
            "no_traffic_interval",
            "unhealthy_interval",
            "http_health_check",
            "tcp_health_check",
        ]),
    ),
    (
        "envoy.config.core.v3.HealthCheck.HttpHealthCheck",
        Fields::Only(&[
            "host",
            "path",
            "expected_statuses",
            "retriable_statuses",
            "method",
        ]),
    ),
    (
        "envoy.config.core.v3.HealthCheck.TcpHealthCheck",
        Fields::Only(&["send", "receive"]),
    ),
    (
        "envoy.config.core.v3.HealthCheck.Payload",
        Fields::Only(&["text", "binary"]),
    ),
    (
        "envoy.config.cluster.v3.Cluster.CommonLbConfig",
        Fields::Only(&[
            "healthy_panic_threshold",
            "locality_weighted_lb_config",
            "consistent_hashing_lb_config",
        ]),
    ),
    (
        "envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig",
        Fields::Only(&[]),
    ),
    (
        "envoy.config.cluster.v3.Cluster.CommonLbConfig.ConsistentHashingLbConfig",
        Fields::Only(&["use_hostname_for_hashing"]),
    ),
    (
        "envoy.config.cluster.v3.Cluster.LeastRequestLbConfig",
        Fields::Only(&["choice_count", "active_request_bias"]),
    ),
    (
        "envoy.config.cluster.v3.Cluster.RingHashLbConfig",
        Fields::Only(&["minimum_ring_size", "maximum_ring_size", "hash_function"]),
    ),
    (
        "envoy.config.cluster.v3.Cluster.MaglevLbConfig",
        Fields::Only(&["table_size"]),
    ),
    (
        "envoy.config.cluster.v3.Cluster.RoundRobinLbConfig",
        Fields::Only(&[]),
    ),
    ("envoy.type.v3.Percent", Fields::Only(&["value"])),
    (
        "envoy.config.core.v3.RuntimeDouble",
        Fields::Only(&["default_value", "runtime_key"]),
    ),
    (
        "envoy.config.cluster.v3.Cluster.EdsClusterConfig",
        Fields::Only(&["eds_config", "service_name"]),
    ),
    (
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        Fields::Only(&["cluster_name", "endpoints", "policy"]),
    ),
    (
        "envoy.config.endpoint.v3.ClusterLoadAssignment.Policy",
        Fields::Only(&["overprovisioning_factor"]),
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
