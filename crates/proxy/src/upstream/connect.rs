//! Opening connections to endpoints: TCP with a deadline, then TLS when the cluster asks.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::TlsConnector;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connect timeout passed.
    #[error("connection timeout")]
    Timeout,
    /// The TCP connection failed.
    #[error("connection failure: {0}")]
    Tcp(#[source] io::Error),
    /// The TLS handshake failed.
    #[error("TLS error: {0}")]
    Tls(#[source] io::Error),
}

impl ConnectError {
    /// The same error again, for every request that waited on one connection.
    pub fn duplicate(&self) -> ConnectError {
        match self {
            ConnectError::Timeout => ConnectError::Timeout,
            ConnectError::Tcp(e) => ConnectError::Tcp(match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            }),
            ConnectError::Tls(e) => ConnectError::Tls(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// Envoy's `transport failure reason` text.
    pub fn reason(&self) -> String {
        match self {
            ConnectError::Timeout => "connection timeout".to_owned(),
            // Envoy writes the C library's text of the error, without Rust's "(os error N)".
            ConnectError::Tcp(e) => match e.raw_os_error() {
                Some(code) => format!(
                    "delayed connect error: {}",
                    nix::errno::Errno::from_raw(code).desc()
                ),
                None => format!("delayed connect error: {e}"),
            },
            ConnectError::Tls(e) => format!("TLS error: {e}"),
        }
    }
}

/// An upstream connection, plain or TLS.
#[derive(Debug)]
pub enum UpstreamIo {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl UpstreamIo {
    /// Whether TLS negotiated `h2` through ALPN.
    pub fn negotiated_h2(&self) -> bool {
        match self {
            UpstreamIo::Plain(_) => false,
            UpstreamIo::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

/// Opens a connection to `address` within `timeout`, from `source` when given (the
/// cluster's `upstream_bind_config`), with TLS when `tls` is given.
pub async fn connect(
    address: SocketAddr,
    source: Option<SocketAddr>,
    timeout: Duration,
    tls: Option<&TlsConnector>,
) -> Result<(UpstreamIo, Option<SocketAddr>), ConnectError> {
    let attempt = async {
        let tcp = match source {
            None => TcpStream::connect(address).await,
            Some(source) => connect_from(source, address).await,
        }
        .map_err(ConnectError::Tcp)?;
        // Proxied requests are small writes that must leave at once.
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        match tls {
            None => Ok((UpstreamIo::Plain(tcp), local)),
            Some(tls) => tls
                .connect(address.ip(), tcp)
                .await
                .map(|stream| (UpstreamIo::Tls(Box::new(stream)), local))
                .map_err(ConnectError::Tls),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout),
    }
}

async fn connect_from(source: SocketAddr, address: SocketAddr) -> io::Result<TcpStream> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A fixed source address with port 0 shares ports with other connections from it.
    socket.set_reuseaddr(true)?;
    socket.bind(source)?;
    socket.connect(address).await
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }
}
