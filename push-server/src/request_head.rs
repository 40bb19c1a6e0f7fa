//! Request heads that outlive their request: copied out of hyper's read buffer.
//!
//! Why: hyper parses the URI and the header values as slices of the connection's read
//! buffer (16 KiB once grown), and engineioxide keeps a new session's request head for
//! the session's whole life (`socket.req_parts()`). So every idle WebSocket pinned that
//! whole buffer: about 16 of the 30 KiB a connection cost (heaptrack, 1,000 idle
//! clients). Copying the few hundred bytes of the head lets the buffer go. axum's
//! router puts a clone of the URI into the extensions too (`OriginalUri`), before any
//! of its layers runs: that one is copied as well.

use axum::extract::OriginalUri;
use http::{HeaderMap, HeaderValue, Uri, request::Parts};

/// Replaces the URI, the `OriginalUri` extension and the header values of `parts` by
/// copies that share no buffer with the request they were parsed from. Names, values,
/// their order and sensitivity are kept; a part that cannot be copied (none can: hyper
/// validated them) stays shared.
pub fn detach(parts: &mut Parts) {
    copy_uri(&mut parts.uri);
    if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>() {
        copy_uri(original);
    }
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let copy = match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(mut copy) => {
                copy.set_sensitive(value.is_sensitive());
                copy
            }
            Err(_) => value.clone(),
        };
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
}

fn copy_uri(uri: &mut Uri) {
    if let Ok(copy) = Uri::try_from(uri.to_string()) {
        *uri = copy;
    }
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
        let (uri, headers) = (parts.uri.clone(), parts.headers.clone());
        assert!(
            inside(&range, parts.uri.path().as_bytes()),
            "fixture: the URI is a slice of the buffer"
        );

        detach(&mut parts);

        assert_eq!(parts.uri, uri);
        assert_eq!(parts.headers, headers, "same names, values and order");
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
