//! Envoy's substitution format strings (`%REQ(:METHOD)% %RESPONSE_CODE%`), used by access logs
//! and by header values in routes.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// Why a format string is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A `%COMMAND%` Envoy has but bosun proxy does not implement, or a misspelt one.
    #[error("unsupported format command %{0}%")]
    UnknownCommand(String),
    /// A `%` that does not start a command.
    #[error("malformed format string at byte {0}: commands look like %NAME% or %NAME(arg):len%")]
    Malformed(usize),
}

/// Response flags, as Envoy reports them in `%RESPONSE_FLAGS%`: in the order they were set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags {
    bits: u32,
    /// Flag numbers in the order they were set, 5 bits each, the count in the top 4 bits.
    order: u64,
}

const ORDER_SLOTS: u32 = 12;

macro_rules! response_flags {
    ($($name:ident = $bit:expr, $short:literal;)*) => {
        impl ResponseFlags {
            $(
                #[doc = concat!("`", $short, "`.")]
                pub const $name: ResponseFlags = ResponseFlags::single($bit);
            )*
            const ALL: &'static [(ResponseFlags, &'static str)] = &[$((ResponseFlags::$name, $short)),*];
        }
    };
}

// In the order Envoy prints them.
response_flags! {
    FAILED_LOCAL_HEALTH_CHECK = 0, "LH";
    NO_HEALTHY_UPSTREAM = 1, "UH";
    UPSTREAM_REQUEST_TIMEOUT = 2, "UT";
    LOCAL_RESET = 3, "LR";
    UPSTREAM_REMOTE_RESET = 4, "UR";
    UPSTREAM_CONNECTION_FAILURE = 5, "UF";
    UPSTREAM_CONNECTION_TERMINATION = 6, "UC";
    UPSTREAM_OVERFLOW = 7, "UO";
    NO_ROUTE_FOUND = 8, "NR";
    DELAY_INJECTED = 9, "DI";
    FAULT_INJECTED = 10, "FI";
    RATE_LIMITED = 11, "RL";
    UNAUTHORIZED_EXTERNAL_SERVICE = 12, "UAEX";
    DOWNSTREAM_CONNECTION_TERMINATION = 13, "DC";
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 14, "URX";
    STREAM_IDLE_TIMEOUT = 15, "SI";
    INVALID_ENVOY_REQUEST_HEADERS = 16, "IH";
    DOWNSTREAM_PROTOCOL_ERROR = 17, "DPE";
    UPSTREAM_MAX_STREAM_DURATION_REACHED = 18, "UMSDR";
    DURATION_TIMEOUT = 19, "DT";
    UPSTREAM_PROTOCOL_ERROR = 20, "UPE";
    NO_CLUSTER_FOUND = 21, "NC";
    OVERLOAD_MANAGER = 22, "OM";
    NO_FILTER_CONFIG_FOUND = 23, "NFCF";
}

impl ResponseFlags {
    /// No flag.
    pub const NONE: ResponseFlags = ResponseFlags { bits: 0, order: 0 };

    const fn single(bit: u32) -> ResponseFlags {
        ResponseFlags {
            bits: 1 << bit,
            order: (bit as u64) | (1 << 60),
        }
    }

    fn count(self) -> u32 {
        (self.order >> 60) as u32
    }

    fn bit_at(self, slot: u32) -> u32 {
        ((self.order >> (slot * 5)) & 0x1f) as u32
    }

    /// Whether `flag` is set.
    pub fn contains(self, flag: ResponseFlags) -> bool {
        self.bits & flag.bits == flag.bits && flag.bits != 0
    }

    /// Sets `flag` (after those already set).
    pub fn insert(&mut self, flag: ResponseFlags) {
        for slot in 0..flag.count() {
            let bit = flag.bit_at(slot);
            if self.bits & (1 << bit) != 0 {
                continue;
            }
            self.bits |= 1 << bit;
            let count = self.count();
            if count < ORDER_SLOTS {
                self.order = (self.order & !(0xf << 60))
                    | (u64::from(bit) << (count * 5))
                    | (u64::from(count + 1) << 60);
            }
        }
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.bits == 0
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;

    fn bitor(mut self, rhs: ResponseFlags) -> ResponseFlags {
        self.insert(rhs);
        self
    }
}

impl std::fmt::Display for ResponseFlags {
    /// `UH,UF`, or `-` when none is set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for slot in 0..self.count() {
            let bit = self.bit_at(slot);
            if slot > 0 {
                f.write_str(",")?;
            }
            let short = ResponseFlags::ALL
                .iter()
                .find(|(flag, _)| flag.bits == 1 << bit)
                .map_or("-", |(_, short)| short);
            f.write_str(short)?;
        }
        Ok(())
    }
}

