//! The managed Redis of local mode: a redis-server (Debian package) on loopback, no
//! persistence (a pure pub/sub link, like the managed Redis without persistence), a
//! generated password. Restarted on the same port and password when it dies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::child::{Child, ChildError};

const RESTART_INTERVAL: Duration = Duration::from_secs(1);

pub struct RedisServer {
    pub addr: SocketAddr,
    pub password: String,
    dir: PathBuf,
    child: Child,
    started: std::time::Instant,
}

impl RedisServer {
    /// Starts redis-server on `addr`.
    pub fn start(addr: SocketAddr, password: String, dir: &Path) -> Result<Self, ChildError> {
        let child = spawn(addr, &password, dir)?;
        Ok(Self {
            addr,
            password,
            dir: dir.to_owned(),
            child,
            started: std::time::Instant::now(),
        })
    }

    /// The URL push-servers get (the password travels separately).
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// Starts it again, same port and password, when it died (at most once a second,
    /// so a server that cannot start does not spin).
    pub fn restart_if_dead(&mut self) -> Result<bool, ChildError> {
        if self.child.alive() || self.started.elapsed() < RESTART_INTERVAL {
            return Ok(false);
        }
        self.started = std::time::Instant::now();
        tracing::warn!(addr = %self.addr, status = ?self.child.exit_status(), "redis-server exited: restarting");
        self.child = spawn(self.addr, &self.password, &self.dir)?;
        Ok(true)
    }

    /// True once it answers PING with our password.
    pub async fn ready(&self) -> bool {
        ping(self.addr, &self.password).await
    }

    pub async fn stop(self) {
        self.child.stop(libc::SIGTERM, Duration::from_secs(3)).await;
    }
}

fn spawn(addr: SocketAddr, password: &str, dir: &Path) -> Result<Child, ChildError> {
    let mut cmd = tokio::process::Command::new("redis-server");
    // The password shows in `ps` to local users: acceptable for a loopback-only server of
    // local mode (in Kubernetes it comes from a Secret).
    cmd.args(["--bind", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--requirepass", password])
        .arg("--dir")
        .arg(dir);
    Child::spawn("redis-server", cmd, &dir.join("redis.log"))
}

/// `AUTH` + `PING` over RESP2, by hand: two fixed commands do not need a client library.
async fn ping(addr: SocketAddr, password: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let auth = format!(
            "*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n",
            password.len()
        );
        stream.write_all(auth.as_bytes()).await.ok()?;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"+PONG\r\n") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 || got.len() > 256 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(()))
    )
}
