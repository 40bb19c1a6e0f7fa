//! What a reconnecting client gets, decided from its session, its offset and one
//! atomic read of its history streams: pure functions, the socket layer applies them.

use super::{
    Offset,
    script::{Snapshot, StreamRead},
    session::Session,
};
use push_contract::socket::user_room;

/// A stream a recovering socket reads: one of its rooms, or the namespace broadcasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `None`: the namespace's broadcasts.
    pub room: Option<String>,
    /// Entries after this position are owed to the client.
    pub after: Offset,
}

/// The streams to read for `session`, from the client's `offset` (the last message it
/// got) or, for what it joined later, from where it joined.
pub fn sources(session: &Session, offset: Option<Offset>) -> Vec<Source> {
    let from = |joined: Offset| offset.map_or(joined, |o| o.max(joined));
    let mut sources = vec![Source {
        room: None,
        after: from(session.connected_at),
    }];
    if let Some(user) = &session.user {
        sources.push(Source {
            room: Some(user_room(user)),
            after: from(session.connected_at),
        });
    }
    sources.extend(session.rooms.iter().map(|(room, joined)| Source {
        room: Some(room.clone()),
        after: from(*joined),
    }));
    sources
}

/// Why part of what a client missed is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Trimmed by `maxMessages` or `ttlSeconds` while the client was away.
    Trimmed,
    /// The stream expired (nothing newer than the TTL), or expired and was created
    /// again, after the client had last received everything.
    Expired,
    /// More was missed than one recovery replays (see `script::Budget`).
    TooMuch,
}

/// The decision for one recovering socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// What it missed in the streams that still hold all of it, oldest first:
    /// (offset, channel form).
    pub replay: Vec<(Offset, Vec<u8>)>,
    /// Streams whose continuity broke (`None`: the broadcasts), and why.
    pub broken: Vec<(Option<String>, Gap)>,
}

impl Recovery {
    pub fn complete(&self) -> bool {
        self.broken.is_empty()
    }

    /// Nothing replayed, every source broken by `gap`.
    pub fn all_broken(sources: Vec<Source>, gap: Gap) -> Self {
        Self {
            replay: Vec::new(),
            broken: sources.into_iter().map(|s| (s.room, gap)).collect(),
        }
    }
}

