//! Istio's tcp-echo sample (`tcp-echo-server`, args `"9000,9001,9002" "hello"`): on each
//! port, answers every line with `<prefix> <line>`.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::Error;

/// Reads the image's first argument: comma-separated ports, such as `9000,9001,9002`.
pub fn parse_ports(list: &str) -> Result<Vec<u16>, Error> {
    list.split(',')
        .map(str::trim)
        .filter(|port| !port.is_empty())
        .map(|port| {
            port.parse::<u16>().map_err(|error| Error::InvalidArgument {
                value: port.to_owned(),
                reason: format!("not a port: {error}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|ports| {
            if ports.is_empty() {
                Err(Error::InvalidArgument {
                    value: list.to_owned(),
                    reason: "no ports".to_owned(),
                })
            } else {
                Ok(ports)
            }
        })
}

/// Echoes on every listener until the future is dropped: each line received is written
/// back as `<prefix> <line>\n`.
pub async fn serve(listeners: Vec<TcpListener>, prefix: String) {
    let prefix: Arc<str> = prefix.into();
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(listener, prefix.clone()));
    }
    while accept_loops.join_next().await.is_some() {}
    std::future::pending::<()>().await;
}

async fn accept_loop(listener: TcpListener, prefix: Arc<str>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let prefix = prefix.clone();
                    connections.spawn(async move {
                        if let Err(error) = echo(stream, &prefix).await {
                            tracing::debug!(%peer, %error, "tcp-echo connection failed");
                        }
                    });
                }
                Err(error) => {
                    // Transient (file descriptors, aborted handshakes): pause, then go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn echo(stream: TcpStream, prefix: &str) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let mut reply = Vec::with_capacity(prefix.len() + line.len() + 2);
        reply.extend_from_slice(prefix.as_bytes());
        reply.push(b' ');
        reply.extend_from_slice(&line);
        // The real server drops a last line without a newline; answering it is kinder to
        // `printf hello | nc` and changes nothing for line-based clients.
        if !line.ends_with(b"\n") {
            reply.push(b'\n');
        }
        write.write_all(&reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_like_the_image_args() {
        assert_eq!(parse_ports("9000,9001,9002").unwrap(), [9000, 9001, 9002]);
        assert_eq!(parse_ports(" 9000 , ").unwrap(), [9000]);
        assert!(parse_ports("9000,http").is_err());
        assert!(parse_ports("").is_err());
    }
}
