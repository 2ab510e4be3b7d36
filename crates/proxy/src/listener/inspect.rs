//! Listener filters that look at the first bytes of a connection without consuming them:
//! `tls_inspector` (SNI and ALPN of a ClientHello) and `http_inspector` (HTTP/1.x or h2c).

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// What the listener filters found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    /// `tls` or `raw_buffer`.
    pub transport_protocol: String,
    /// The SNI of a TLS ClientHello.
    pub server_name: Option<String>,
    /// ALPN offered by TLS, or `http/1.1`, `http/1.0`, `h2c` detected in plain text.
    pub application_protocols: Vec<String>,
}

impl Default for Inspected {
    fn default() -> Self {
        Inspected {
            transport_protocol: "raw_buffer".to_owned(),
            server_name: None,
            application_protocols: Vec::new(),
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MAX_PEEK: usize = 16 * 1024 + 5;

enum Verdict {
    Done(Inspected),
    NeedMore,
}

/// Peeks at `stream` until the enabled inspectors have decided.
pub(super) async fn inspect(stream: &TcpStream, tls: bool, http: bool) -> io::Result<Inspected> {
    if !tls && !http {
        return Ok(Inspected::default());
    }
    let mut buffer = vec![0u8; MAX_PEEK];
    let mut wait = Duration::from_micros(200);
    let mut last_len = 0;
    loop {
        let n = stream.peek(&mut buffer).await?;
        if n == 0 {
            return Ok(Inspected::default());
        }
        match examine(&buffer[..n], tls, http) {
            Verdict::Done(found) => return Ok(found),
            Verdict::NeedMore if n == buffer.len() => return Ok(Inspected::default()),
            Verdict::NeedMore => {
                // The socket stays readable while unread data waits; pace the retries until more
                // bytes arrive (the first segment nearly always holds everything).
                if n == last_len {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(20));
                }
                last_len = n;
            }
        }
    }
}

fn examine(data: &[u8], tls: bool, http: bool) -> Verdict {
    if tls && data.first() == Some(&0x16) {
        return match client_hello(data) {
            Some(Some(found)) => Verdict::Done(found),
            Some(None) => Verdict::NeedMore,
            None => Verdict::Done(Inspected::default()),
        };
    }
    if http {
        return http_protocol(data);
    }
    Verdict::Done(Inspected::default())
}

/// `Some(Some(..))`: a ClientHello; `Some(None)`: not complete yet; `None`: not TLS.
fn client_hello(data: &[u8]) -> Option<Option<Inspected>> {
    if data.len() < 5 {
        return Some(None);
    }
    let record_len = usize::from(u16::from_be_bytes([data[3], data[4]])) + 5;
    if data.len() < record_len {
        return Some(None);
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut reader = data;
    while !reader.is_empty() {
        match acceptor.read_tls(&mut reader) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            let hello = accepted.client_hello();
            Some(Some(Inspected {
                transport_protocol: "tls".to_owned(),
                server_name: hello.server_name().map(str::to_owned),
                application_protocols: hello
                    .alpn()
                    .map(|protocols| {
                        protocols
                            .map(|p| String::from_utf8_lossy(p).into_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            }))
        }
        Ok(None) => Some(None),
        Err(_) => None,
    }
}

fn http_protocol(data: &[u8]) -> Verdict {
    let plain = |protocol: &str| Inspected {
        application_protocols: vec![protocol.to_owned()],
        ..Inspected::default()
    };
    let prefix = data.len().min(H2_PREFACE.len());
    if data[..prefix] == H2_PREFACE[..prefix] {
        return if data.len() >= H2_PREFACE.len() {
            Verdict::Done(plain("h2c"))
        } else {
            Verdict::NeedMore
        };
    }
    // A method: upper-case letters, then a space.
    let method_len = data.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if method_len == 0 || (method_len < data.len() && data[method_len] != b' ') {
        return Verdict::Done(Inspected::default());
    }
    match data.windows(2).position(|w| w == b"\r\n") {
        None => Verdict::NeedMore,
        Some(end) => {
            let line = &data[..end];
            if line.ends_with(b" HTTP/1.1") {
                Verdict::Done(plain("http/1.1"))
            } else if line.ends_with(b" HTTP/1.0") {
                Verdict::Done(plain("http/1.0"))
            } else {
                Verdict::Done(Inspected::default())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(v: Verdict) -> Inspected {
        match v {
            Verdict::Done(i) => i,
            Verdict::NeedMore => panic!("wanted a verdict"),
        }
    }

    #[test]
    fn detects_http1_and_h2c() {
        assert_eq!(
            done(http_protocol(b"GET / HTTP/1.1\r\nHost: x\r\n")).application_protocols,
            ["http/1.1"]
        );
        assert_eq!(
            done(http_protocol(b"POST /a HTTP/1.0\r\n")).application_protocols,
            ["http/1.0"]
        );
        assert_eq!(
            done(http_protocol(H2_PREFACE)).application_protocols,
            ["h2c"]
        );
        assert!(matches!(http_protocol(b"PRI * HT"), Verdict::NeedMore));
        assert!(matches!(http_protocol(b"GET /long"), Verdict::NeedMore));
        assert!(
            done(http_protocol(b"\x00\x01binary"))
                .application_protocols
                .is_empty()
        );
    }

    #[test]
    fn reads_sni_and_alpn_from_a_client_hello() {
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut config = config;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from("reviews.example.com").unwrap();
        let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        let found = done(examine(&hello, true, true));
        assert_eq!(found.transport_protocol, "tls");
        assert_eq!(found.server_name.as_deref(), Some("reviews.example.com"));
        assert_eq!(found.application_protocols, ["h2", "http/1.1"]);
        assert!(matches!(
            examine(&hello[..10], true, true),
            Verdict::NeedMore
        ));
    }
}