/// What a format string can read about a request or connection. Fields that are unknown in a
/// context (the response, for request header templates) are `None`.
#[derive(Clone, Debug, Default)]
pub struct FormatContext<'a> {
    /// When the request (or connection) started.
    pub start_time: Option<SystemTime>,
    /// Total duration, when finished.
    pub duration: Option<Duration>,
    /// Time to receive the whole request.
    pub request_duration: Option<Duration>,
    /// Time to the first byte of the response.
    pub response_duration: Option<Duration>,
    /// Request headers, with `:method`, `:path`, `:authority`, `:scheme` as pseudo-values below.
    pub request_headers: Option<&'a HeaderMap>,
    /// `:method`.
    pub method: Option<&'a str>,
    /// `:path` (with query).
    pub path: Option<&'a str>,
    /// `:authority`.
    pub authority: Option<&'a str>,
    /// `:scheme`.
    pub scheme: Option<&'a str>,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: Option<&'static str>,
    /// Response headers.
    pub response_headers: Option<&'a HeaderMap>,
    /// Response trailers.
    pub response_trailers: Option<&'a HeaderMap>,
    /// Response status.
    pub response_code: Option<u16>,
    /// Why the response is what it is (`via_upstream`, `route_not_found`, …).
    pub response_code_details: Option<&'a str>,
    /// Response flags.
    pub response_flags: ResponseFlags,
    /// Body bytes received from downstream.
    pub bytes_received: u64,
    /// Body bytes sent downstream.
    pub bytes_sent: u64,
    /// The upstream host.
    pub upstream_host: Option<SocketAddr>,
    /// The upstream cluster.
    pub upstream_cluster: Option<&'a str>,
    /// The local address of the upstream connection.
    pub upstream_local_address: Option<SocketAddr>,
    /// Why the upstream transport failed.
    pub upstream_transport_failure_reason: Option<&'a str>,
    /// The downstream peer.
    pub downstream_remote_address: Option<SocketAddr>,
    /// The downstream local address (the original destination when redirected).
    pub downstream_local_address: Option<SocketAddr>,
    /// The SNI of the downstream connection.
    pub requested_server_name: Option<&'a str>,
    /// The route's name.
    pub route_name: Option<&'a str>,
    /// The downstream connection's id.
    pub connection_id: Option<u64>,
    /// Why the connection ended.
    pub connection_termination_details: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HeaderSource {
    Request,
    Response,
    Trailer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Command {
    StartTime(Option<String>),
    Header {
        source: HeaderSource,
        name: String,
        fallback: Option<String>,
    },
    Protocol,
    ResponseCode,
    ResponseCodeDetails,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    RequestDuration,
    ResponseDuration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    UpstreamTransportFailureReason,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    DownstreamLocalPort,
    RequestedServerName,
    RouteName,
    ConnectionId,
    ConnectionTerminationDetails,
    Hostname,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Command {
        command: Command,
        max_len: Option<usize>,
    },
}

/// A compiled format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// Envoy's default access log format.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

impl Template {
    /// Compiles a format string.
    pub fn parse(text: &str) -> Result<Template, FormatError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' {
                let next = text[i..].find('%').map_or(text.len(), |n| i + n);
                literal.push_str(&text[i..next]);
                i = next;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'%') {
                literal.push('%');
                i += 2;
                continue;
            }
            let end = find_command_end(text, i + 1).ok_or(FormatError::Malformed(i))?;
            let body = &text[i + 1..end];
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(parse_command(body)?);
            i = end + 1;
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    /// Whether the template is plain text (no command).
    pub fn as_literal(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [] => Some(""),
            [Segment::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Whether the template is exactly one command (its value keeps its type in JSON logs).
    fn single_command(&self) -> Option<(&Command, Option<usize>)> {
        match self.segments.as_slice() {
            [Segment::Command { command, max_len }] => Some((command, *max_len)),
            _ => None,
        }
    }

    /// Renders the template; unknown values print as `-`, as Envoy does.
    pub fn render(&self, ctx: &FormatContext<'_>) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(s) => out.push_str(s),
                Segment::Command { command, max_len } => {
                    let value = evaluate(command, ctx);
                    let value = value.as_deref().unwrap_or("-");
                    out.push_str(truncate(value, *max_len));
                }
            }
        }
        out
    }

    /// Renders the template as a JSON value: a lone numeric command stays a number, an unknown
    /// lone command is `null`.
    pub fn render_json(&self, ctx: &FormatContext<'_>) -> serde_json::Value {
        if let Some((command, max_len)) = self.single_command() {
            return match evaluate(command, ctx) {
                None => serde_json::Value::Null,
                Some(value) => {
                    let value = truncate(&value, max_len);
                    if is_numeric(command) {
                        value
                            .parse::<u64>()
                            .map(serde_json::Value::from)
                            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()))
                    } else {
                        serde_json::Value::String(value.to_owned())
                    }
                }
            };
        }
        serde_json::Value::String(self.render(ctx))
    }
}

