//! A real `redis-server` process on a free loopback port, for tests of a
//! store shared through Redis (and of what replicas do): started in its own
//! temporary directory, killed when dropped, stopped and restarted on
//! demand to look like an outage.

use std::time::Duration;

/// A real `redis-server` on a free loopback port, for tests of a store
/// shared through Redis: started in its own temporary directory, killed
/// when dropped.
///
/// # Panics
///
/// When `redis-server` is not installed (the message says how to install
/// it), or it does not answer `PING` within 10 s.
pub struct RedisServer {
    child: Option<std::process::Child>,
    port: u16,
    durable: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A Redis keeping nothing on disk.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A Redis with an append-only file fsynced on every write
    /// (`appendfsync always`), so a [`RedisServer::restart`] keeps its data.
    pub fn start_durable() -> Self {
        Self::launch(true)
    }

    fn launch(durable: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|err| panic!("cannot find a free port: {err}"));
        let dir = tempfile::tempdir()
            .unwrap_or_else(|err| panic!("cannot create a directory for redis-server: {err}"));
        let mut server = Self {
            child: None,
            port,
            durable,
            dir,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL), as a crash or a network cut would look.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (with its data, when
    /// durable), and waits for `PING`.
    pub fn restart(&mut self) {
        self.stop();
        let binary = redis_server_binary();
        let mut command = std::process::Command::new(&binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if self.durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        self.child = Some(child);
        let started = std::time::Instant::now();
        while !redis_answers_ping(self.port) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_server_binary() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(Into::into))
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server is not installed; the tests of the Redis store start their own on a \
                 free loopback port. Install it: `sudo apt-get install -y redis-server` (Debian, \
                 Ubuntu) or `brew install redis` (macOS); `.ci/run` does this by itself"
            )
        })
}

fn redis_answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = [0_u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}
