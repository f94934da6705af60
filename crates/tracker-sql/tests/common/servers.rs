//! Private database servers for tests that kill, restart or reconfigure their server: a
//! PostgreSQL (`initdb` + `postgres`) or MariaDB (`mariadb-install-db` + `mariadbd`) instance
//! of the test's own, on a free loopback port, with its data directory under the system's
//! temporary directory. The shared test servers are never touched.
//!
//! Each server runs in a process group of its own, so that killing it (SIGKILL) takes its
//! worker processes too, as a crash would. Dropping a server kills it and removes its
//! directory. When a binary is missing, [`Postgres::init`] and [`Mariadb::init`] skip the
//! test loudly (`tracker_testkit::skip`, a failure under `CI`) and return `None`.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs PostgreSQL 15's server programs.
pub const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The first of `candidates` that is an executable file, or that `PATH` finds.
fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    for candidate in candidates {
        let path = Path::new(candidate);
        if path.is_absolute() {
            if path.is_file() {
                return Some(path.to_owned());
            }
            continue;
        }
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let full = dir.join(candidate);
                if full.is_file() {
                    return Some(full);
                }
            }
        }
    }
    None
}

/// `id` output for `args`, parsed as a number.
fn id(args: &[&str]) -> Option<u32> {
    let output = Command::new("id").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

/// The uid and gid to run a server as: `user` when the test runs as root (the servers
/// refuse to run as root), else the test's own.
fn run_as(user: &str) -> Result<Option<(u32, u32)>, String> {
    match id(&["-u"]) {
        Some(0) => match (id(&["-u", user]), id(&["-g", user])) {
            (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
            _ => Err(format!("there is no `{user}` user to run the server as")),
        },
        Some(_) => Ok(None),
        None => Err("`id` did not answer".to_owned()),
    }
}

/// A fresh directory under the system's temporary directory, owned by `owner`.
fn fresh_dir(name: &str, owner: Option<(u32, u32)>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tracker-sql-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    chown(&dir, owner);
    dir
}

/// Gives `path` to `owner` (when the servers run as another user).
pub fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// A command run as `owner`, in a process group of its own.
fn command(program: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command.process_group(0);
    command
}

/// Runs `command` to completion; panics with its output if it fails.
fn run(mut command: Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether a process of process group `group` is still alive (zombies do not count).
fn group_alive(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        let Some((_, after)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
        pgrp == Some(group) && state != Some("Z")
    })
}

/// Sends SIGKILL to the process group led by `child` and to every process it started
/// (PostgreSQL's backends lead process groups of their own), and waits until none of the
/// group is left. Stopped processes are resumed first, so that a test that failed while its
/// server was frozen leaves nothing behind.
fn kill_group(child: &mut Child) {
    let group = child.id();
    let tree = descendants(group);
    for signal in ["-CONT", "-KILL"] {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{group}")])
            .args(tree.iter().map(u32::to_string))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_alive(group) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The parent of each live process.
fn parents() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid ...; comm may contain spaces and parentheses.
            let (_, after) = stat.rsplit_once(')')?;
            let ppid = after.split_whitespace().nth(1)?.parse::<u32>().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// The processes `root` started, and theirs, and so on.
fn descendants(root: u32) -> Vec<u32> {
    let parents = parents();
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        for &(pid, ppid) in &parents {
            if ppid == parent && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        index += 1;
    }
    tree.remove(0);
    tree
}

/// Sends `signal` (`STOP`, `CONT`) to `child` and every process it started. PostgreSQL's
/// backends lead process groups of their own, so signalling the group is not enough.
fn signal_tree(child: Option<&Child>, signal: &str) {
    let root = child.expect("the server is running").id();
    let send = |pid: u32| {
        Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run kill")
    };
    // The root first, so a stopped postmaster starts no backend that would be missed.
    assert!(send(root).success(), "kill -{signal} {root} failed");
    for pid in descendants(root) {
        // A backend may have exited meanwhile.
        let _ = send(pid);
    }
}

/// Waits until `ready` or the child exits (a panic naming `log`) or 60 s pass.
fn wait_ready(child: &mut Child, what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} was not ready within 60 s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the server's log")
}

/// A server a test can start, kill and start again on the same port and data.
pub trait Server: Send {
    /// Starts the server and waits until it accepts connections.
    fn start(&mut self);
    /// Kills the server and its workers with SIGKILL, as a crash would.
    fn kill(&mut self);
    /// Stops the server and every process it started with SIGSTOP: connections stay open,
    /// nothing answers.
    fn freeze(&self);
    /// Lets a frozen server go on (SIGCONT).
    fn thaw(&self);
    /// A URL for a store.
    fn url(&self) -> String;
    /// The server's name for messages.
    fn name(&self) -> &'static str;
}

/// A private PostgreSQL server.
pub struct Postgres {
    /// The server's directory: data in `data/`, sockets, log, and any files a test adds.
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    settings: Vec<(String, String)>,
    child: Option<Child>,
}

impl Postgres {
    /// Creates a database cluster (`initdb`, trust authentication, superuser `postgres`);
    /// `None` after a loud skip when PostgreSQL's server programs are missing.
    pub fn init(name: &str) -> Option<Self> {
        let bin = PathBuf::from(POSTGRES_BIN);
        for program in ["initdb", "postgres", "pg_isready", "psql"] {
            if !bin.join(program).is_file() {
                tracker_testkit::skip(
                    name,
                    &format!(
                        "{POSTGRES_BIN}/{program} is missing (Debian: apt-get install postgresql-15)"
                    ),
                );
                return None;
            }
        }
        let owner = match run_as("postgres") {
            Ok(owner) => owner,
            Err(reason) => {
                tracker_testkit::skip(name, &reason);
                return None;
            }
        };
        let dir = fresh_dir(name, owner);
        let data = dir.join("data");
        let mut initdb = command(&bin.join("initdb"), owner);
        initdb
            .args([
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("--pgdata")
            .arg(&data)
            .current_dir(&dir);
        let server = Self {
            port: free_port(),
            dir,
            data,
            bin,
            owner,
            settings: Vec::new(),
            child: None,
        };
        // The guard removes the directory if initdb fails.
        run(initdb, "initdb");
        Some(server)
    }

    /// Sets a server setting (`-c key=value`) for the next start.
    pub fn set(&mut self, key: &str, value: &str) {
        self.settings.push((key.to_owned(), value.to_owned()));
    }

    /// Writes `contents` to `name` in the server's directory, owned by the server's user
    /// and readable by it only (as PostgreSQL wants for keys).
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("write a server file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod a server file");
        chown(&path, self.owner);
        path
    }

    /// Replaces the data directory's `pg_hba.conf`.
    pub fn hba(&self, contents: &str) {
        let path = self.data.join("pg_hba.conf");
        std::fs::write(&path, contents).expect("write pg_hba.conf");
        chown(&path, self.owner);
    }

    /// A URL for `user` on database `postgres` at 127.0.0.1, with `query` appended.
    pub fn url_for(&self, user: &str, query: &str) -> String {
        let mut url = format!("postgres://{user}@127.0.0.1:{}/postgres", self.port);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// Runs SQL as `postgres` through the server's Unix socket.
    pub fn psql(&self, sql: &str) {
        let mut psql = command(&self.bin.join("psql"), self.owner);
        psql.arg("--no-psqlrc")
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-h",
            ])
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-c", sql])
            .current_dir(&self.dir);
        run(psql, "psql");
    }
}

impl Server for Postgres {
    fn start(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let log = self.dir.join("postgres.log");
        let mut postgres = command(&self.bin.join("postgres"), self.owner);
        postgres
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "max_connections=60", "-c", "shared_buffers=16MB"]);
        for (key, value) in &self.settings {
            postgres.arg("-c").arg(format!("{key}={value}"));
        }
        let child = postgres
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .unwrap_or_else(|e| panic!("start postgres: {e}"));
        let child = self.child.insert(child);
        let isready = self.bin.join("pg_isready");
        let port = self.port.to_string();
        wait_ready(child, "postgres", &log, || {
            Command::new(&isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-t", "1"])
                .status()
                .is_ok_and(|status| status.success())
        });
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }

    fn freeze(&self) {
        signal_tree(self.child.as_ref(), "STOP");
    }

    fn thaw(&self) {
        signal_tree(self.child.as_ref(), "CONT");
    }

    fn url(&self) -> String {
        self.url_for("postgres", "")
    }

    fn name(&self) -> &'static str {
        "postgres"
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private MariaDB server; `root` without a password, database `test`.
pub struct Mariadb {
    /// The server's directory: data in `data/`, socket, pid file and log.
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    data: PathBuf,
    server: PathBuf,
    options: Vec<String>,
    child: Option<Child>,
}

impl Mariadb {
    /// Creates the system tables (`mariadb-install-db`) and a `test` database; `None` after
    /// a loud skip when MariaDB's server programs are missing.
    pub fn init(name: &str) -> Option<Self> {
        let install = find_program(&["/usr/bin/mariadb-install-db", "mariadb-install-db"]);
        let server = find_program(&["/usr/sbin/mariadbd", "mariadbd"]);
        let (Some(install), Some(server)) = (install, server) else {
            tracker_testkit::skip(
                name,
                "mariadb-install-db or mariadbd is missing (Debian: apt-get install mariadb-server)",
            );
            return None;
        };
        let dir = fresh_dir(name, None);
        let data = dir.join("data");
        let mut command = command(&install, None);
        command
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-name-resolve",
            ])
            .arg(format!("--datadir={}", data.display()))
            .current_dir(&dir);
        if id(&["-u"]) == Some(0) {
            command.arg("--user=root");
        }
        let mariadb = Self {
            port: free_port(),
            dir,
            data,
            server,
            options: Vec::new(),
            child: None,
        };
        // Two installs at once sometimes fail ("Installation of system tables failed"), so
        // the tests of one binary take turns.
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = INSTALL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        run(command, "mariadb-install-db");
        drop(turn);
        Some(mariadb)
    }

    /// Adds a server option (`--name=value`) for the next start.
    pub fn option(&mut self, option: &str) {
        self.options.push(option.to_owned());
    }

    /// Runs `sql` as `root` over the server's socket with the `mariadb` client.
    pub fn sql(&self, sql: &str) {
        let client = find_program(&["/usr/bin/mariadb", "mariadb", "mysql"])
            .expect("the mariadb client (Debian: apt-get install mariadb-client)");
        let mut mariadb = Command::new(client);
        mariadb
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.join("mariadb.sock").display()
            ))
            .args(["-u", "root", "-e", sql]);
        run(mariadb, "mariadb");
    }
}

impl Server for Mariadb {
    fn start(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let log = self.dir.join("mariadb.log");
        let mut mariadbd = command(&self.server, None);
        mariadbd
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!(
                "--socket={}",
                self.dir.join("mariadb.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mariadb.pid").display()
            ))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
                "--max-connections=100",
            ])
            .args(&self.options);
        if id(&["-u"]) == Some(0) {
            mariadbd.arg("--user=root");
        }
        let child = mariadbd
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .unwrap_or_else(|e| panic!("start mariadbd: {e}"));
        let child = self.child.insert(child);
        let port = self.port;
        wait_ready(child, "mariadbd", &log, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }

    fn freeze(&self) {
        signal_tree(self.child.as_ref(), "STOP");
    }

    fn thaw(&self) {
        signal_tree(self.child.as_ref(), "CONT");
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }

    fn name(&self) -> &'static str {
        "mariadb"
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
