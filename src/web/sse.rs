//! `GET /v1/namespaces/{ns}/watch` as Server-Sent Events: Watch's guarantees (no change
//! missed, duplicated or reordered; OUT_OF_RANGE when compacted; a reader that stops reading
//! cut off) in a form a browser's `EventSource` follows and resumes.
//!
//! Events: `snapshot` opens a listing from revision 0 (a client clears what it holds);
//! `put` / `delete` carry one `WatchEvent` each; `bookmark` says every change up to its
//! revision was sent; `error` carries the status the watch ended with, then the stream ends.
//! `id:` is set on every event after which resuming is safe — each change outside a snapshot,
//! each bookmark — so a reconnect's `Last-Event-ID` resumes exactly; inside a snapshot it is
//! left unset and a reconnect lists again.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use http::HeaderMap;
use tonic::Status;

use super::error::{ApiError, body};
use super::json::to_value;
use super::{HttpApi, params};
use crate::api::ops::{self, WatchStream};
use crate::proto;
use crate::proto::watch_event::Type;
use crate::security::limits::{CallKind, Slot};

pub async fn watch(
    State(api): State<Arc<HttpApi>>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    headers: HeaderMap,
    Path(namespace): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?"));
    let admitted = api.admit(&headers, Some(peer), CallKind::Watch)?;
    let r = params::watch(namespace, query.as_deref(), last_event_id)?;
    let snapshot = r.start_revision == 0;
    let changes = ops::watch(&api.registry, &admitted.caller, admitted.revocation, r).await?;
    let events = events(changes, snapshot, admitted.slot);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// What one step of the stream holds: the watch (until it ends), whether it is inside its
/// snapshot, and the call's slot in the access counts.
struct Following {
    changes: Option<WatchStream>,
    in_snapshot: bool,
    _slot: Slot,
}

/// The watch's messages as SSE events, opened by `snapshot` when it lists from revision 0.
fn events(
    changes: WatchStream,
    snapshot: bool,
    slot: Slot,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let opening = snapshot.then(|| Ok(Event::default().event("snapshot").data("{}")));
    let state = Following {
        changes: Some(changes),
        in_snapshot: snapshot,
        _slot: slot,
    };
    let following = stream::unfold(state, |mut st| async move {
        let next = st.changes.as_mut()?.next().await?;
        let batch = match next {
            Ok(message) => message_events(message, &mut st.in_snapshot),
            Err(status) => {
                st.changes = None;
                vec![error_event(&status)]
            }
        };
        Some((stream::iter(batch.into_iter().map(Ok)), st))
    })
    .flatten();
    stream::iter(opening).chain(following)
}

/// One Watch message as its events.
fn message_events(message: proto::WatchResponse, in_snapshot: &mut bool) -> Vec<Event> {
    if message.events.is_empty() {
        *in_snapshot = false;
        let revision = message.bookmark_revision.to_string();
        return vec![
            Event::default()
                .event("bookmark")
                .id(revision.clone())
                .data(serde_json::json!({ "revision": revision }).to_string()),
        ];
    }
    message
        .events
        .iter()
        .map(|e| {
            let name = match Type::try_from(e.r#type) {
                Ok(Type::Delete) => "delete",
                _ => "put",
            };
            let event = Event::default().event(name).data(to_value(e).to_string());
            match *in_snapshot {
                true => event,
                false => event.id(e.revision.to_string()),
            }
        })
        .collect()
}

/// How the watch ended, as the last event.
fn error_event(status: &Status) -> Event {
    Event::default()
        .event("error")
        .data(body(status).to_string())
}