/// Decides per stream whether it still holds everything after the client's position.
/// `sources` and `snapshot.streams` are in the same order. `received_through_ms` (the
/// session's `a`): Redis time up to which the client had received everything, so a
/// quiet client is judged by how long it was away, not by how old its last message is.
pub fn decide(
    sources: &[Source],
    snapshot: Snapshot,
    ttl_ms: u64,
    received_through_ms: Option<u64>,
) -> Recovery {
    let mut recovery = Recovery::default();
    for (source, read) in sources.iter().zip(snapshot.streams) {
        // Nothing after `since` (ms) can be missing from the client: it was in the stream
        // from `after`, and had received everything up to `received_through_ms`.
        let since = source.after.ms.max(received_through_ms.unwrap_or(0));
        // A message after `since` kept its stream alive for `ttl` at least: only a
        // stream gone (or recreated) more than `ttl` after `since` can have lost one.
        let lost_before = |at_ms: u64| since.saturating_add(ttl_ms) < at_ms;
        match read {
            StreamRead::Missing if lost_before(snapshot.now_ms) => {
                recovery.broken.push((source.room.clone(), Gap::Expired));
            }
            StreamRead::Missing => {}
            StreamRead::OverBudget => recovery.broken.push((source.room.clone(), Gap::TooMuch)),
            StreamRead::Present { trimmed, .. } if trimmed > source.after => {
                recovery.broken.push((source.room.clone(), Gap::Trimmed));
            }
            StreamRead::Present { created, .. }
                if created > source.after && lost_before(created.ms) =>
            {
                recovery.broken.push((source.room.clone(), Gap::Expired));
            }
            StreamRead::Present { entries, .. } => recovery.replay.extend(entries),
        }
    }
    // Each message is in one stream only: a sort merges them.
    recovery.replay.sort_by_key(|(offset, _)| *offset);
    recovery
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn at(ms: u64) -> Offset {
        Offset { ms, seq: 0 }
    }

    #[test]
    fn sources_start_at_the_later_of_the_offset_and_the_join() {
        let session = Session {
            user: Some("u".into()),
            connected_at: at(10),
            rooms: BTreeMap::from([("early".into(), at(12)), ("late".into(), at(40))]),
            received_through_ms: None,
        };
        let got = sources(&session, Some(at(30)));
        let want = [
            (None, 30),
            (Some("user:u"), 30),
            (Some("early"), 30),
            (Some("late"), 40),
        ];
        assert_eq!(got.len(), want.len());
        for (source, (room, after)) in got.iter().zip(want) {
            assert_eq!(source.room.as_deref(), room);
            assert_eq!(source.after, at(after));
        }
        let no_events_yet = sources(&session, None);
        assert_eq!(no_events_yet[0].after, at(10), "from the connect");
        assert_eq!(no_events_yet[2].after, at(12), "from the join");
        let anonymous = Session::default();
        assert_eq!(sources(&anonymous, None).len(), 1, "broadcasts only");
    }

    #[test]
    fn each_stream_is_whole_trimmed_or_expired() {
        let source = |ms| Source {
            room: Some(format!("r{ms}")),
            after: at(ms),
        };
        let entry = |ms: u64| (at(ms), ms.to_string().into_bytes());
        let present = |trimmed, created, entries: Vec<u64>| StreamRead::Present {
            trimmed: at(trimmed),
            created: at(created),
            entries: entries.into_iter().map(entry).collect(),
        };
        // Now 10,000 ms, ttl 1,000 ms, the log's end at 9,999.
        // (name, client position, received through, what the read found, the gap,
        // what is replayed)
        type Case = (
            &'static str,
            u64,
            Option<u64>,
            StreamRead,
            Option<Gap>,
            Vec<u64>,
        );
        let cases: Vec<Case> = vec![
            (
                "intact",
                100,
                None,
                present(50, 10, vec![150]),
                None,
                vec![150],
            ),
            (
                "trimmed up to the position: still whole",
                100,
                None,
                present(100, 10, vec![]),
                None,
                vec![],
            ),
            (
                "trimmed past the position",
                100,
                None,
                present(101, 10, vec![150]),
                Some(Gap::Trimmed),
                vec![],
            ),
            (
                "missing, position within the ttl",
                9_500,
                None,
                StreamRead::Missing,
                None,
                vec![],
            ),
            (
                "missing, position older than the ttl",
                8_999,
                None,
                StreamRead::Missing,
                Some(Gap::Expired),
                vec![],
            ),
            (
                "missing, an old position but a quiet client that was away briefly",
                100,
                Some(9_500),
                StreamRead::Missing,
                None,
                vec![],
            ),
            (
                "missing, the client was away longer than the ttl",
                100,
                Some(8_000),
                StreamRead::Missing,
                Some(Gap::Expired),
                vec![],
            ),
            (
                "recreated more than a ttl after the position: an earlier stream may have expired",
                100,
                None,
                present(0, 9_000, vec![9_000]),
                Some(Gap::Expired),
                vec![],
            ),
            (
                "recreated within a ttl of what the client had received: whole",
                100,
                Some(8_500),
                present(0, 9_000, vec![9_000]),
                None,
                vec![9_000],
            ),
            (
                "created before the position: whole",
                9_100,
                None,
                present(0, 9_000, vec![9_200]),
                None,
                vec![9_200],
            ),
        ];
        for (name, after, received_through, read, gap, replayed) in cases {
            let snapshot = Snapshot {
                now_ms: 10_000,
                log_end: at(9_999),
                streams: vec![read],
            };
            let recovery = decide(&[source(after)], snapshot, 1_000, received_through);
            assert_eq!(recovery.broken.first().map(|b| b.1), gap, "case {name}");
            let got: Vec<u64> = recovery.replay.iter().map(|(o, _)| o.ms).collect();
            assert_eq!(got, replayed, "case {name}");
        }
    }

    #[test]
    fn replay_merges_streams_in_offset_order() {
        let sources = [
            Source {
                room: None,
                after: at(0),
            },
            Source {
                room: Some("a".into()),
                after: at(0),
            },
        ];
        let snapshot = Snapshot {
            now_ms: 100,
            log_end: at(9),
            streams: vec![
                StreamRead::Present {
                    trimmed: at(0),
                    created: at(0),
                    entries: vec![(at(2), b"b2".to_vec()), (at(5), b"b5".to_vec())],
                },
                StreamRead::Present {
                    trimmed: at(0),
                    created: at(0),
                    entries: vec![(at(1), b"a1".to_vec()), (at(3), b"a3".to_vec())],
                },
            ],
        };
        let recovery = decide(&sources, snapshot, 1_000, None);
        assert!(recovery.complete());
        let order: Vec<&[u8]> = recovery.replay.iter().map(|(_, m)| m.as_slice()).collect();
        assert_eq!(order, [b"a1", b"b2", b"a3", b"b5"]);
    }
}
