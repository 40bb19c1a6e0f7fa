//! Just enough of Redis's wire protocol (RESP2) for local mode's checks of its own
//! redis-servers and Sentinels: PING, INFO, `SENTINEL get-master-addr-by-name`. A few
//! fixed commands on loopback do not need a client library.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest reply read (INFO is a few KiB).
const MAX_REPLY: usize = 64 * 1024;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None`: the null bulk string.
    Bulk(Option<String>),
    /// `None`: the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a simple or bulk string.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// A command as RESP: an array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Why bytes are not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed;

/// Parses one reply at the start of `buf`: `Ok(None)` while it is incomplete, else the
/// reply and the bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let (Some(kind), Some(line)) = (buf.first(), buf.get(1..end)) else {
        return Err(Malformed);
    };
    let kind = *kind;
    let line = std::str::from_utf8(line).map_err(|_| Malformed)?;
    let after = end + 2;
    let number = || line.parse::<i64>().map_err(|_| Malformed);
    match kind {
        b'+' => Ok(Some((Reply::Simple(line.to_owned()), after))),
        b'-' => Ok(Some((Reply::Error(line.to_owned()), after))),
        b':' => Ok(Some((Reply::Integer(number()?), after))),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Some((Reply::Bulk(None), after)));
            };
            let Some(stop) = after.checked_add(len) else {
                return Err(Malformed);
            };
            let (Some(data), true) = (buf.get(after..stop), buf.len() >= stop + 2) else {
                return Ok(None);
            };
            let text = String::from_utf8_lossy(data).into_owned();
            Ok(Some((Reply::Bulk(Some(text)), stop + 2)))
        }
        b'*' => {
            let Ok(count) = usize::try_from(number()?) else {
                return Ok(Some((Reply::Array(None), after)));
            };
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..count {
                match parse(&buf[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(Malformed),
    }
}

/// Sends `command` to `addr` (after `AUTH password` when given) and returns its reply;
/// `None` when it is unreachable, refuses the password or does not answer in `timeout`.
pub async fn call(
    addr: SocketAddr,
    password: Option<&str>,
    command: &[&str],
    timeout: Duration,
) -> Option<Reply> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut request = Vec::new();
        if let Some(password) = password {
            request.extend(encode(&["AUTH", password]));
        }
        request.extend(encode(command));
        stream.write_all(&request).await.ok()?;
        let mut replies = Vec::new();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let wanted = if password.is_some() { 2 } else { 1 };
        while replies.len() < wanted {
            match parse(&got).ok()? {
                Some((reply, used)) => {
                    got.drain(..used);
                    replies.push(reply);
                    continue;
                }
                None if got.len() > MAX_REPLY => return None,
                None => {}
            }
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let last = replies.pop()?;
        match replies.first() {
            Some(Reply::Error(_)) => None,
            _ => Some(last),
        }
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

/// The value of `key` in an INFO reply (`key:value` lines).
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// The address in a `SENTINEL get-master-addr-by-name` reply (`[ip, port]`).
pub fn master_addr(reply: &Reply) -> Option<SocketAddr> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    let [ip, port] = items.as_slice() else {
        return None;
    };
    let ip: std::net::IpAddr = ip.text()?.parse().ok()?;
    let port: u16 = port.text()?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Result<Option<(Reply, usize)>, Malformed>;

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        let bulk = |s: &str| Reply::Bulk(Some(s.into()));
        // (case, bytes, expected)
        let cases: Vec<(&str, &[u8], Parsed)> = vec![
            (
                "simple",
                b"+PONG\r\n",
                Ok(Some((Reply::Simple("PONG".into()), 7))),
            ),
            (
                "error",
                b"-WRONGPASS no\r\n",
                Ok(Some((Reply::Error("WRONGPASS no".into()), 15))),
            ),
            ("integer", b":42\r\n", Ok(Some((Reply::Integer(42), 5)))),
            ("bulk", b"$2\r\nhi\r\n", Ok(Some((bulk("hi"), 8)))),
            ("null bulk", b"$-1\r\n", Ok(Some((Reply::Bulk(None), 5)))),
            (
                "master address",
                b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n7001\r\n",
                Ok(Some((
                    Reply::Array(Some(vec![bulk("127.0.0.1"), bulk("7001")])),
                    29,
                ))),
            ),
            ("null array", b"*-1\r\n", Ok(Some((Reply::Array(None), 5)))),
            ("incomplete line", b"+PO", Ok(None)),
            ("incomplete bulk", b"$5\r\nhel", Ok(None)),
            ("bulk without its end", b"$2\r\nhi", Ok(None)),
            ("incomplete array", b"*2\r\n$1\r\na\r\n", Ok(None)),
            ("unknown type", b"?x\r\n", Err(Malformed)),
            ("bad length", b"$x\r\n", Err(Malformed)),
            ("empty line", b"\r\n", Err(Malformed)),
            ("huge length", b"$18446744073709551615\r\n", Err(Malformed)),
        ];
        for (case, bytes, want) in cases {
            assert_eq!(parse(bytes), want, "case {case:?}");
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&["AUTH", "p w"]),
            b"*2\r\n$4\r\nAUTH\r\n$3\r\np w\r\n".to_vec()
        );
    }

    #[test]
    fn info_fields_and_master_addresses() {
        let info = "# Replication\r\nrole:slave\r\nmaster_port:7001\r\nmaster_link_status:up\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master"), None, "a prefix is not a key");
        let bulk = |s: &str| Reply::Bulk(Some(s.into()));
        let cases = [
            (
                "ip and port",
                Reply::Array(Some(vec![bulk("127.0.0.1"), bulk("7001")])),
                Some(SocketAddr::from(([127, 0, 0, 1], 7001))),
            ),
            ("unknown master", Reply::Array(None), None),
            (
                "not a port",
                Reply::Array(Some(vec![bulk("127.0.0.1"), bulk("x")])),
                None,
            ),
            ("an error", Reply::Error("ERR".into()), None),
        ];
        for (case, reply, want) in cases {
            assert_eq!(master_addr(&reply), want, "case {case:?}");
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_none_in_time() {
        let free = crate::local::ports::any().expect("a free port");
        let started = std::time::Instant::now();
        assert_eq!(
            call(free, None, &["PING"], Duration::from_secs(1)).await,
            None
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
