//! PostgreSQL's frontend/backend protocol 3.0, as much as a trusted login and a simple query
//! need.

use std::io::Write;
use std::net::TcpStream;

use super::wire::{IO_TIMEOUT, c_string, connect, read_exact, set_timeout, write_all};

/// A failed step; `code` is the SQLSTATE when the server sent an error.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: Option<String>,
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
pub(crate) struct Session(TcpStream);

/// Logs in as `user` without a password and makes sure `database` exists.
pub(crate) fn ensure_database(address: &str, user: &str, database: &str) -> Result<(), String> {
    match Session::start(address, user, database) {
        Ok(session) => {
            session.close();
            return Ok(());
        }
        // 3D000: invalid_catalog_name, the database does not exist.
        Err(Failure {
            code: Some(code), ..
        }) if code == "3D000" => {}
        Err(failure) => return Err(failure.message),
    }
    let mut admin = Session::start(address, user, "postgres").map_err(|f| f.message)?;
    match admin.query(&format!("CREATE DATABASE \"{database}\"")) {
        // 42P04: duplicate_database, made by another process meanwhile.
        Err(Failure {
            code: Some(code), ..
        }) if code == "42P04" => {}
        Err(failure) => {
            return Err(format!(
                "cannot create database {database}: {}",
                failure.message
            ));
        }
        Ok(_) => {}
    }
    admin.close();
    Session::start(address, user, database)
        .map_err(|f| f.message)?
        .close();
    Ok(())
}

impl Session {
    /// Connects and logs in; only servers that trust `user` let it in.
    pub(crate) fn start(address: &str, user: &str, database: &str) -> Result<Self, Failure> {
        let mut stream = connect(address)?;
        let mut body = 196_608_u32.to_be_bytes().to_vec(); // protocol 3.0
        for (key, value) in [
            ("user", user),
            ("database", database),
            ("application_name", "tracker-testkit"),
        ] {
            body.extend_from_slice(key.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut message = u32_len(body.len() + 4).to_vec();
        message.extend_from_slice(&body);
        write_all(&mut stream, &message)?;
        let mut session = Session(stream);
        loop {
            let (kind, body) = session.receive()?;
            match kind {
                b'R' => match body.get(..4) {
                    Some([0, 0, 0, 0]) => {}
                    Some(&[a, b, c, d]) => {
                        return Err(format!(
                            "it asks user {user} for a password (authentication method {})",
                            u32::from_be_bytes([a, b, c, d])
                        )
                        .into());
                    }
                    _ => return Err("a malformed authentication message".to_owned().into()),
                },
                b'Z' => {
                    set_timeout(&session.0, IO_TIMEOUT)?;
                    return Ok(session);
                }
                b'E' => return Err(error_response(&body)),
                b'S' | b'K' | b'N' | b'v' => {}
                other => return Err(unexpected(other).into()),
            }
        }
    }

    /// Runs one statement; returns how many rows it sent.
    pub(crate) fn query(&mut self, sql: &str) -> Result<usize, Failure> {
        let mut message = vec![b'Q'];
        message.extend_from_slice(&u32_len(sql.len() + 5));
        message.extend_from_slice(sql.as_bytes());
        message.push(0);
        write_all(&mut self.0, &message)?;
        let mut rows = 0;
        let mut failure = None;
        loop {
            let (kind, body) = self.receive()?;
            match kind {
                b'D' => rows += 1,
                b'E' => failure = Some(error_response(&body)),
                b'Z' => return failure.map_or(Ok(rows), Err),
                b'T' | b'C' | b'I' | b'N' | b'S' => {}
                other => return Err(unexpected(other).into()),
            }
        }
    }

    /// Says goodbye; the server ends the session.
    pub(crate) fn close(mut self) {
        let _ = self.0.write_all(&[b'X', 0, 0, 0, 4]);
    }

    fn receive(&mut self) -> Result<(u8, Vec<u8>), String> {
        let header = read_exact(&mut self.0, 5)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len < 4 {
            return Err(unexpected(header[0]));
        }
        Ok((header[0], read_exact(&mut self.0, len - 4)?))
    }
}

fn u32_len(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

fn unexpected(kind: u8) -> String {
    format!(
        "it does not speak PostgreSQL's protocol (message type {:?})",
        kind as char
    )
}

/// The SQLSTATE and text of an ErrorResponse.
fn error_response(mut body: &[u8]) -> Failure {
    let (mut code, mut message) = (None, String::new());
    while let Some((&field, rest)) = body.split_first() {
        if field == 0 {
            break;
        }
        let (value, rest) = c_string(rest);
        match field {
            b'C' => code = Some(value),
            b'M' => message = value,
            _ => {}
        }
        body = rest;
    }
    Failure {
        message: format!("error {}: {message}", code.as_deref().unwrap_or("?")),
        code,
    }
}
