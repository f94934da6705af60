//! RESP, as much as `PING` and `INFO cluster` need.

use std::net::TcpStream;

use super::wire::{connect, read_exact, write_all};

/// `PING` must answer `PONG` without a password, and the server must not be a cluster node.
pub(crate) fn check(address: &str) -> Result<(), String> {
    let mut stream = connect(address)?;
    match command(&mut stream, &["PING"])?.as_str() {
        "+PONG" => {}
        reply if reply.starts_with("-NOAUTH") || reply.starts_with("-WRONGPASS") => {
            return Err(format!("it asks for a password ({reply})"));
        }
        reply if reply.starts_with('-') => return Err(format!("PING failed: {reply}")),
        _ => return Err(not_redis()),
    }
    let header = command(&mut stream, &["INFO", "cluster"])?;
    let len = header
        .strip_prefix('$')
        .and_then(|len| len.parse::<usize>().ok())
        .ok_or_else(|| format!("INFO cluster failed: {header}"))?;
    let info = read_exact(&mut stream, len + 2)?;
    if String::from_utf8_lossy(&info).contains("cluster_enabled:1") {
        return Err("it is a Redis Cluster node".to_owned());
    }
    let _ = write_all(&mut stream, b"*1\r\n$4\r\nQUIT\r\n");
    Ok(())
}

/// Sends a command and returns the first line of the reply, without its CRLF.
fn command(stream: &mut TcpStream, args: &[&str]) -> Result<String, String> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    write_all(stream, request.as_bytes())?;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        if line.len() > 4096 {
            return Err(not_redis());
        }
        line.extend(read_exact(stream, 1)?);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn not_redis() -> String {
    "it does not speak Redis's protocol".to_owned()
}
