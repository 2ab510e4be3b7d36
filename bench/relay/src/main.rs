//! The floor of the benchmark: the least a user-space proxy on one tokio thread can do per
//! HTTP/1.1 keep-alive request. `bench/bench.py` runs it as a reference next to bosun and Envoy.
//!
//! Each downstream connection gets one upstream connection, and the relay alternates: one read
//! from downstream, one write upstream, one read from upstream, one write downstream. No parsing,
//! no routing, no allocation per request. This is only correct for a client that sends one
//! request at a time whose request and response each arrive in one read (wrk and oha against the
//! benchmark's backend do), which is why it is a measuring stick and not a proxy.
//!
//! Usage: `bench-relay <listen-port> <upstream-port>`

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: u16 = args.next().unwrap_or_default().parse()?;
    let upstream: u16 = args.next().unwrap_or_default().parse()?;
    let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(("127.0.0.1", listen)).await?;
            loop {
                let (downstream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    // A connection that fails just ends; the measuring client notices.
                    let _ = relay(downstream, upstream).await;
                });
            }
        })
}

async fn relay(mut downstream: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    downstream.set_nodelay(true)?;
    let mut upstream = TcpStream::connect(upstream).await?;
    upstream.set_nodelay(true)?;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let request = downstream.read(&mut buffer).await?;
        if request == 0 {
            return Ok(());
        }
        upstream.write_all(&buffer[..request]).await?;
        let response = upstream.read(&mut buffer).await?;
        if response == 0 {
            return Ok(());
        }
        downstream.write_all(&buffer[..response]).await?;
    }
}
