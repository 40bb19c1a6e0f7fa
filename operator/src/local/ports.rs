//! Free loopback ports, probed by binding (the ports are released before use, so a
//! race with another process is possible but rare; a node that cannot bind crashes and
//! is restarted by the supervisor). A probe released is free again for the next probe,
//! so ports this process already handed out are passed in as `reserved`: two nodes given
//! one port would be one crash-looping node whose readiness the other one answers.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Whether `port` is free on loopback right now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((LOOPBACK, port)).is_ok()
}

/// Two consecutive free ports (client, admin) on loopback, neither of them `reserved`.
pub fn consecutive_pair(reserved: &HashSet<u16>) -> std::io::Result<(SocketAddr, SocketAddr)> {
    for _ in 0..100 {
        let first = TcpListener::bind((LOOPBACK, 0))?;
        let port = first.local_addr()?.port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        if reserved.contains(&port) || reserved.contains(&next) {
            continue;
        }
        if TcpListener::bind((LOOPBACK, next)).is_ok() {
            return Ok((
                SocketAddr::from((LOOPBACK, port)),
                SocketAddr::from((LOOPBACK, next)),
            ));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no two consecutive free ports found",
    ))
}

/// One free port on loopback.
pub fn any() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind((LOOPBACK, 0))?;
    listener.local_addr()
}

/// `n` distinct free ports on loopback (all probed at once, so none is handed out twice).
pub fn distinct(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((LOOPBACK, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(TcpListener::local_addr).collect()
}

/// The front door: `requested` when given (0 = any free port), else 8080 when free,
/// else any free port.
pub fn front(requested: Option<u16>) -> std::io::Result<SocketAddr> {
    match requested {
        Some(0) => any(),
        Some(port) if is_free(port) => Ok(SocketAddr::from((LOOPBACK, port))),
        Some(port) => Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("port {port} is in use: pick another --port (0 = any free port)"),
        )),
        None if is_free(8080) => Ok(SocketAddr::from((LOOPBACK, 8080))),
        None => any(),
    }
}

/// The API front door: the port after `front` when free, else any free port.
pub fn api_front(front: SocketAddr) -> std::io::Result<SocketAddr> {
    match front.port().checked_add(1) {
        Some(port) if is_free(port) => Ok(SocketAddr::from((LOOPBACK, port))),
        _ => any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_front_port_is_refused_with_a_hint() {
        let taken = TcpListener::bind((LOOPBACK, 0)).expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let err = front(Some(port)).expect_err("in use");
        assert!(err.to_string().contains("pick another --port"), "{err}");
        assert_ne!(front(Some(0)).expect("any").port(), 0);
    }

    #[test]
    fn distinct_ports_differ() {
        let mut ports: Vec<u16> = distinct(6)
            .expect("ports")
            .iter()
            .map(|a| a.port())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }

    #[test]
    fn pairs_are_consecutive() {
        let (client, admin) = consecutive_pair(&HashSet::new()).expect("ports");
        assert_eq!(admin.port(), client.port() + 1);
    }

    #[test]
    fn reserved_ports_are_never_handed_out() {
        // A third of all ports reserved: a pair that ignored them would hit one two times
        // in three; every pair must avoid them (the probes are released at once, so the
        // kernel may offer a handed-out port again: two local-mode nodes got one port).
        let reserved: HashSet<u16> = (0..=u16::MAX).filter(|p| p % 3 == 0).collect();
        for _ in 0..20 {
            let (client, admin) = consecutive_pair(&reserved).expect("ports");
            assert!(!reserved.contains(&client.port()), "{client} is reserved");
            assert!(!reserved.contains(&admin.port()), "{admin} is reserved");
        }
    }
}
