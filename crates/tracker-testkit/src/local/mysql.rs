//! The MySQL client/server protocol (MariaDB speaks it too), as much as a login without a
//! password and a plain statement need.

use std::net::TcpStream;

use super::wire::{IO_TIMEOUT, c_string, connect, read_exact, set_timeout, write_all};

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
/// `ER_BAD_DB_ERROR`: unknown database.
const UNKNOWN_DATABASE: u16 = 1049;

/// A failed step; `code` is the server's error number when it sent one.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: Option<u16>,
    pub(crate) message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            code: None,
            message,
        }
    }
}

/// A logged-in session.
pub(crate) struct Session {
    stream: TcpStream,
    seq: u8,
}

/// Logs in as `user` without a password and makes sure `database` exists.
pub(crate) fn ensure_database(address: &str, user: &str, database: &str) -> Result<(), String> {
    let mut session = Session::start(address, user).map_err(|f| f.message)?;
    match session.command(0x02, database) {
        Ok(()) => {}
        Err(Failure {
            code: Some(UNKNOWN_DATABASE),
            ..
        }) => {
            session
                .command(0x03, &format!("CREATE DATABASE IF NOT EXISTS `{database}`"))
                .map_err(|f| format!("cannot create database {database}: {}", f.message))?;
            session.command(0x02, database).map_err(|f| f.message)?;
        }
        Err(failure) => return Err(failure.message),
    }
    session.close();
    Ok(())
}

impl Session {
    /// Connects and logs in with an empty password.
    pub(crate) fn start(address: &str, user: &str) -> Result<Self, Failure> {
        let mut session = Session {
            stream: connect(address)?,
            seq: 0,
        };
        let handshake = session.receive()?;
        let server = match handshake.first() {
            Some(10) => capabilities(&handshake)?,
            Some(0xff) => return Err(error_packet(&handshake)),
            _ => return Err(not_mysql().into()),
        };
        if server.flags & CLIENT_PROTOCOL_41 == 0 {
            return Err("the server predates MySQL 4.1".to_owned().into());
        }
        let mut flags = CLIENT_LONG_PASSWORD
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION;
        flags |= server.flags & CLIENT_PLUGIN_AUTH;
        let mut response = flags.to_le_bytes().to_vec();
        response.extend_from_slice(&(1_u32 << 24).to_le_bytes()); // max packet size
        response.push(33); // utf8_general_ci
        response.extend_from_slice(&[0; 23]);
        response.extend_from_slice(user.as_bytes());
        response.push(0);
        response.push(0); // an empty authentication response: no password
        if flags & CLIENT_PLUGIN_AUTH != 0 {
            response.extend_from_slice(server.plugin.as_bytes());
            response.push(0);
        }
        session.send(&response)?;
        loop {
            let reply = session.receive()?;
            match reply.first() {
                Some(0x00) => {
                    set_timeout(&session.stream, IO_TIMEOUT)?;
                    return Ok(session);
                }
                Some(0xff) => return Err(error_packet(&reply)),
                // An authentication switch: the empty password again, in the new method.
                Some(0xfe) => session.send(&[])?,
                // caching_sha2_password's fast path: 3 = accepted, an OK follows.
                Some(0x01) if reply.get(1) == Some(&3) => {}
                Some(0x01) => {
                    return Err(format!("it asks user {user} for a password").into());
                }
                _ => return Err(not_mysql().into()),
            }
        }
    }

    /// Runs a command (`0x02` select a database, `0x03` a statement) that answers with
    /// OK or an error.
    pub(crate) fn command(&mut self, command: u8, argument: &str) -> Result<(), Failure> {
        self.seq = 0;
        let mut packet = vec![command];
        packet.extend_from_slice(argument.as_bytes());
        self.send(&packet)?;
        let reply = self.receive()?;
        match reply.first() {
            Some(0x00) => Ok(()),
            Some(0xff) => Err(error_packet(&reply)),
            _ => Err(not_mysql().into()),
        }
    }

    /// Says goodbye (COM_QUIT).
    pub(crate) fn close(mut self) {
        self.seq = 0;
        let _ = self.send(&[0x01]);
    }

    fn send(&mut self, payload: &[u8]) -> Result<(), String> {
        let len = u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes();
        let mut packet = vec![len[0], len[1], len[2], self.seq];
        packet.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        write_all(&mut self.stream, &packet)
    }

    fn receive(&mut self) -> Result<Vec<u8>, String> {
        let header = read_exact(&mut self.stream, 4)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        self.seq = header[3].wrapping_add(1);
        read_exact(&mut self.stream, len)
    }
}

struct Server {
    flags: u32,
    plugin: String,
}

/// The capability flags and authentication method of an initial handshake (version 10).
fn capabilities(handshake: &[u8]) -> Result<Server, String> {
    let (_version, rest) = c_string(handshake.get(1..).unwrap_or_default());
    // connection id (4), scramble part 1 (8), filler (1), then the low capability flags.
    let low = rest.get(13..15).ok_or_else(not_mysql)?;
    let mut flags = u32::from(u16::from_le_bytes([low[0], low[1]]));
    // character set (1), status (2), high capability flags (2), scramble length (1),
    // reserved (10), scramble part 2 (at least 13), method name.
    if let Some(high) = rest.get(18..20) {
        flags |= u32::from(u16::from_le_bytes([high[0], high[1]])) << 16;
    }
    let mut plugin = String::from("mysql_native_password");
    if flags & CLIENT_PLUGIN_AUTH != 0 {
        let scramble = rest.get(20).map_or(0, |&len| usize::from(len));
        let part2 = scramble.saturating_sub(8).max(13);
        if let Some(name) = rest.get(31 + part2..) {
            plugin = c_string(name).0;
        }
    }
    Ok(Server { flags, plugin })
}

fn not_mysql() -> String {
    "it does not speak MySQL's protocol".to_owned()
}

/// The error number and text of an ERR packet.
fn error_packet(packet: &[u8]) -> Failure {
    let code = packet.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
    let mut text = packet.get(3..).unwrap_or_default();
    if text.first() == Some(&b'#') {
        text = text.get(6..).unwrap_or_default(); // '#' and the SQLSTATE
    }
    let text = String::from_utf8_lossy(text);
    Failure {
        message: format!("error {}: {text}", code.unwrap_or_default()),
        code,
    }
}
