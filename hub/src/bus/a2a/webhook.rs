//! A2A push notifications on the wire: every task status or artifact event of a task with push
//! settings becomes one queued notification per setting, on the bus queue `a2a.push`, and the
//! hub's worker POSTs each one (the A2A `StreamResponse` of the event) to its webhook.
//!
//! The queue gives what A2A asks of push delivery and more: at least once (a hub that dies
//! mid-POST leaves the message to another node after the lease), retries with the bus's
//! exponential backoff on network errors, timeouts, `408`, `429` and `5xx`, and a dead letter
//! (`MaxDeliveryCountExceeded`, or `WebhookRejected` at once for other answers) that
//! `nerve-bus dlq list a2a.push` shows. Every hub node on one Redis enqueues the same event
//! under one id, so the queue's dedupe window keeps one copy.
//!
//! Each request carries `X-A2A-Notification-Token` (the setting's token) and, with
//! `authentication`, `Authorization: <scheme> <credentials>`. The settings are read at delivery
//! time, so a deleted setting stops its pending notifications. Only http and https URLs are
//! called, no redirect is followed, a request takes at most 10 s, and unless
//! `[bus] push_allow_private` is set no loopback, private or link-local address is reached,
//! whether named in the URL or resolved from its host name (checked at connect time).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nerve_agentbus::envelope::types;
use nerve_agentbus::{Envelope, Settle};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::push::{self, PushConfig};
use crate::bus::Bridge;

/// The bus queue notifications wait on.
pub const QUEUE: &str = "a2a.push";
/// Envelope type of a queued notification.
const NOTIFICATION: &str = "bus.a2a.push";
/// Notifications one hub POSTs at once.
const IN_FLIGHT: usize = 16;
/// Longest a webhook may take to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest notification body (a task event is far smaller; a bigger one is dead-lettered).
const MAX_BODY: usize = 1 << 20;

/// Starts the notifier (live feed → queue) of this hub node. Its delivery worker starts with
/// the first notification it queues, or at once when the bus already has the queue (left by an
/// earlier run or another node), so a hub whose tasks have no push settings runs no worker and
/// lists no `a2a.push` queue.
pub fn start(bridge: Arc<Bridge>) {
    let allow_private = bridge.app.config.bus.push_allow_private;
    let client = match http_client(allow_private) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "push notifications are off: no HTTP client");
            return;
        }
    };
    let worker = Arc::new(Worker {
        bridge: bridge.clone(),
        client,
        allow_private,
        started: tokio::sync::OnceCell::new(),
    });
    tokio::spawn(notify(bridge, worker));
}

/// This node's delivery worker, started once.
struct Worker {
    bridge: Arc<Bridge>,
    client: reqwest::Client,
    allow_private: bool,
    started: tokio::sync::OnceCell<()>,
}

impl Worker {
    /// Starts the worker unless it runs already.
    async fn ensure(self: &Arc<Self>) {
        self.started
            .get_or_init(|| async {
                let me = self.clone();
                tokio::spawn(async move { me.run().await });
            })
            .await;
    }

    async fn run(self: Arc<Self>) {
        let bridge = self.bridge.clone();
        let consumer = consumer_id(&bridge.app.config.node_id);
        let me = self.clone();
        let worker =
            bridge
                .bus
                .work(QUEUE, &consumer, IN_FLIGHT, move |env, deliveries| {
                    let me = me.clone();
                    async move {
                        deliver(&me.bridge, &me.client, &env, deliveries, me.allow_private).await
                    }
                })
                .await;
        match worker {
            Ok(w) => {
                bridge.app.shutdown.cancelled().await;
                w.stop().await;
            }
            Err(e) => tracing::error!(error = %e, "push notification worker did not start"),
        }
    }
}

/// A bus consumer id for this node.
fn consumer_id(node_id: &str) -> String {
    let clean: String = node_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!("hub-push-{clean}")
}

/// The HTTP client every notification goes through.
fn http_client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("nerve/", env!("CARGO_PKG_VERSION")));
    if !allow_private {
        b = b.dns_resolver(Arc::new(PublicOnly));
    }
    b.build()
}