fn is_numeric(command: &Command) -> bool {
    matches!(
        command,
        Command::ResponseCode
            | Command::BytesReceived
            | Command::BytesSent
            | Command::Duration
            | Command::RequestDuration
            | Command::ResponseDuration
            | Command::ConnectionId
            | Command::DownstreamLocalPort
    )
}

fn truncate(value: &str, max_len: Option<usize>) -> &str {
    match max_len {
        Some(n) if value.len() > n => {
            let mut end = n;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            &value[..end]
        }
        _ => value,
    }
}

/// The index of the `%` closing a command starting at `start`, skipping over `(...)`.
fn find_command_end(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (offset, c) in text[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '%' if depth == 0 => return Some(start + offset),
            '\n' => return None,
            _ => {}
        }
    }
    None
}

fn parse_command(body: &str) -> Result<Segment, FormatError> {
    let (head, max_len) = match body.rsplit_once("):") {
        Some((head, len)) if len.bytes().all(|b| b.is_ascii_digit()) && !len.is_empty() => {
            (format!("{head})"), len.parse().ok())
        }
        _ => (body.to_owned(), None),
    };
    let (name, arg) = match head.split_once('(') {
        Some((name, rest)) => (name, Some(rest.strip_suffix(')').unwrap_or(rest))),
        None => (head.as_str(), None),
    };
    let header = |source: HeaderSource| -> Result<Command, FormatError> {
        let arg = arg.ok_or_else(|| FormatError::UnknownCommand(body.to_owned()))?;
        let (name, fallback) = match arg.split_once('?') {
            Some((a, b)) => (a.to_ascii_lowercase(), Some(b.to_ascii_lowercase())),
            None => (arg.to_ascii_lowercase(), None),
        };
        Ok(Command::Header {
            source,
            name,
            fallback,
        })
    };
    let command = match name {
        "START_TIME" => Command::StartTime(arg.map(str::to_owned)),
        "REQ" => header(HeaderSource::Request)?,
        "RESP" => header(HeaderSource::Response)?,
        "TRAILER" => header(HeaderSource::Trailer)?,
        "PROTOCOL" => Command::Protocol,
        "RESPONSE_CODE" => Command::ResponseCode,
        "RESPONSE_CODE_DETAILS" => Command::ResponseCodeDetails,
        "RESPONSE_FLAGS" => Command::ResponseFlags,
        "BYTES_RECEIVED" => Command::BytesReceived,
        "BYTES_SENT" => Command::BytesSent,
        "DURATION" => Command::Duration,
        "REQUEST_DURATION" => Command::RequestDuration,
        "RESPONSE_DURATION" => Command::ResponseDuration,
        "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => Command::UpstreamHost,
        "UPSTREAM_CLUSTER" => Command::UpstreamCluster,
        "UPSTREAM_LOCAL_ADDRESS" => Command::UpstreamLocalAddress,
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => Command::UpstreamTransportFailureReason,
        "DOWNSTREAM_REMOTE_ADDRESS" | "DOWNSTREAM_PEER_ADDRESS" => Command::DownstreamRemoteAddress,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
        | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            Command::DownstreamRemoteAddressWithoutPort
        }
        "DOWNSTREAM_LOCAL_ADDRESS" => Command::DownstreamLocalAddress,
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Command::DownstreamLocalAddressWithoutPort,
        "DOWNSTREAM_LOCAL_PORT" => Command::DownstreamLocalPort,
        "REQUESTED_SERVER_NAME" => Command::RequestedServerName,
        "ROUTE_NAME" => Command::RouteName,
        "CONNECTION_ID" => Command::ConnectionId,
        "CONNECTION_TERMINATION_DETAILS" => Command::ConnectionTerminationDetails,
        "HOSTNAME" => Command::Hostname,
        _ => return Err(FormatError::UnknownCommand(body.to_owned())),
    };
    Ok(Segment::Command { command, max_len })
}

