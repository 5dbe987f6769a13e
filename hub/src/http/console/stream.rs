//! `GET /console/api/trace`: the live trace as Server-Sent Events, one JSON event per `data:`
//! line, filtered by hub, group, user and connection. Payloads only with `payloads=true` and
//! when the configuration allows them. A watcher that falls behind is told how many events it
//! missed (`{"kind":"lagged","missed":N}`) and goes on; the stream ends when the hub shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::Console;
use super::api::Operator;
use crate::http::error::ApiError;
use crate::livetrace::{TraceEvent, Watcher};

/// Watchers one node serves at once.
const MAX_WATCHERS: usize = 16;
/// Longest filter value.
const MAX_FILTER: usize = 256;

/// The filters of a watch; each matches exactly, a missing one matches all.
#[derive(Deserialize, Default)]
pub(super) struct TraceQuery {
    hub: Option<String>,
    group: Option<String>,
    user: Option<String>,
    connection: Option<String>,
    payloads: Option<bool>,
}

impl TraceQuery {
    fn check(&self) -> Result<(), ApiError> {
        for (name, v) in [
            ("hub", &self.hub),
            ("group", &self.group),
            ("user", &self.user),
            ("connection", &self.connection),
        ] {
            if v.as_ref().is_some_and(|v| v.len() > MAX_FILTER) {
                return Err(ApiError::bad_request(format!(
                    "'{name}' may be at most {MAX_FILTER} bytes"
                )));
            }
        }
        Ok(())
    }

    fn matches(&self, e: &TraceEvent) -> bool {
        let same = |want: &Option<String>, got: Option<&str>| {
            want.as_deref()
                .filter(|w| !w.is_empty())
                .is_none_or(|w| got == Some(w))
        };
        same(
            &self.hub.as_ref().map(|h| h.to_ascii_lowercase()),
            Some(&e.hub.to_ascii_lowercase()),
        ) && same(&self.group, e.group.as_deref())
            && same(&self.user, e.user.as_deref())
            && same(&self.connection, e.connection.as_deref())
    }
}

/// `GET /console/api/trace?hub=&group=&user=&connection=&payloads=`
pub(super) async fn trace(
    _: Operator,
    State(c): State<Console>,
    q: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return ApiError::bad_request("'payloads' must be true or false").into_response();
    };
    if let Err(e) = q.check() {
        return e.into_response();
    }
    if c.node.trace.watchers() >= MAX_WATCHERS {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServerBusy",
            format!("this node serves {MAX_WATCHERS} live trace watchers, its limit"),
        )
        .into_response();
    }
    let watcher = c.node.trace.watch(q.payloads == Some(true));
    let hello = serde_json::json!({
        "kind": "watching",
        "node": c.node.config.node_id,
        "payloads": watcher.payloads,
    });
    let state = Watch {
        watcher,
        filter: q,
        shutdown: c.node.shutdown.clone(),
        hello: Some(hello.to_string()),
    };
    let events = stream::unfold(state, |mut w| async move {
        let data = w.next().await?;
        Some((Ok::<_, Infallible>(Event::default().data(data)), w))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct Watch {
    watcher: Watcher,
    filter: TraceQuery,
    shutdown: tokio_util::sync::CancellationToken,
    hello: Option<String>,
}

impl Watch {
    /// The next event to send, as JSON; `None` ends the stream.
    async fn next(&mut self) -> Option<String> {
        if let Some(h) = self.hello.take() {
            return Some(h);
        }
        loop {
            let got = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                got = self.watcher.rx.recv() => got,
            };
            match got {
                Ok(e) if self.filter.matches(&e) => return Some(self.shown(&e)),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    return Some(serde_json::json!({"kind": "lagged", "missed": n}).to_string());
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn shown(&self, e: &Arc<TraceEvent>) -> String {
        if e.payload.is_some() && !self.watcher.payloads {
            let mut e = (**e).clone();
            e.payload = None;
            return serde_json::to_string(&e).unwrap_or_default();
        }
        serde_json::to_string(&**e).unwrap_or_default()
    }
}
