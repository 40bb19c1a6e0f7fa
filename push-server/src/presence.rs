//! Presence (server port, bearer token): who is in a room, cluster-wide —
//! `GET /api/v1/rooms/{room}/presence` answers `{"sockets", "users", "next", "partial",
//! "nodes", "asked"}`, and `GET /api/v1/users/{user}/presence` how many sockets a user
//! has. With Redis (`cluster_ask`) the asking node subscribes to a reply channel of its own, publishes
//! the question on the cluster's `<prefix>:presence` channel (PUBLISH answers how many
//! nodes listen: that many answers are awaited) and sums what comes back within
//! [`DEADLINE`]. A node that does not answer in time (stopped, overloaded) makes the
//! reply `partial: true`, never a wrong total presented as whole. A single node answers
//! alone.
//!
//! Users come sorted and paginated: at most `limit` (default [`DEFAULT_LIMIT`], at most
//! [`MAX_LIMIT`]) after `after`; `next` is the `after` of the next page. Each node sends
//! its first `limit` users after `after`, which is all the merge needs for the page.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use push_contract::socket::user_room;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{
    adapter::NodeSockets,
    api_token::{refusal, refuse},
    auth::identity::MAX_ROOM_LEN,
    disconnect::MAX_ID_BYTES,
    redis_link::RedisLink,
    state::SharedState,
};

/// How long the asking node waits for the others' answers.
pub const DEADLINE: Duration = Duration::from_secs(1);
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1_000;
/// Presence questions one node asks at once; more are refused (503), not queued.
const MAX_IN_FLIGHT: usize = 32;

static IN_FLIGHT: Semaphore = Semaphore::const_new(MAX_IN_FLIGHT);

/// The question every node answers (also the channel's payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub room: String,
    #[serde(default)]
    pub after: Option<String>,
    pub limit: usize,
    /// Where to publish the answer.
    pub reply: String,
}

/// One node's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub sockets: usize,
    /// Its first `limit` distinct users after `after`, sorted.
    pub users: Vec<String>,
    /// It has more users after those.
    pub more: bool,
}

/// This node's answer to `question` from its sockets in the room.
pub fn local_answer(sockets: &dyn NodeSockets, question: &Question) -> Answer {
    let (count, users) = sockets.room_members(&question.room);
    page(count, users, question.after.as_deref(), question.limit)
}

fn page(sockets: usize, users: Vec<String>, after: Option<&str>, limit: usize) -> Answer {
    let distinct: BTreeSet<String> = users
        .into_iter()
        .filter(|u| after.is_none_or(|a| u.as_str() > a))
        .collect();
    let more = distinct.len() > limit;
    Answer {
        sockets,
        users: distinct.into_iter().take(limit).collect(),
        more,
    }
}

/// The cluster's answer: the nodes' answers summed, one page of users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presence {
    pub sockets: usize,
    pub users: Vec<String>,
    /// `after` for the next page (`None`: this is the last).
    pub next: Option<String>,
    /// Some node asked did not answer in time: the figures are lower bounds.
    pub partial: bool,
    /// Nodes that answered, and nodes asked.
    pub nodes: usize,
    pub asked: usize,
}

pub fn merge(answers: &[Answer], asked: usize, limit: usize) -> Presence {
    let users: BTreeSet<&String> = answers.iter().flat_map(|a| &a.users).collect();
    let more = answers.iter().any(|a| a.more) || users.len() > limit;
    let users: Vec<String> = users.into_iter().take(limit).cloned().collect();
    Presence {
        sockets: answers.iter().map(|a| a.sockets).sum(),
        next: more.then(|| users.last().cloned()).flatten(),
        users,
        partial: answers.len() < asked,
        nodes: answers.len(),
        asked,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn room_presence(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(room): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let params = match params {
        Ok(Query(params)) => params,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if room.is_empty() || room.len() > MAX_ROOM_LEN {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("the room must be 1 to {MAX_ROOM_LEN} bytes"),
        );
    }
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("limit must be at most {MAX_LIMIT}"),
        );
    }
    match ask(&state, room, params.after, limit).await {
        Ok(presence) => (StatusCode::OK, Json(presence)).into_response(),
        Err(unanswered) => refuse(StatusCode::SERVICE_UNAVAILABLE, &unanswered),
    }
}

