//! The nginx in front of the local nodes: pure config rendering plus a thin process
//! wrapper (`nginx -p DIR -c DIR/nginx.conf`, reload by SIGHUP).
//!
//! Routing, by affinity:
//! - cookie: the response sets `<cookie>=<node name>` for the node that served it; a
//!   request carrying a socket.io session id (`sid`) goes to the node its cookie names,
//!   even while that node drains, so the session survives until the drain moves it.
//!   Handshakes (no `sid`) go only to nodes that accept new clients. Each node's
//!   upstream lists the others as `backup`, so a dead node's clients land elsewhere.
//! - client address: `hash $remote_addr consistent` over the nodes that accept new
//!   clients (NOT `ip_hash`: it hashes only three octets, so all of 127.0.0.x is one
//!   key). Like a Kubernetes Service, a draining node leaves the set at once; its
//!   WebSockets stay open (an nginx reload keeps established connections).
//! - off: round robin, the classic missing-stickiness failure (tests only).
//!
//! A second server, on its own port, is the API front: round robin over every node's
//! server port (publish API, metrics), as the `<name>-api` Service is on Kubernetes.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::child::{Child, ChildError};
use super::plan::Affinity;

/// One node as nginx sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    /// Its client port.
    pub addr: SocketAddr,
    /// Its server port (publish API).
    pub admin: SocketAddr,
    /// False while draining: existing sessions only.
    pub accepts_new: bool,
}

/// Everything the config depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub dir: PathBuf,
    /// The client front door.
    pub listen: SocketAddr,
    /// The API front door.
    pub api_listen: SocketAddr,
    pub affinity: Affinity,
    pub backends: Vec<Backend>,
}

/// The upstream of new clients: the nodes that accept them, or every node when none
/// does (better a refused handshake than an nginx that will not load).
fn new_client_backends(site: &Site) -> Vec<&Backend> {
    let accepting: Vec<&Backend> = site.backends.iter().filter(|b| b.accepts_new).collect();
    if accepting.is_empty() {
        site.backends.iter().collect()
    } else {
        accepting
    }
}

/// Renders nginx.conf for `site`.
pub fn render(site: &Site) -> String {
    let dir = site.dir.display();
    let mut c = String::new();
    let _ = write!(
        c,
        "# Rendered by push-operator local; rewritten on every change.
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format push '$remote_addr [$time_local] \"$request\" $status upstream=$upstream_addr';
  access_log {dir}/access.log push;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
"
    );
    let new_clients = new_client_backends(site);
    c.push_str("  upstream push_new {\n");
    if site.affinity == Affinity::ClientAddress {
        c.push_str("    hash $remote_addr consistent;\n");
    }
    for b in &new_clients {
        let _ = writeln!(c, "    server {} max_fails=1 fail_timeout=2s;", b.addr);
    }
    c.push_str("  }\n");
    let mut set_cookie = "\"\"".to_owned();
    let mut upstream = "push_new".to_owned();
    if let Affinity::Cookie { name } = &site.affinity {
        for (i, b) in site.backends.iter().enumerate() {
            let _ = writeln!(c, "  upstream push_node_{i} {{");
            // Never marked down for a failed request: a drain or rebalance cutting one
            // session's poll would otherwise send every other session of the node to a
            // backup that does not know it (400 Session ID unknown). A dead node leaves
            // the config; a refused connection still falls through to a backup.
            let _ = writeln!(c, "    server {} max_fails=0;", b.addr);
            for other in new_clients.iter().filter(|o| o.name != b.name) {
                let _ = writeln!(c, "    server {} backup;", other.addr);
            }
            c.push_str("  }\n");
        }
        // $cookie_NAME cannot name a cookie with a dash: read it from the header instead.
        let _ = writeln!(
            c,
            "  map $http_cookie $push_affinity {{\n    default \"\";\n    \"~(^|;\\s*){name}=(?<node>[^;\\s]+)\" $node;\n  }}"
        );
        c.push_str("  map $push_affinity $push_sticky {\n    default push_new;\n");
        for (i, b) in site.backends.iter().enumerate() {
            let _ = writeln!(c, "    \"{}\" push_node_{i};", b.name);
        }
        c.push_str("  }\n  map $push_affinity $push_handshake {\n    default push_new;\n");
        for (i, b) in site.backends.iter().enumerate() {
            if b.accepts_new {
                let _ = writeln!(c, "    \"{}\" push_node_{i};", b.name);
            }
        }
        c.push_str("  }\n  map $arg_sid $push_upstream {\n    \"\" $push_handshake;\n    default $push_sticky;\n  }\n");
        c.push_str("  map $upstream_addr $push_set_cookie {\n    default \"\";\n");
        for b in &site.backends {
            let addr = b.addr.to_string().replace('.', "\\.");
            let _ = writeln!(
                c,
                "    \"~(^|[ ,]){addr}$\" \"{name}={}; Path=/; HttpOnly; SameSite=Lax\";",
                b.name
            );
        }
        c.push_str("  }\n");
        set_cookie = "$push_set_cookie".to_owned();
        upstream = "$push_upstream".to_owned();
    }
    let _ = write!(
        c,
        "  server {{
    listen {listen};
    location / {{
      proxy_pass http://{upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_buffering off;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 2s;
      add_header Set-Cookie {set_cookie} always;
    }}
  }}
