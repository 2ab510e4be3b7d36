//! The `original_dst` listener filter: the address a connection was for before iptables
//! redirected it (`SO_ORIGINAL_DST`).

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::TcpStream;

/// The original destination of a redirected connection; `None` when it was not redirected.
pub(super) fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let original = if local.is_ipv4() {
        let raw = getsockopt(stream, sockopt::OriginalDst).ok()?;
        SocketAddr::V4(SocketAddrV4::new(
            u32::from_be(raw.sin_addr.s_addr).into(),
            u16::from_be(raw.sin_port),
        ))
    } else {
        let raw = getsockopt(stream, sockopt::Ip6tOriginalDst).ok()?;
        SocketAddr::V6(SocketAddrV6::new(
            raw.sin6_addr.s6_addr.into(),
            u16::from_be(raw.sin6_port),
            raw.sin6_flowinfo,
            raw.sin6_scope_id,
        ))
    };
    Some(original)
}
