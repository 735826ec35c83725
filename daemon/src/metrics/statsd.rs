//! StatsD over UDP, as TwinDB's StatsD transport sent it: one timing line per
//! duration, `twindb.files.backup_time:1234|ms`. Plain StatsD has no tags, so the
//! run type is not sent.

use std::io;

use tokio::net::UdpSocket;

use super::Point;

pub async fn send(host: &str, port: u16, points: &[Point]) -> io::Result<()> {
    let socket = UdpSocket::bind(if host.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })
    .await?;
    socket.connect((host, port)).await?;
    for p in points {
        let line = format!("{}:{}|ms", p.name, (p.value * 1000.0).round() as u64);
        socket.send(line.as_bytes()).await?;
    }
    Ok(())
}
