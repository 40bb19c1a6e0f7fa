//! A question to every node of the cluster over Redis pub/sub, and the answers that come
//! back within a deadline (presence, the Admin UI's snapshot). The asking node subscribes
//! to a reply channel of its own, publishes the question on the cluster's channel (PUBLISH
//! answers how many nodes listen: that many answers are awaited) and keeps what arrives
//! before the deadline; fewer answers than nodes asked means the reply is partial.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use socketioxide_redis::drivers::Driver;
use tokio_util::sync::CancellationToken;

use crate::redis_link::RedisLink;

/// Questions waiting on one answering node, and answers on one asking node.
const CHANNEL_BUFFER: usize = 256;

static NEXT_REPLY: AtomicU64 = AtomicU64::new(0);

/// A reply channel no other question uses: `<channel>:<node>:<n>`.
pub fn reply_channel(channel: &str, node_id: &str) -> String {
    format!(
        "{channel}:{node_id}:{}",
        NEXT_REPLY.fetch_add(1, Ordering::Relaxed)
    )
}

/// Publishes `question` (which names `reply`) on `channel` and gathers the answers that
/// arrive on `reply` within `deadline`: (answers, nodes asked).
pub async fn ask<A: DeserializeOwned>(
    link: &RedisLink,
    channel: &str,
    reply: &str,
    question: Vec<u8>,
    deadline: Duration,
) -> Result<(Vec<A>, usize), redis::RedisError> {
    let mut answers_in = link.subscribe(reply.to_owned(), CHANNEL_BUFFER).await?;
    let published: Result<usize, _> = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(question)
        .query_async(&mut link.connection())
        .await;
    let asked = match published {
        Ok(asked) => asked,
        Err(e) => {
            let _ = link.unsubscribe(reply.to_owned()).await;
            return Err(e);
        }
    };
    let mut answers = Vec::with_capacity(asked);
    let deadline = tokio::time::sleep(deadline);
    tokio::pin!(deadline);
    while answers.len() < asked {
        tokio::select! {
            _ = &mut deadline => break,
            item = answers_in.next() => {
                let Some((_, payload)) = item else { break };
                match serde_json::from_slice::<A>(&payload) {
                    Ok(answer) => answers.push(answer),
                    Err(e) => tracing::warn!(channel, error = %e, "an answer this node cannot read: ignored"),
                }
            }
        }
    }
    let _ = link.unsubscribe(reply.to_owned()).await;
    Ok((answers, asked))
}

/// Answers the questions published on `channel` until `stop`: `answer` turns a question
/// into (its reply channel, the answer), or `None` to ignore it.
pub async fn answer_until(
    link: RedisLink,
    channel: String,
    stop: CancellationToken,
    answer: impl Fn(&[u8]) -> Option<(String, Vec<u8>)>,
) {
    let Some(mut questions) = link.subscribed_until(&channel, CHANNEL_BUFFER, &stop).await else {
        return;
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            item = questions.next() => {
                let Some((_, payload)) = item else { break };
                let Some((reply, body)) = answer(&payload) else { continue };
                let sent: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg(&reply)
                    .arg(body)
                    .query_async(&mut link.connection())
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(channel, error = %e, "an answer was not sent");
                }
            }
        }
    }
    let _ = link.unsubscribe(channel).await;
}
