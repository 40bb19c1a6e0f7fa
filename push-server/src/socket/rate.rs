//! Token buckets: the inbound event budget per socket (one socket flooding `subscribe`,
//! ~77k events/s, delayed every other client of its node by up to ~40 s; now excess
//! events get an error ack at once, and a socket that keeps flooding is disconnected),
//! the node's handshake rate (`gate`), and the presence events' rate per room
//! ([`RoomRates`]).

use std::{collections::HashMap, sync::Mutex, time::Instant};

/// What to do with one inbound event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over budget: answer with an error, do no work.
    Refuse,
    /// Over budget for too long: disconnect the socket.
    Disconnect,
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: f64::from(per_second.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Whether the bucket would be full at `now` (no token taken for a while).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.burst
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A socket's event budget: a [`TokenBucket`]; `disconnect_after` refusals in a row
/// end the socket.
#[derive(Debug, Clone)]
pub struct EventBudget {
    bucket: TokenBucket,
    disconnect_after: u32,
    refused_in_a_row: u32,
}

impl EventBudget {
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(per_second, burst, now),
            // A flood of refusals this long (in events) is not a client's retry loop.
            disconnect_after: burst.max(1).saturating_mul(10).max(100),
            refused_in_a_row: 0,
        }
    }

    pub fn take(&mut self, now: Instant) -> Verdict {
        if self.bucket.take(now) {
            self.refused_in_a_row = 0;
            return Verdict::Allow;
        }
        self.refused_in_a_row = self.refused_in_a_row.saturating_add(1);
        if self.refused_in_a_row >= self.disconnect_after {
            Verdict::Disconnect
        } else {
            Verdict::Refuse
        }
    }
}

/// Rooms whose rate one node tracks at once; a room beyond (all tracked ones busy right
/// now) gets nothing until one is idle again.
pub const MAX_TRACKED_ROOMS: usize = 10_000;

/// A [`TokenBucket`] per room (`per_second`, bursts of twice that), for at most
/// [`MAX_TRACKED_ROOMS`] rooms.
pub struct RoomRates {
    per_second: u32,
    rooms: Mutex<HashMap<String, TokenBucket>>,
}

impl RoomRates {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from the room's bucket.
    pub fn take(&self, room: &str, now: Instant) -> bool {
        let Ok(mut rooms) = self.rooms.lock() else {
            return false;
        };
        if !rooms.contains_key(room) && rooms.len() >= MAX_TRACKED_ROOMS {
            // Forget the rooms whose bucket has refilled: they are idle.
            rooms.retain(|_, bucket| !bucket.is_full(now));
            if rooms.len() >= MAX_TRACKED_ROOMS {
                return false;
            }
        }
        rooms
            .entry(room.to_owned())
            .or_insert_with(|| {
                TokenBucket::new(self.per_second, self.per_second.saturating_mul(2), now)
            })
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refuse_then_refill_then_disconnect_on_a_sustained_flood() {
        let start = Instant::now();
        let mut budget = EventBudget::new(10, 5, start);
        let verdicts: Vec<Verdict> = (0..6).map(|_| budget.take(start)).collect();
        assert_eq!(verdicts[..5], [Verdict::Allow; 5], "the burst");
        assert_eq!(verdicts[5], Verdict::Refuse, "over the burst");
        assert_eq!(
            budget.take(start + Duration::from_millis(100)),
            Verdict::Allow,
            "refilled at 10/s"
        );
        let flood: Vec<Verdict> = (0..100)
            .map(|_| budget.take(start + Duration::from_millis(100)))
            .collect();
        assert_eq!(flood[..99], [Verdict::Refuse; 99]);
        assert_eq!(flood[99], Verdict::Disconnect, "100 refusals in a row");
    }

    #[test]
    fn a_steady_client_under_the_rate_is_never_refused() {
        let start = Instant::now();
        let mut budget = EventBudget::new(20, 40, start);
        for i in 0..1000u64 {
            assert_eq!(
                budget.take(start + Duration::from_millis(i * 60)),
                Verdict::Allow,
                "event {i}"
            );
        }
    }

    #[test]
    fn each_room_has_its_own_rate_and_the_tracked_rooms_are_bounded() {
        let events = RoomRates::new(2);
        let start = Instant::now();
        let burst = (0..5).filter(|_| events.take("a", start)).count();
        assert_eq!(burst, 4, "bursts of twice the rate");
        assert!(events.take("b", start), "another room has its own");
        assert!(
            events.take("a", start + Duration::from_millis(500)),
            "refilled"
        );
        let many = RoomRates::new(1);
        for n in 0..MAX_TRACKED_ROOMS {
            assert!(many.take(&format!("r{n}"), start));
        }
        assert!(
            !many.take("one-more", start),
            "every tracked room busy: no event"
        );
        assert!(
            many.take("one-more", start + Duration::from_secs(5)),
            "idle rooms are forgotten"
        );
    }
}
