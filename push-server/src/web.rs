//! The demo page at `/` and the official socket.io client bundle it loads (from npm,
//! never a CDN).

use std::path::{Path, PathBuf};

use axum::{
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};

pub const PAGE: &str = include_str!("../web/index.html");
/// Where the page loads the client bundle from.
pub const CLIENT_JS_PATH: &str = "/assets/socket.io.min.js";
const BUNDLE: &str = "node_modules/socket.io-client/dist/socket.io.min.js";

/// Where to look for the bundle when `PUSH_CLIENT_JS` is unset: next to the binary in a
/// container image, then the repo's `push-server/web` seen from the binary (target/*/)
/// or from the working directory.
pub fn bundle_candidates(exe: Option<&Path>, cwd: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = exe.and_then(Path::parent) {
        out.push(dir.join("socket.io.min.js"));
        for up in dir.ancestors().skip(1).take(3) {
            out.push(up.join("push-server/web").join(BUNDLE));
        }
    }
    if let Some(cwd) = cwd {
        out.push(cwd.join("push-server/web").join(BUNDLE));
        out.push(cwd.join("web").join(BUNDLE));
    }
    out
}

/// Loads the bundle once at start; `None` (logged) when it is nowhere to be found.
pub fn load_bundle(configured: Option<&Path>) -> Option<Vec<u8>> {
    let candidates = match configured {
        Some(path) => vec![path.to_owned()],
        None => {
            let exe = std::env::current_exe().ok();
            let cwd = std::env::current_dir().ok();
            bundle_candidates(exe.as_deref(), cwd.as_deref())
        }
    };
    for path in &candidates {
        if let Ok(bytes) = std::fs::read(path) {
            tracing::info!(path = %path.display(), "serving the socket.io client bundle");
            return Some(bytes);
        }
    }
    tracing::warn!(
        "socket.io client bundle not found (set PUSH_CLIENT_JS or run npm install in push-server/web): the demo page will not connect"
    );
    None
}

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub fn bundle_response(bundle: Option<&[u8]>) -> Response {
    match bundle {
        Some(bytes) => (
            [(
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            )],
            bytes.to_vec(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "socket.io client bundle not installed\n",
        )
            .into_response(),
    }
}
