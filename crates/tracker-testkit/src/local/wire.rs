//! Sockets with timeouts and the byte helpers the protocol checks share.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a connection to a local address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a server may take to answer each step of a login (something else on the port
/// may wait for the client forever).
pub(crate) const LOGIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long any one read or write may take after the login (creating a database included).
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest message accepted from a server; anything bigger is not the expected protocol.
const MAX_MESSAGE: usize = 1 << 20;

/// A connection with timeouts; the error says that nothing answers.
pub(crate) fn connect(address: &str) -> Result<TcpStream, String> {
    let socket: SocketAddr = address
        .parse()
        .map_err(|e| format!("{address} is not an IP address and port: {e}"))?;
    let stream = TcpStream::connect_timeout(&socket, CONNECT_TIMEOUT)
        .map_err(|e| format!("nothing answers: {e}"))?;
    let io = |e: std::io::Error| format!("cannot set up the connection: {e}");
    stream.set_read_timeout(Some(LOGIN_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(LOGIN_TIMEOUT)).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    Ok(stream)
}

/// Reads exactly `len` bytes.
pub(crate) fn read_exact(stream: &mut TcpStream, len: usize) -> Result<Vec<u8>, String> {
    if len > MAX_MESSAGE {
        return Err(format!(
            "a {len}-byte message is not what the protocol sends here"
        ));
    }
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            "no reply in time: it does not speak the expected protocol".to_owned()
        }
        ErrorKind::UnexpectedEof => "the server closed the connection".to_owned(),
        _ => format!("no reply: {e}"),
    })?;
    Ok(buf)
}

/// Writes all of `bytes`.
pub(crate) fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    stream
        .write_all(bytes)
        .map_err(|e| format!("cannot send: {e}"))
}

/// The text of a NUL-terminated string at the start of `bytes`, and what follows it.
pub(crate) fn c_string(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let rest = bytes.get(end + 1..).unwrap_or_default();
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), rest)
}

/// Sets how long reads and writes may take from now on.
pub(crate) fn set_timeout(stream: &TcpStream, timeout: Duration) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot set up the connection: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)
}
