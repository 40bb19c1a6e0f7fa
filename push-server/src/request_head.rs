//! Request heads that outlive their request: copied out of hyper's read buffer, and
//! trimmed to what a session uses.
//!
//! Why: hyper parses the URI and the header values as slices of the connection's read
//! buffer (16 KiB once grown), and engineioxide keeps a new session's request head for
//! the session's whole life (`socket.req_parts()`). So every idle WebSocket pinned that
//! whole buffer: about 16 of the 30 KiB a connection cost (heaptrack, 1,000 idle
//! clients). Copying the few hundred bytes of the head lets the buffer go. axum's
//! router puts a clone of the URI into the extensions too (`OriginalUri`), before any
//! of its layers runs: it gets the same copy.
//!
//! A session keeps only the headers [`KEPT`] lists (who the client is and where it
//! came from, and what the WebSocket upgrade reads), their values in one allocation:
//! a browser sends ~15 headers, and each kept one costs a map entry for the session's
//! life.

use axum::body::Bytes;
use axum::extract::OriginalUri;
use http::{HeaderMap, HeaderName, HeaderValue, Uri, header, request::Parts};

/// The request headers a session keeps: identity (cookies for shared sessions,
/// authorization), origin and proxy headers (logs, future policies), and what
/// engineioxide's WebSocket upgrade reads right after the handshake is admitted.
pub const KEPT: [HeaderName; 10] = [
    header::COOKIE,
    header::AUTHORIZATION,
    header::ORIGIN,
    header::HOST,
    header::USER_AGENT,
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-real-ip"),
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
];

/// Replaces the URI, the `OriginalUri` extension and the headers of `parts` by copies
/// that share no buffer with the request they were parsed from, keeping only the
/// [`KEPT`] headers (values, their order and sensitivity unchanged).
pub fn detach(parts: &mut Parts) {
    let uri = copy_uri(&parts.uri);
    if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>() {
        *original = if *original == parts.uri {
            uri.clone()
        } else {
            copy_uri(original)
        };
    }
    parts.uri = uri;
    parts.headers = kept_headers(&parts.headers);
}

fn kept_headers(all: &HeaderMap) -> HeaderMap {
    let kept = || all.iter().filter(|(name, _)| KEPT.contains(name));
    let mut values = Vec::with_capacity(kept().map(|(_, v)| v.len()).sum());
    for (_, value) in kept() {
        values.extend_from_slice(value.as_bytes());
    }
    let values = Bytes::from(values);
    let mut headers = HeaderMap::with_capacity(kept().count());
    let mut at = 0;
    for (name, value) in kept() {
        let slice = values.slice(at..at + value.len());
        at += value.len();
        // The bytes were a valid value already; a failure would keep the shared one.
        let mut copy = HeaderValue::from_maybe_shared(slice).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    headers
}

fn copy_uri(uri: &Uri) -> Uri {
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use axum::body::Bytes;
    use http::Request;

    use super::*;

    /// A head whose URI and values are slices of one buffer, as hyper builds it.
    fn shared_head(buffer: &Bytes) -> Parts {
        let text = std::str::from_utf8(buffer).expect("ascii");
        let slice = |s: &str| {
            let start = text.find(s).expect("in buffer");
            buffer.slice(start..start + s.len())
        };
        let value = |s: &str| HeaderValue::from_maybe_shared(slice(s)).expect("valid value");
        let uri =
            Uri::from_maybe_shared(slice("/socket.io/?EIO=4&transport=websocket")).expect("uri");
        let (mut parts, ()) = Request::builder()
            .uri(uri.clone())
            .extension(OriginalUri(uri))
            .body(())
            .expect("request")
            .into_parts();
        parts.headers.append("host", value("127.0.0.1:3000"));
        parts.headers.append("cookie", value("a=1"));
        parts.headers.append("cookie", value("b=2"));
        let mut token = value("Bearer t0ken");
        token.set_sensitive(true);
        parts.headers.append("authorization", token);
        parts.headers.append("x-custom-header", value("v"));
        parts
    }

    fn inside(range: &Range<usize>, bytes: &[u8]) -> bool {
        range.contains(&(bytes.as_ptr() as usize))
    }

    #[test]
    fn detached_head_keeps_its_content_and_shares_no_buffer() {
        let buffer = Bytes::from(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: 127.0.0.1:3000\r\n\
             cookie: a=1\r\ncookie: b=2\r\nauthorization: Bearer t0ken\r\nx-custom-header: v\r\n\r\n"
                .to_owned(),
        );
        let start = buffer.as_ptr() as usize;
        let range = start..start + buffer.len();
        let mut parts = shared_head(&buffer);
        let uri = parts.uri.clone();
        let mut headers = parts.headers.clone();
        headers.remove("x-custom-header");
        assert!(
            inside(&range, parts.uri.path().as_bytes()),
            "fixture: the URI is a slice of the buffer"
        );

        detach(&mut parts);

        assert_eq!(parts.uri, uri);
        assert_eq!(
            parts.headers, headers,
            "same names, values and order, minus the unkept"
        );
        assert!(!parts.headers.contains_key("x-custom-header"));
        assert!(parts.headers["authorization"].is_sensitive());
        assert!(
            !inside(&range, parts.uri.path().as_bytes()),
            "case uri: still a slice of the read buffer"
        );
        let original = &parts.extensions.get::<OriginalUri>().expect("kept").0;
        assert_eq!(original, &uri);
        assert!(
            !inside(&range, original.path().as_bytes()),
            "case OriginalUri: still a slice of the read buffer"
        );
        for (name, value) in &parts.headers {
            assert!(
                !inside(&range, value.as_bytes()),
                "case header {name}: still a slice of the read buffer"
            );
        }
    }
}
