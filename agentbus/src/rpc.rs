//! Request/reply over the bus: a `bus.rpc.request` goes to a capability's queue with `replyto`
//! naming a one-shot inbox; the responder's `bus.rpc.reply` lands there. If no reply comes by the
//! deadline the requester writes an error reply itself, so the chain always shows an answer and
//! a late responder's reply loses the race instead of arriving unexpected.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::AgentShared;
use crate::bus::Bus;
use crate::envelope::{Envelope, types};
use crate::error::{BusError, RpcError, check_name};
use crate::transport::Delivery;

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type RequestFn = Arc<dyn Fn(Request) -> BoxFuture<Result<Value, String>> + Send + Sync>;

/// A request as its responder sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request payload.
    pub payload: Value,
    /// The `bus.rpc.request` event.
    pub envelope: Envelope,
}

fn reply_result(reply: &Envelope) -> Result<Value, RpcError> {
    let data = reply.data.clone().unwrap_or(Value::Null);
    if let Some(err) = data.get("error") {
        let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Err(RpcError::Remote {
            code: field("code"),
            message: field("message"),
        });
    }
    Ok(data.get("result").cloned().unwrap_or(Value::Null))
}

impl Bus {
    /// Sends `payload` to one agent serving `capability` and waits up to `timeout` for its reply.
    /// On timeout an error reply is recorded in the chain and returned as `RpcError::Timeout`.
    pub async fn request(
        &self,
        capability: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        self.request_in(capability, payload, timeout, None).await
    }

    /// Like [`Bus::request`], inside an existing chain (`cause` becomes the causation).
    pub async fn request_in(
        &self,
        capability: &str,
        payload: Value,
        timeout: Duration,
        cause: Option<&Envelope>,
    ) -> Result<Value, RpcError> {
        check_name(capability)?;
        let source = self.inner.source.clone();
        let mut req = match cause {
            Some(c) => Envelope::caused_by(c, source.clone(), types::RPC_REQUEST),
            None => Envelope::new(source.clone(), types::RPC_REQUEST),
        };
        let inbox = format!("rpc:{}", req.id);
        req.replyto = Some(inbox.clone());
        req.subject = Some(format!("rpc/{capability}"));
        req = req.with_ttl(timeout).with_data(payload);
        self.declare(capability).await?;
        let t = self.transport();
        let partition = self.partition_for(capability, &req.id);
        t.enqueue(&partition, &req, None).await?;
        t.record(&req).await?;
        let req_id = req.id.clone();
        let waited = self
            .wait_until(timeout, &format!("reply to {req_id}"), &req_id, || async {
                Ok(t.reply_load(&inbox).await?)
            })
            .await;
        match waited {
            Ok(reply) => reply_result(&reply),
            Err(BusError::Timeout(..)) => {
                let reply = Envelope::caused_by(&req, source, types::RPC_REPLY).with_data(json!({
                    "error": {"code": "Timeout", "message": format!("no reply within {timeout:?}")}
                }));
                let ttl = self.config().reply_ttl;
                if t.reply_put(&inbox, &reply, ttl).await? {
                    t.record(&reply).await?;
                    return Err(RpcError::Timeout {
                        reply: Box::new(reply),
                    });
                }
                // A reply won the race at the last moment.
                match t.reply_load(&inbox).await? {
                    Some(r) => reply_result(&r),
                    None => Err(RpcError::Timeout {
                        reply: Box::new(reply),
                    }),
                }
            }
            Err(e) => Err(RpcError::Bus(e)),
        }
    }
}

/// Handles a `bus.rpc.request` delivery on the responder side.
pub(crate) async fn serve(shared: &Arc<AgentShared>, d: Delivery) {
    let bus = &shared.bus;
    let t = bus.transport();
    let data = match &shared.request_handler {
        Some(handler) => {
            let req = Request {
                payload: d.envelope.data.clone().unwrap_or(Value::Null),
                envelope: d.envelope.clone(),
            };
            let job = tokio::spawn(tracing::Instrument::in_current_span(handler(req)));
            let _abort = crate::agent::AbortOnDrop(job.abort_handle());
            match job.await {
                Ok(Ok(v)) => json!({ "result": v }),
                Ok(Err(msg)) => json!({"error": {"code": "HandlerError", "message": msg}}),
                Err(e) => json!({"error": {"code": "HandlerPanicked", "message": e.to_string()}}),
            }
        }
        None => json!({"error": {"code": "NoHandler", "message": "agent serves no requests"}}),
    };
    let reply =
        Envelope::caused_by(&d.envelope, shared.source.clone(), types::RPC_REPLY).with_data(data);
    if let Some(inbox) = d.envelope.replyto.as_deref() {
        match t.reply_put(inbox, &reply, bus.config().reply_ttl).await {
            Ok(true) => {
                if let Err(e) = t.record(&reply).await {
                    tracing::debug!(error = %e, "reply not recorded");
                }
            }
            Ok(false) => tracing::debug!(inbox, "reply arrived after the requester gave up"),
            Err(e) => return tracing::warn!(error = %e, "reply not stored; will be redelivered"),
        }
    }
    if let Err(e) = t.ack(&d).await {
        tracing::warn!(error = %e, "ack failed; request will be redelivered");
    }
}