fn evaluate(command: &Command, ctx: &FormatContext<'_>) -> Option<String> {
    let millis = |d: Option<Duration>| d.map(|d| d.as_millis().to_string());
    match command {
        Command::StartTime(format) => ctx
            .start_time
            .map(|t| format_time(t, format.as_deref().unwrap_or(DEFAULT_TIME_FORMAT))),
        Command::Header {
            source,
            name,
            fallback,
        } => {
            let lookup = |name: &str| -> Option<String> {
                match source {
                    HeaderSource::Request => match name {
                        ":method" => ctx.method.map(str::to_owned),
                        ":path" => ctx.path.map(str::to_owned),
                        ":authority" => ctx
                            .authority
                            .map(str::to_owned)
                            .or_else(|| header_value(ctx.request_headers, "host")),
                        ":scheme" => ctx.scheme.map(str::to_owned),
                        _ => header_value(ctx.request_headers, name),
                    },
                    HeaderSource::Response => match name {
                        ":status" => ctx.response_code.map(|c| c.to_string()),
                        _ => header_value(ctx.response_headers, name),
                    },
                    HeaderSource::Trailer => header_value(ctx.response_trailers, name),
                }
            };
            lookup(name).or_else(|| fallback.as_deref().and_then(lookup))
        }
        Command::Protocol => ctx.protocol.map(str::to_owned),
        Command::ResponseCode => Some(ctx.response_code.unwrap_or(0).to_string()),
        Command::ResponseCodeDetails => ctx.response_code_details.map(str::to_owned),
        Command::ResponseFlags => Some(ctx.response_flags.to_string()),
        Command::BytesReceived => Some(ctx.bytes_received.to_string()),
        Command::BytesSent => Some(ctx.bytes_sent.to_string()),
        Command::Duration => millis(ctx.duration),
        Command::RequestDuration => millis(ctx.request_duration),
        Command::ResponseDuration => millis(ctx.response_duration),
        Command::UpstreamHost => ctx.upstream_host.map(|a| a.to_string()),
        Command::UpstreamCluster => ctx.upstream_cluster.map(str::to_owned),
        Command::UpstreamLocalAddress => ctx.upstream_local_address.map(|a| a.to_string()),
        Command::UpstreamTransportFailureReason => {
            ctx.upstream_transport_failure_reason.map(str::to_owned)
        }
        Command::DownstreamRemoteAddress => ctx.downstream_remote_address.map(|a| a.to_string()),
        Command::DownstreamRemoteAddressWithoutPort => {
            ctx.downstream_remote_address.map(|a| a.ip().to_string())
        }
        Command::DownstreamLocalAddress => ctx.downstream_local_address.map(|a| a.to_string()),
        Command::DownstreamLocalAddressWithoutPort => {
            ctx.downstream_local_address.map(|a| a.ip().to_string())
        }
        Command::DownstreamLocalPort => ctx.downstream_local_address.map(|a| a.port().to_string()),
        Command::RequestedServerName => ctx.requested_server_name.map(str::to_owned),
        Command::RouteName => ctx.route_name.map(str::to_owned),
        Command::ConnectionId => ctx.connection_id.map(|id| id.to_string()),
        Command::ConnectionTerminationDetails => {
            ctx.connection_termination_details.map(str::to_owned)
        }
        Command::Hostname => hostname(),
    }
}

fn header_value(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    let headers = headers?;
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let mut out = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for value in values {
        out.push(',');
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    Some(out)
}

fn hostname() -> Option<String> {
    static HOSTNAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOSTNAME
        .get_or_init(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
        .clone()
}

const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%E3SZ";

/// Formats a UTC time with the strftime subset Envoy users write (`%Y %m %d %H %M %S %E3S %s %z %Z %f`).
pub fn format_time(time: SystemTime, format: &str) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let nanos = since_epoch.subsec_nanos();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let (hour, minute, second) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => {
                let _ = write!(out, "{year:04}");
            }
            Some('m') => {
                let _ = write!(out, "{month:02}");
            }
            Some('d') => {
                let _ = write!(out, "{day:02}");
            }
            Some('H') => {
                let _ = write!(out, "{hour:02}");
            }
            Some('M') => {
                let _ = write!(out, "{minute:02}");
            }
            Some('S') => {
                let _ = write!(out, "{second:02}");
            }
            Some('s') => {
                let _ = write!(out, "{secs}");
            }
            Some('z') => out.push_str("+0000"),
            Some('Z') => out.push_str("UTC"),
            Some('f') => {
                let _ = write!(out, "{nanos:09}");
            }
            Some('E') => {
                let digits = chars
                    .next_if(|d| d.is_ascii_digit())
                    .and_then(|d| d.to_digit(10))
                    .unwrap_or(0) as usize;
                if chars.next_if_eq(&'S').is_some() {
                    let _ = write!(out, "{second:02}");
                    if digits > 0 {
                        let fraction = format!("{nanos:09}");
                        let _ = write!(out, ".{}", &fraction[..digits.min(9)]);
                    }
                }
            }
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests;