pub async fn user_presence(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    if user.is_empty() || user.len() > MAX_ID_BYTES {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("the user must be 1 to {MAX_ID_BYTES} bytes"),
        );
    }
    match ask(&state, user_room(&user), None, 0).await {
        Ok(p) => (
            StatusCode::OK,
            Json(serde_json::json!({
                "user": user, "sockets": p.sockets, "partial": p.partial,
                "nodes": p.nodes, "asked": p.asked,
            })),
        )
            .into_response(),
        Err(unanswered) => refuse(StatusCode::SERVICE_UNAVAILABLE, &unanswered),
    }
}

/// The cluster's answer for a room, or why there is none (the service is unavailable:
/// starting, too many questions in flight, Redis unreachable).
pub async fn ask(
    state: &SharedState,
    room: String,
    after: Option<String>,
    limit: usize,
) -> Result<Presence, String> {
    let Some(started) = state.started.get() else {
        return Err("starting".into());
    };
    let Ok(_permit) = IN_FLIGHT.try_acquire() else {
        return Err(format!(
            "{MAX_IN_FLIGHT} presence questions in flight on this node; retry"
        ));
    };
    let reply =
        crate::cluster_ask::reply_channel(&state.keys.presence_channel(), &state.config.node_id);
    let question = Question {
        room,
        after,
        limit,
        reply,
    };
    let Some(link) = &started.link else {
        let answer = local_answer(started.sockets.as_ref(), &question);
        return Ok(merge(&[answer], 1, limit));
    };
    let unavailable = |e: &dyn std::fmt::Display| format!("redis: {e}: no node was asked; retry");
    let payload = serde_json::to_vec(&question).map_err(|e| unavailable(&e))?;
    let (answers, asked) = crate::cluster_ask::ask::<Answer>(
        link,
        &state.keys.presence_channel(),
        &question.reply,
        payload,
        DEADLINE,
    )
    .await
    .map_err(|e| unavailable(&e))?;
    Ok(merge(&answers, asked, limit))
}

/// Answers the cluster's presence questions until `stop`.
pub async fn listen(
    link: RedisLink,
    channel: String,
    sockets: Arc<dyn NodeSockets>,
    stop: CancellationToken,
) {
    crate::cluster_ask::answer_until(link, channel, stop, |payload| {
        let question = match serde_json::from_slice::<Question>(payload) {
            Ok(q) if q.limit <= MAX_LIMIT => q,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "a presence question this node cannot read: ignored");
                return None;
            }
        };
        let answer = local_answer(sockets.as_ref(), &question);
        Some((question.reply, serde_json::to_vec(&answer).ok()?))
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_node_pages_its_distinct_users_after_the_cursor() {
        let all = users(&["cy", "ann", "bo", "ann", "dee"]);
        assert_eq!(
            page(5, all.clone(), None, 2),
            Answer {
                sockets: 5,
                users: users(&["ann", "bo"]),
                more: true
            }
        );
        assert_eq!(
            page(5, all.clone(), Some("bo"), 2),
            Answer {
                sockets: 5,
                users: users(&["cy", "dee"]),
                more: false
            }
        );
        assert_eq!(page(5, all, None, 0).users, Vec::<String>::new());
    }

    #[test]
    fn answers_sum_their_sockets_merge_one_page_and_say_when_partial() {
        let a = page(3, users(&["ann", "cy", "eve"]), None, 2); // ann, cy, more
        let b = page(2, users(&["bo", "cy"]), None, 2); // bo, cy
        let whole = merge(&[a.clone(), b.clone()], 2, 2);
        assert_eq!(whole.sockets, 5);
        assert_eq!(whole.users, users(&["ann", "bo"]));
        assert_eq!(whole.next.as_deref(), Some("bo"));
        assert!(!whole.partial);
        let next = merge(
            &[
                page(3, users(&["ann", "cy", "eve"]), Some("bo"), 2),
                page(2, users(&["bo", "cy"]), Some("bo"), 2),
            ],
            2,
            2,
        );
        assert_eq!(
            (next.users, next.next),
            (users(&["cy", "eve"]), None),
            "the second page, and the last"
        );
        let partial = merge(&[a], 3, 2);
        assert!(partial.partial && partial.nodes == 1 && partial.asked == 3);
    }
}
