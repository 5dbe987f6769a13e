//! The broker suite: the same scenarios run against the in-memory broker (where "both nodes"
//! are one node) and the Redis broker (two nodes in this process on a real `redis-server`).
//! Whatever a user can observe must be the same.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nerve_protocol::{Payload, Sender, Subprotocol};
use tokio_util::sync::CancellationToken;

use super::Node;
use crate::cluster::{Command, Scope, Target};
use crate::config::{Cli, Config};
use crate::registry::{Connection, ConnectionReceivers, ConnectionSpec, Delivery, Roles};

struct Nodes {
    a: Arc<Node>,
    b: Arc<Node>,
    _redis: Option<nerve_testkit::RedisServer>,
    _stop: tokio_util::sync::DropGuard,
}

async fn nodes(redis: bool) -> Nodes {
    let stop = CancellationToken::new();
    let server = redis.then(nerve_testkit::RedisServer::start);
    let app = |id: &str| {
        let mut args = vec!["nerve", "--node-id", id];
        let url = server.as_ref().map(|s| s.url());
        if let Some(u) = &url {
            args.extend(["--redis", u.as_str()]);
        }
        let config = Config::resolve(&Cli::parse_from(args)).expect("config");
        Node::new(config, stop.clone())
    };
    let a = app("a");
    let b = if redis { app("b") } else { a.clone() };
    for s in [&a, &b] {
        nerve_testkit::eventually(Duration::from_secs(10), "broker ready", || async move {
            s.broker.is_ready().then_some(())
        })
        .await;
    }
    Nodes {
        a,
        b,
        _redis: server,
        _stop: stop.drop_guard(),
    }
}

fn connect(app: &Node, id: &str, user: &str) -> (Arc<Connection>, ConnectionReceivers) {
    let hub = app.registry.hub_or_create("chat");
    let (c, rx) = Connection::new(ConnectionSpec {
        id: Arc::from(id),
        hub: Arc::from("chat"),
        user_id: Some(Arc::from(user)),
        protocol: Subprotocol::Json,
        roles: Roles::default(),
        reconnection_token: None,
        max_queued_messages: 100,
        max_queued_bytes: 1 << 20,
    });
    hub.add_connection(&c);
    (c, rx)
}

async fn join(app: &Node, c: &Arc<Connection>, group: &str) {
    app.registry.hub_or_create("chat").join(c, group);
    app.broker.group_ready("chat", group).await;
}

fn send(app: &Node, target: Target, scope: Scope, text: &str) {
    let d = Delivery::new(Sender::Server, Payload::text(text));
    let hub = app.registry.hub("chat");
    app.broker.publish("chat", hub.as_ref(), target, scope, d);
}

/// Waits until `rx` holds `n` messages, then checks nothing more arrives.
async fn received(rx: &ConnectionReceivers, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(10), rx.outbox.recv_async())
            .await
            .expect("a message in time")
            .expect("outbox open");
        got.push(String::from_utf8_lossy(&d.payload.raw).into_owned());
    }
    assert!(rx.outbox.is_empty(), "more than {n} messages: {got:?}");
    // Different paths (group channel, broadcast, node channel) need not keep their order.
    got.sort();
    got
}

async fn scenario(redis: bool) {
    let n = nodes(redis).await;
    let (c1, r1) = connect(&n.a, "c1", "u1");
    let (c2, r2) = connect(&n.b, "c2", "u2");
    join(&n.a, &c1, "g").await;
    join(&n.b, &c2, "g").await;
    // Presence reaches the other node through the worker: wait for it to be visible.
    nerve_testkit::eventually(Duration::from_secs(10), "presence", || {
        let b = n.b.clone();
        async move {
            let local = b.registry.hub("chat").is_some_and(|h| h.has_user("u1"));
            (local || b.broker.remote_user("chat", "u1").await).then_some(())
        }
    })
    .await;

    send(&n.a, Target::Group("g".into()), Scope::default(), "group");
    send(&n.b, Target::All, Scope::without("c1"), "all-but-c1");
    send(&n.a, Target::User("u2".into()), Scope::default(), "user");
    send(
        &n.b,
        Target::Connection("c1".into()),
        Scope::default(),
        "conn",
    );
    let filter = Scope {
        excluded: vec![],
        filter: Some("userId eq 'u1'".into()),
    };
    send(&n.b, Target::Group("g".into()), filter, "filtered");
    assert_eq!(received(&r1, 3).await, ["conn", "filtered", "group"]);
    assert_eq!(received(&r2, 3).await, ["all-but-c1", "group", "user"]);

    // A command from one node reaches the connection wherever it is.
    let close = Command::Close {
        selector: Target::Connection("c1".into()),
        reason: "bye".into(),
        excluded: vec![],
    };
    n.b.run_local("chat", &close);
    n.b.broker.command("chat", close);
    nerve_testkit::eventually(Duration::from_secs(10), "closed", || async {
        c1.is_closing().then_some(())
    })
    .await;
    assert!(!c2.is_closing());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_broker() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_broker() {
    scenario(true).await;
}
