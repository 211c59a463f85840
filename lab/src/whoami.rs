//! `swarmnet debug whoami`: a tiny server to try services with (like traefik/whoami). Run it
//! in a backend container; every answer names the server and the client address it saw, so
//! balancing and source-address preservation can be checked with `curl` or the tests'
//! `probe`.
//!
//! * TCP: a connection that starts with `HOLD\n` gets `<name> <client ip>\n` for every line
//!   it sends (a long-lived connection, at most 36,000 lines; a line `PUSH <ms>` is answered
//!   only after that many milliseconds, at most 60 s: the server speaks first after an idle
//!   period); any other connection is read
//!   as an HTTP request head (at most 8 KiB) and answered with HTTP/1.0 200 whose body is
//!   `<name> <client ip>\n`, then closed.
//! * UDP: every datagram is answered with `<name> <client ip>\n`.
//!
//! Threads, std only; [`serve`] returns after `max` (bounded, so a forgotten server ends).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// Bind every port, print `serving` on stdout, answer until `max` has passed.
pub fn serve(name: &str, tcp: &[u16], udp: &[u16], max: Duration) -> std::io::Result<()> {
    if tcp.is_empty() && udp.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "give --tcp and/or --udp ports",
        ));
    }
    for &p in tcp {
        let l = TcpListener::bind(("0.0.0.0", p))?;
        let name = name.to_string();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let name = name.clone();
                std::thread::spawn(move || {
                    let _ = answer_tcp(&name, conn);
                });
            }
        });
    }
    for &p in udp {
        let s = UdpSocket::bind(("0.0.0.0", p))?;
        let name = name.to_string();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(format!("{name} {}\n", from.ip()).as_bytes(), from);
            }
        });
    }
    println!("serving");
    std::io::stdout().flush()?;
    std::thread::sleep(max);
    Ok(())
}

fn answer_tcp(name: &str, conn: TcpStream) -> std::io::Result<()> {
    let peer = conn.peer_addr()?.ip();
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut first = String::new();
    r.read_line(&mut first)?;
    let body = format!("{name} {peer}\n");
    if first == "HOLD\n" {
        w.write_all(body.as_bytes())?;
        for _ in 0..36_000 {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                break;
            }
            if let Some(ms) = line
                .strip_prefix("PUSH ")
                .and_then(|m| m.trim().parse::<u64>().ok())
            {
                std::thread::sleep(Duration::from_millis(ms.min(60_000)));
            }
            w.write_all(body.as_bytes())?;
        }
        return Ok(());
    }
    let mut head = first;
    while !head.ends_with("\r\n\r\n") && !head.ends_with("\n\n") && head.len() < 8192 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        head.push_str(&line);
    }
    w.write_all(
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}
