//! A minimal `curl` for the client pods of Istio's tasks (`kubectl exec curl -- curl …`):
//! the common options, curl's output and exit codes, `HTTP_PROXY` honoured.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request, Response, Uri};

use crate::{Error, HttpClient};

/// The options of the built-in curl, spelled as curl's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CurlArgs {
    /// The URL; `http://` is assumed when it has no scheme.
    pub url: String,
    /// No progress and no error messages.
    #[arg(short = 's', long)]
    pub silent: bool,
    /// With `-s`, still print error messages.
    #[arg(short = 'S', long)]
    pub show_error: bool,
    /// Print the status line and headers before the body.
    #[arg(short = 'i', long)]
    pub include: bool,
    /// Send HEAD and print the status line and headers only.
    #[arg(short = 'I', long)]
    pub head: bool,
    /// Print the request and response heads to stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Fail (exit 22, no body) on HTTP statuses of 400 and above.
    #[arg(short = 'f', long)]
    pub fail: bool,
    /// Write the output to this file instead of stdout (`/dev/null` to drop it).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print this after the transfer, with `%{http_code}`, `%{time_total}`, … replaced.
    #[arg(short = 'w', long, value_name = "FORMAT")]
    pub write_out: Option<String>,
    /// Extra header `Name: value` (`Name:` removes a default header); repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The request method.
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// Body to POST (joined with `&` when repeated; `@file` reads a file, `@-` stdin).
    #[arg(
        short = 'd',
        long = "data",
        value_name = "DATA",
        allow_hyphen_values = true
    )]
    pub data: Vec<String>,
    /// Body to POST, taken literally.
    #[arg(long = "data-raw", value_name = "DATA", allow_hyphen_values = true)]
    pub data_raw: Vec<String>,
    /// Limit on the whole transfer, in seconds.
    #[arg(short = 'm', long = "max-time", value_name = "SECONDS")]
    pub max_time: Option<f64>,
}

/// Runs curl with the proxy settings of the environment, on the process's stdout and
/// stderr; returns curl's exit code.
pub async fn main(args: &CurlArgs) -> u8 {
    let mut stdout = io::stdout();
    let mut stderr = io::stderr();
    let client = match HttpClient::from_env() {
        Ok(client) => client,
        Err(error) => {
            if !args.silent || args.show_error {
                let _ = writeln!(stderr, "curl: (5) {error}");
            }
            return 5;
        }
    };
    run(args, &client, &mut stdout, &mut stderr).await
}

/// What a transfer gave, for `--write-out`.
#[derive(Default)]
struct Transfer {
    status: u16,
    content_type: String,
    size: usize,
    elapsed: Duration,
}

