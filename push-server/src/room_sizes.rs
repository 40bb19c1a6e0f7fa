//! How many of this node's sockets are in each room, kept beside socketioxide's own room map.
//! The socket handlers write it, the delivery reads it: it lives below both.
//!
//! Why: a delivery reports how many sockets it reached (metrics, the single-node 202 body).
//! socketioxide can only answer that by materialising the room (`sockets()`: a lookup and an
//! `Arc` clone per member), which walked every room twice per publish and cost ~15 % of the
//! server's CPU in fan-out. Here a delivery reads one number.
//!
//! Every join and leave of push-server's sockets goes through [`RoomSizes`], under one lock,
//! so two handlers of the same socket running at once count a room once.

use std::{collections::HashMap, sync::Mutex};

use socketioxide::{adapter::Adapter, extract::SocketRef};

#[derive(Default)]
pub struct RoomSizes {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Sockets admitted to the namespace and not yet disconnected.
    sockets: usize,
    rooms: HashMap<String, usize>,
}

impl RoomSizes {
    /// Members of `room` on this node; `None` = the whole namespace.
    pub fn get(&self, room: Option<&str>) -> usize {
        self.counts
            .lock()
            .map(|counts| match room {
                None => counts.sockets,
                Some(room) => counts.rooms.get(room).copied().unwrap_or(0),
            })
            .unwrap_or(0)
    }

    /// Joins `rooms` from an event handler and counts the ones the socket was not in yet.
    /// A socket already uncounted by [`RoomSizes::disconnected`] joins nothing (socketioxide
    /// would keep it in the room forever).
    pub fn join<A: Adapter>(&self, socket: &SocketRef<A>, rooms: &[String]) {
        if let Ok(mut counts) = self.counts.lock() {
            join_counted(&mut counts, socket, rooms);
        }
    }

    /// Counts a socket the connect middleware admitted (it is not connected yet) and
    /// joins its first rooms. Pair: [`RoomSizes::disconnected`].
    pub fn admitted<A: Adapter>(&self, socket: &SocketRef<A>, rooms: &[String]) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.sockets += 1;
            join_counted(&mut counts, socket, rooms);
        }
    }

    /// Leaves `rooms` and uncounts the ones the socket was in.
    pub fn leave<A: Adapter>(&self, socket: &SocketRef<A>, rooms: &[String]) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let gone = select(rooms, &socket.rooms(), true);
        socket.leave(gone.clone());
        apply(&mut counts.rooms, &gone, Change::Leave);
    }

    /// Uncounts a disconnecting socket and its rooms. Called from the disconnect handler,
    /// which socketioxide runs before it removes the socket from its rooms.
    pub fn disconnected<A: Adapter>(&self, socket: &SocketRef<A>) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        socket.extensions.insert(Departed);
        counts.sockets = counts.sockets.saturating_sub(1);
        let rooms: Vec<String> = socket.rooms().into_iter().map(|r| r.into_owned()).collect();
        apply(&mut counts.rooms, &rooms, Change::Leave);
    }
}

/// Joins the rooms the socket is not in yet and counts them; the caller holds the lock.
fn join_counted<A: Adapter>(counts: &mut Counts, socket: &SocketRef<A>, rooms: &[String]) {
    // Not `socket.connected()`: a subscribe may run between CONNECT and the moment
    // socketioxide marks the socket connected.
    if socket.extensions.get::<Departed>().is_some() {
        return;
    }
    let new = select(rooms, &socket.rooms(), false);
    if new.is_empty() {
        return;
    }
    socket.join(new.clone());
    apply(&mut counts.rooms, &new, Change::Join);
}

/// Marks a socket whose disconnect was counted.
#[derive(Clone)]
struct Departed;

#[derive(Clone, Copy)]
enum Change {
    Join,
    Leave,
}

/// The requested rooms that are (`in_current`) or are not in `current`, each once.
fn select<R: AsRef<str>>(requested: &[String], current: &[R], in_current: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for room in requested {
        let is_in = current.iter().any(|c| c.as_ref() == room);
        if is_in == in_current && !out.contains(room) {
            out.push(room.clone());
        }
    }
    out
}

fn apply(sizes: &mut HashMap<String, usize>, rooms: &[String], change: Change) {
    for room in rooms {
        match change {
            Change::Join => *sizes.entry(room.clone()).or_insert(0) += 1,
            Change::Leave => {
                if let Some(n) = sizes.get_mut(room) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        sizes.remove(room);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// name, requested, current, not in current, in current
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );

    #[test]
    fn only_changes_are_counted() {
        let cases: [Case; 5] = [
            ("fresh", &["a", "b"], &[], &["a", "b"], &[]),
            ("already in one", &["a", "b"], &["a"], &["b"], &["a"]),
            ("duplicates in the request", &["a", "a"], &[], &["a"], &[]),
            ("all joined", &["a"], &["a", "z"], &[], &["a"]),
            ("empty request", &[], &["a"], &[], &[]),
        ];
        for (name, requested, current, want_new, want_gone) in cases {
            let requested = strings(requested);
            assert_eq!(
                select(&requested, current, false),
                strings(want_new),
                "{name}"
            );
            assert_eq!(
                select(&requested, current, true),
                strings(want_gone),
                "{name}"
            );
        }
    }

    #[test]
    fn sizes_follow_joins_and_leaves_and_never_go_negative() {
        let mut sizes = HashMap::new();
        apply(&mut sizes, &strings(&["a", "b"]), Change::Join);
        apply(&mut sizes, &strings(&["a"]), Change::Join);
        assert_eq!(sizes.get("a"), Some(&2));
        apply(&mut sizes, &strings(&["a", "b", "c"]), Change::Leave);
        assert_eq!(sizes.get("a"), Some(&1));
        assert_eq!(sizes.get("b"), None, "empty rooms are dropped");
        assert_eq!(sizes.get("c"), None, "leaving an unknown room is a no-op");
    }
}
