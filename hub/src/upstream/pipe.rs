//! The per-connection lane for blocking user events.
//!
//! A session must keep writing its outbox while an upstream call is in flight, so it never
//! awaits the call itself: it hands the event to this connection's worker task (started on
//! the first event) through a bounded queue and goes on. The worker sends events one at a
//! time, in order, and feeds each event's replies (server messages, acks, invoke responses, or
//! a request to drop the connection) back to the session as one batch through a second bounded
//! channel, so the session writes them with a single flush.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nerve_protocol::{ErrorBody, ErrorName, Payload, ServerFrame};

use super::{EventContext, Upstream, UpstreamError};

/// A user event waiting for the upstream.
#[derive(Debug)]
pub enum Job {
    /// An `event` frame.
    Event {
        /// Event name.
        event: String,
        /// Ack id to answer once handled.
        ack_id: Option<u64>,
        /// The data.
        payload: Payload,
    },
    /// An `invoke` frame, answered with `invokeResponse`.
    Invoke {
        /// The client's invocation id.
        invocation_id: String,
        /// Event name.
        event: String,
        /// The data.
        payload: Payload,
    },
    /// A frame of a simple client in sendEvent mode (the `message` event).
    Message(Payload),
}

impl Job {
    /// Payload bytes this job holds, counted against the lane's byte budget.
    pub fn size(&self) -> usize {
        match self {
            Job::Event { payload, .. } | Job::Invoke { payload, .. } | Job::Message(payload) => {
                payload.size()
            }
        }
    }
}

/// What the worker asks the session to do.
#[derive(Debug)]
pub enum PipeReply {
    /// Write this control frame (ack, invokeResponse) in the connection's protocol.
    Frame(ServerFrame<'static>),
    /// Write this payload as a server message (numbered on reliable connections, raw for
    /// simple clients).
    Deliver(Payload),
    /// Send `disconnected` with this reason and close with 1008.
    Close(String),
}

/// Reply batches held per connection before the worker waits for the session.
const REPLY_CAPACITY: usize = 16;

struct Lane {
    jobs: flume::Sender<Job>,
    replies: flume::Receiver<Vec<PipeReply>>,
    /// Payload bytes queued and not yet taken by the worker.
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// A session's end of its upstream lane; allocates nothing until the first event.
#[derive(Default)]
pub struct EventPipe {
    lane: Option<Lane>,
}

impl EventPipe {
    /// An idle pipe.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a job without waiting; gives it back when the lane is full (in events or bytes).
    pub fn submit(
        &mut self,
        up: &Arc<Upstream>,
        ctx: EventContext,
        job: Job,
    ) -> Result<(), Box<Job>> {
        let lane = self.lane.get_or_insert_with(|| {
            let s = up.settings();
            let (jtx, jrx) = flume::bounded(s.max_pending_per_connection);
            let (rtx, rrx) = flume::bounded(REPLY_CAPACITY);
            let queued_bytes = Arc::new(AtomicUsize::new(0));
            // The worker logs inside the session's span (connection id, hub, user).
            let work = worker(up.clone(), ctx, jrx, rtx, queued_bytes.clone());
            tokio::spawn(tracing::Instrument::in_current_span(work));
            Lane {
                jobs: jtx,
                replies: rrx,
                queued_bytes,
                max_bytes: s.max_pending_bytes_per_connection,
            }
        });
        let size = job.size();
        let queued = lane.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
        // One job is always admitted into an empty lane, whatever its size.
        if queued > lane.max_bytes && queued != size {
            lane.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(Box::new(job));
        }
        lane.jobs.try_send(job).map_err(|e| {
            lane.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            Box::new(e.into_inner())
        })
    }

    /// The replies to the next handled event; pending forever while there are none.
    pub async fn next(&self) -> Vec<PipeReply> {
        match &self.lane {
            Some(lane) => match lane.replies.recv_async().await {
                Ok(r) => r,
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

async fn worker(
    up: Arc<Upstream>,
    ctx: EventContext,
    jobs: flume::Receiver<Job>,
    replies: flume::Sender<Vec<PipeReply>>,
    queued_bytes: Arc<AtomicUsize>,
) {
    while let Ok(job) = jobs.recv_async().await {
        queued_bytes.fetch_sub(job.size(), Ordering::Relaxed);
        let out = handle(&up, &ctx, job).await;
        let closing = out.iter().any(|r| matches!(r, PipeReply::Close(_)));
        if out.is_empty() {
            continue;
        }
        if replies.send_async(out).await.is_err() || closing {
            return;
        }
    }
}

async fn handle(up: &Upstream, ctx: &EventContext, job: Job) -> Vec<PipeReply> {
    let server = PipeReply::Deliver;
    match job {
        Job::Event {
            event,
            ack_id,
            payload,
        } => match up.user_event(ctx, &event, &payload).await {
            Ok(reply) => {
                let mut out: Vec<PipeReply> = reply.into_iter().map(server).collect();
                if let Some(id) = ack_id {
                    out.push(PipeReply::Frame(ServerFrame::ack(id, Ok(()))));
                }
                out
            }
            Err(e) => {
                let mut out = Vec::new();
                if let Some(id) = ack_id {
                    out.push(PipeReply::Frame(ServerFrame::ack(id, Err(error_body(&e)))));
                }
                out.push(PipeReply::Close(format!("Event '{event}' failed: {e}")));
                out
            }
        },
        Job::Invoke {
            invocation_id,
            event,
            payload,
        } => {
            let frame = match up.user_event(ctx, &event, &payload).await {
                Ok(reply) => ServerFrame::invoke_ok(invocation_id, reply),
                Err(e) => ServerFrame::invoke_err(invocation_id, error_body(&e)),
            };
            vec![PipeReply::Frame(frame)]
        }
        Job::Message(payload) => match up.user_event(ctx, "message", &payload).await {
            Ok(reply) => reply.into_iter().map(server).collect(),
            Err(e) => vec![PipeReply::Close(format!("Event 'message' failed: {e}"))],
        },
    }
}

fn error_body(e: &UpstreamError) -> ErrorBody<'static> {
    let name = match e {
        UpstreamError::Timeout(_) => ErrorName::Timeout,
        UpstreamError::NoHandler(_) => ErrorName::NotFound,
        _ => ErrorName::InternalServerError,
    };
    ErrorBody::new(name, e.to_string())
}