",
        listen = site.listen
    );
    // Every node publishes, a draining one too (until it stops: then the next one; a POST
    // is passed on only when it never reached the first).
    c.push_str("  upstream push_api {\n");
    for b in &site.backends {
        let _ = writeln!(c, "    server {} max_fails=1 fail_timeout=2s;", b.admin);
    }
    let _ = write!(
        c,
        "  }}
  server {{
    listen {api_listen};
    location / {{
      proxy_pass http://push_api;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 2s;
    }}
  }}
}}
",
        api_listen = site.api_listen
    );
    c
}

#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nginx rejected the config: {0}")]
    Rejected(String),
    #[error(transparent)]
    Child(#[from] ChildError),
}

/// A running nginx master (workers in its process group).
pub struct Nginx {
    site: Site,
    child: Child,
    started: std::time::Instant,
}

/// Restarting a dead nginx more often than this only spins (e.g. its port is taken).
const RESTART_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Nginx {
    fn conf(dir: &Path) -> PathBuf {
        dir.join("nginx.conf")
    }

    fn write(site: &Site) -> Result<(), NginxError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| NginxError::Write { path, source }
        };
        let tmp = site.dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let conf = Self::conf(&site.dir);
        std::fs::write(&conf, render(site)).map_err(io(&conf))?;
        let out = std::process::Command::new("nginx")
            .args(["-t", "-q", "-e"])
            .arg(site.dir.join("error.log"))
            .arg("-p")
            .arg(&site.dir)
            .arg("-c")
            .arg(&conf)
            .output()
            .map_err(|source| ChildError::Spawn {
                what: "nginx -t".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(NginxError::Rejected(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(())
    }

    /// Writes the config, checks it with `nginx -t` and starts nginx.
    pub fn start(site: Site) -> Result<Self, NginxError> {
        Self::write(&site)?;
        let mut cmd = tokio::process::Command::new("nginx");
        cmd.arg("-e")
            .arg(site.dir.join("error.log"))
            .arg("-p")
            .arg(&site.dir)
            .arg("-c")
            .arg(Self::conf(&site.dir));
        let child = Child::spawn("nginx", cmd, &site.dir.join("nginx.out"))?;
        Ok(Self {
            site,
            child,
            started: std::time::Instant::now(),
        })
    }

    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Applies `site` if it differs: rewrite, check, SIGHUP (established connections stay).
    pub fn update(&mut self, site: Site) -> Result<(), NginxError> {
        if site == self.site {
            return Ok(());
        }
        Self::write(&site)?;
        self.child.signal(libc::SIGHUP);
        self.site = site;
        Ok(())
    }

    /// Starts nginx again with the current site when it died (at most once a second).
    pub fn restart_if_dead(&mut self) -> Result<bool, NginxError> {
        if self.child.alive() || self.started.elapsed() < RESTART_INTERVAL {
            return Ok(false);
        }
        tracing::warn!(status = ?self.child.exit_status(), "nginx exited: restarting (see {}/error.log)", self.site.dir.display());
        *self = Self::start(self.site.clone())?;
        Ok(true)
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    pub async fn stop(self) {
        // SIGTERM = fast shutdown (SIGQUIT would wait for every WebSocket to close).
        self.child
            .stop(libc::SIGTERM, std::time::Duration::from_secs(3))
            .await;
    }
}

#[cfg(test)]
mod tests;