/// Resolves host names to their public addresses only, so a name that points into the hub's
/// network (or is rebound to it after the setting was checked) is never connected to.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| push::is_public(a.ip()))
                .collect();
            if public.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{host} resolves to no public address (set [bus] push_allow_private to allow)"
                )
                .into();
                return Err(e);
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// Follows the live feed and queues a notification per push setting of each task event.
async fn notify(bridge: Arc<Bridge>, worker: Arc<Worker>) {
    let mut live = bridge.bus.transport().live();
    let shutdown = bridge.app.shutdown.clone();
    match bridge.bus.transport().capabilities().await {
        Ok(caps) if caps.iter().any(|(c, _)| c == QUEUE) => worker.ensure().await,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot list bus queues; push worker starts on demand")
        }
    }
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = live.recv() => n,
        };
        let env = match next {
            Ok(env) => env,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "push notifier lagged; some task events are not pushed"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if env.event_type != types::TASK_STATUS && env.event_type != types::TASK_ARTIFACT {
            continue;
        }
        let (Some(task_id), Some(event)) = (env.taskid.as_deref(), env.data.as_ref()) else {
            continue;
        };
        let configs = match bridge.bus.transport().push_configs(task_id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(task = %task_id, error = %e, "cannot read push settings");
                continue;
            }
        };
        if !configs.is_empty() {
            worker.ensure().await;
        }
        for (config_id, _) in configs {
            let mut n = Envelope::new("bus://a2a-push", NOTIFICATION).with_data(json!({
                "taskId": task_id,
                "configId": config_id,
                "event": event,
            }));
            // One id per (event, setting) on every node: the queue keeps one copy.
            n.id = format!("{}.{config_id}", env.id);
            n.partitionkey = Some(task_id.to_string());
            n.correlationid = env.correlationid.clone();
            n.traceparent = env.traceparent.clone();
            if let Err(e) = bridge.bus.enqueue(QUEUE, &n).await {
                tracing::warn!(task = %task_id, error = %e, "cannot queue a push notification");
            }
        }
    }
}

/// Where a URL points, for logs and dead letters: scheme, host and port, never its path or
/// query (which may carry secrets).
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "(invalid url)".into())
}

fn dead(reason: &str, description: String) -> Settle {
    Settle::DeadLetter {
        reason: reason.into(),
        description,
    }
}

/// POSTs one queued notification and says how it settles.
async fn deliver(
    bridge: &Bridge,
    client: &reqwest::Client,
    env: &Envelope,
    deliveries: u32,
    allow_private: bool,
) -> Settle {
    let data = env.data.as_ref();
    let field = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_str);
    let (Some(task_id), Some(config_id), Some(event)) = (
        field("taskId"),
        field("configId"),
        data.and_then(|d| d.get("event")),
    ) else {
        return dead("InvalidMessage", "not a push notification".into());
    };
    let config: Option<PushConfig> = match push::configs_of(bridge, task_id).await {
        Ok(all) => all.into_iter().find(|c| c.id == config_id),
        Err(e) => return Settle::Retry(format!("cannot read push settings: {}", e.message)),
    };
    let Some(config) = config else {
        // Deleted since: nothing to deliver.
        return Settle::Done;
    };
    let origin = origin_of(&config.url);
    if let Err(e) = push::check_url(&config.url, allow_private) {
        return dead("WebhookRefused", e);
    }
    let body = match serde_json::to_vec(event) {
        Ok(b) if b.len() <= MAX_BODY => b,
        Ok(b) => {
            return dead(
                "PayloadTooLarge",
                format!("{} bytes (limit {MAX_BODY})", b.len()),
            );
        }
        Err(e) => return dead("InvalidMessage", e.to_string()),
    };
    let mut req = client
        .post(&config.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("A2A-Version", "1.0")
        .body(body);
    if !config.token.is_empty() {
        req = req.header("X-A2A-Notification-Token", &config.token);
    }
    if let Some(auth) = &config.authentication {
        req = req.header(
            reqwest::header::AUTHORIZATION,
            format!("{} {}", auth.scheme, auth.credentials),
        );
    }
    let span = tracing::info_span!("a2a.push", task = %task_id, config = %config_id, to = %origin, deliveries);
    let answer = tracing::Instrument::instrument(req.send(), span).await;
    match answer {
        Ok(r) if r.status().is_success() => Settle::Done,
        Ok(r) => {
            let status = r.status();
            let why = format!("{origin} answered {status}");
            let again = status.is_server_error()
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            if again {
                tracing::debug!(task = %task_id, %why, "push notification will be retried");
                Settle::Retry(why)
            } else {
                tracing::warn!(task = %task_id, %why, "push notification rejected");
                dead("WebhookRejected", why)
            }
        }
        Err(e) => {
            // reqwest's error text names the URL; keep only its origin.
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "request failed"
            };
            let why = format!("{origin}: {kind}");
            tracing::debug!(task = %task_id, %why, "push notification will be retried");
            Settle::Retry(why)
        }
    }
}