/// Runs curl with `client`, printing to `stdout` and `stderr`; returns curl's exit code:
/// 0 for any HTTP answer (22 with `--fail` and a status of 400 or more), 3 for a bad URL,
/// 6 when the host does not resolve, 7 when no connection opens, 28 on timeout, 52/56 when
/// the server closes or breaks the connection.
pub async fn run(
    args: &CurlArgs,
    client: &HttpClient,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> u8 {
    let started = Instant::now();
    let show_errors = !args.silent || args.show_error;
    let url = if args.url.contains("://") {
        args.url.clone()
    } else {
        format!("http://{}", args.url)
    };
    let request = match build_request(args, &url) {
        Ok(request) => request,
        Err((code, message)) => {
            if show_errors {
                let _ = writeln!(stderr, "curl: ({code}) {message}");
            }
            write_out(args, stdout, &url, &Transfer::default());
            return code;
        }
    };
    if args.verbose {
        print_request(client, &request, stderr);
    }
    let method = request.method().clone();
    let timeout = args
        .max_time
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .map(Duration::from_secs_f64);
    let response = match client.send(request, timeout).await {
        Ok(response) => response,
        Err(error) => {
            let (code, message) = describe(&error);
            if show_errors {
                let _ = writeln!(stderr, "curl: ({code}) {message}");
            }
            let transfer = Transfer {
                elapsed: started.elapsed(),
                ..Transfer::default()
            };
            write_out(args, stdout, &url, &transfer);
            return code;
        }
    };
    let transfer = Transfer {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        size: response.body().len(),
        elapsed: started.elapsed(),
    };
    if args.verbose {
        let _ = stderr.write_all(&response_head(&response, "< "));
    }
    let failed = args.fail && transfer.status >= 400;
    let mut code = 0;
    if failed {
        if show_errors {
            let _ = writeln!(
                stderr,
                "curl: (22) The requested URL returned error: {}",
                transfer.status
            );
        }
        code = 22;
    } else {
        let mut output = Vec::new();
        if args.include || args.head {
            output.extend_from_slice(&response_head(&response, ""));
        }
        if method != Method::HEAD {
            output.extend_from_slice(response.body());
        }
        if let Err(error) = write_output(args, stdout, &output) {
            if show_errors {
                let _ = writeln!(
                    stderr,
                    "curl: (23) Failure writing output to destination: {error}"
                );
            }
            code = 23;
        }
    }
    write_out(args, stdout, &url, &transfer);
    code
}

fn build_request(args: &CurlArgs, url: &str) -> Result<Request<Bytes>, (u8, String)> {
    let uri: Uri = url.parse().map_err(|_| {
        (
            3,
            "URL rejected: Malformed input to a URL function".to_owned(),
        )
    })?;
    let authority = uri
        .authority()
        .ok_or((3, "URL rejected: No host part in the URL".to_owned()))?
        .as_str()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let body =
        body(args).map_err(|error| (26, format!("Failed to open/read local data: {error}")))?;
    let method = match &args.method {
        Some(method) => Method::from_bytes(method.as_bytes())
            .map_err(|_| (2, format!("invalid method {method:?}")))?,
        None if args.head => Method::HEAD,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut headers = HeaderMap::new();
    let default = |value: &str| {
        HeaderValue::from_str(value).map_err(|_| (3, "URL rejected: Bad hostname".to_owned()))
    };
    headers.insert(HOST, default(&authority)?);
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("curl/bosun-", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    if body.is_some() {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    for header in &args.headers {
        apply_header(&mut headers, header).map_err(|reason| (2, reason))?;
    }
    let mut request = Request::new(body.unwrap_or_default());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The request body from `-d`/`--data-raw`, `None` when there is none.
fn body(args: &CurlArgs) -> io::Result<Option<Bytes>> {
    if args.data.is_empty() && args.data_raw.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::new();
    for data in &args.data {
        match data.strip_prefix('@') {
            Some(source) => {
                let mut content = Vec::new();
                if source == "-" {
                    io::stdin().read_to_end(&mut content)?;
                } else {
                    content = std::fs::read(source)?;
                }
                // As curl does with `-d @file`: line breaks are not sent.
                content.retain(|b| *b != b'\n' && *b != b'\r');
                parts.push(content);
            }
            None => parts.push(data.as_bytes().to_vec()),
        }
    }
    parts.extend(args.data_raw.iter().map(|data| data.as_bytes().to_vec()));
    Ok(Some(Bytes::from(parts.join(&b'&'))))
}

/// Applies `-H`: `Name: value` replaces, `Name:` removes, `Name;` sends an empty value.
fn apply_header(headers: &mut HeaderMap, header: &str) -> Result<(), String> {
    let invalid = || format!("invalid header {header:?}");
    if let Some(name) = header.strip_suffix(';')
        && !name.contains(':')
    {
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?;
        headers.insert(name, HeaderValue::from_static(""));
        return Ok(());
    }
    let (name, value) = header.split_once(':').ok_or_else(invalid)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?;
    let value = value.trim();
    if value.is_empty() {
        headers.remove(name);
    } else {
        headers.insert(name, HeaderValue::from_str(value).map_err(|_| invalid())?);
    }
    Ok(())
}

/// curl's exit code and message for a failed call.
fn describe(error: &Error) -> (u8, String) {
    match error {
        Error::InvalidUrl { reason, .. } => (3, format!("URL rejected: {reason}")),
        Error::UnsupportedScheme { scheme, .. } => {
            (1, format!("Protocol \"{scheme}\" not supported"))
        }
        Error::InvalidProxy { .. } => (5, error.to_string()),
        Error::Resolve { host, .. } => (6, format!("Could not resolve host: {host}")),
        Error::Connect { target, source } => {
            (7, format!("Failed to connect to {target}: {source}"))
        }
        Error::Timeout { timeout, .. } => (
            28,
            format!(
                "Operation timed out after {} milliseconds",
                timeout.as_millis()
            ),
        ),
        Error::Http { source, .. } if source.is_incomplete_message() => {
            (52, "Empty reply from server".to_owned())
        }
        Error::Http { source, .. } => (
            56,
            format!("Failure when receiving data from the peer: {source}"),
        ),
        other => (2, other.to_string()),
    }
}

fn print_request(client: &HttpClient, request: &Request<Bytes>, stderr: &mut (dyn Write + Send)) {
    let uri = request.uri();
    let host = uri.host().unwrap_or_default();
    let target = match client.proxy_for(host) {
        Some((proxy, port)) => {
            let _ = writeln!(stderr, "* Uses proxy {proxy}:{port}");
            uri.to_string()
        }
        None => uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned(),
    };
    let mut head = format!("> {} {target} HTTP/1.1\n", request.method());
    for (name, value) in request.headers() {
        let _ = writeln!(
            head,
            "> {name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    head.push_str(">\n");
    let _ = stderr.write_all(head.as_bytes());
}

/// The status line and headers, each line starting with `prefix`, as curl prints them.
fn response_head(response: &Response<Bytes>, prefix: &str) -> Vec<u8> {
    let status = response.status();
    let mut head = format!(
        "{prefix}{:?} {} {}\r\n",
        response.version(),
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in response.headers() {
        head.extend_from_slice(format!("{prefix}{name}: ").as_bytes());
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(format!("{prefix}\r\n").as_bytes());
    head
}

fn write_output(args: &CurlArgs, stdout: &mut (dyn Write + Send), output: &[u8]) -> io::Result<()> {
    match &args.output {
        Some(path) => std::fs::write(path, output),
        None => {
            stdout.write_all(output)?;
            stdout.flush()
        }
    }
}

/// Prints `--write-out` with its variables and backslash escapes replaced.
fn write_out(args: &CurlArgs, stdout: &mut (dyn Write + Send), url: &str, transfer: &Transfer) {
    let Some(format) = &args.write_out else {
        return;
    };
    let mut out = String::new();
    let mut rest = format.as_str();
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("%{")
            && let Some(end) = after.find('}')
        {
            let name = &after[..end];
            match name {
                "http_code" | "response_code" => {
                    let _ = write!(out, "{:03}", transfer.status);
                }
                "time_total" => {
                    let _ = write!(out, "{:.6}", transfer.elapsed.as_secs_f64());
                }
                "size_download" => {
                    let _ = write!(out, "{}", transfer.size);
                }
                "content_type" => out.push_str(&transfer.content_type),
                "url_effective" | "url" => out.push_str(url),
                _ => {}
            }
            rest = &after[end + 1..];
            continue;
        }
        if let Some(after) = rest.strip_prefix('\\')
            && let Some(escaped) = after.chars().next()
        {
            match escaped {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                other => out.push(other),
            }
            rest = &after[escaped.len_utf8()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_set_removed_and_emptied() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        apply_header(&mut headers, "x-user: jason").unwrap();
        apply_header(&mut headers, "Accept:").unwrap();
        apply_header(&mut headers, "x-empty;").unwrap();
        assert_eq!(headers["x-user"], "jason");
        assert!(!headers.contains_key(ACCEPT));
        assert_eq!(headers["x-empty"], "");
        assert!(apply_header(&mut headers, "no colon").is_err());
    }

    #[test]
    fn write_out_replaces_variables_and_escapes() {
        let args = CurlArgs {
            write_out: Some("%{http_code}\\n%{size_download} %{unknown}%".into()),
            ..CurlArgs::default()
        };
        let mut out = Vec::new();
        let transfer = Transfer {
            status: 200,
            size: 12,
            ..Transfer::default()
        };
        write_out(&args, &mut out, "http://x/", &transfer);
        assert_eq!(String::from_utf8(out).unwrap(), "200\n12 %");
        let mut out = Vec::new();
        write_out(&args, &mut out, "http://x/", &Transfer::default());
        assert!(String::from_utf8(out).unwrap().starts_with("000\n"));
    }
}
