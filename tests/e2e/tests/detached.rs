//! Messages for a reliable client whose node died, sent before it resumed elsewhere: those to
//! the connection, to its user and to everyone are kept with its session and delivered once,
//! in order, by the node that resumes it; and what a detached session keeps is capped.

use std::process::Command;

use nerve_e2e::{Client, Node, WAIT, client_token, rest};
use nerve_testkit::{RedisCluster, RedisServer, eventually};
use serde_json::{Value, json};

fn texts(c: &Client) -> Vec<String> {
    c.received()
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Runs a command on the test's Redis and returns its answer.
fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn send(port: u16, path: &str, msg: &str) {
    let a = rest(port, "POST", path, Some(msg)).await;
    assert_eq!(a.status, 202, "POST {path}: {a:?}");
}

/// Waits until node `port` counts connection `id` gone (its node dead).
async fn gone_on(port: u16, id: &str) {
    let path = format!("/connections/{id}");
    let path = &path;
    eventually(
        WAIT,
        "the killed node's connection to be gone",
        || async move { (rest(port, "HEAD", path, None).await.status == 404).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_a_client_between_nodes_reach_it_once_in_order() {
    let redis = RedisServer::start();
    let id = between_nodes(&[redis.url()], false).await;
    assert_eq!(
        redis_cli(&redis, &["HEXISTS", "nerve:{nodes}:detached", &id]),
        "0",
        "a resumed session is no longer detached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_a_client_between_nodes_reach_it_on_a_redis_cluster() {
    let redis = RedisCluster::start(3);
    between_nodes(&redis.urls(), true).await;
}

/// A reliable client on node A, A killed, sends of every kind through node B, then the client
/// resumes through B; returns its connection id.
async fn between_nodes(urls: &[String], cluster: bool) -> String {
    let mut a = Node::start("da", urls, cluster);
    let b = Node::start("db", urls, cluster);
    a.wait_ready().await;
    b.wait_ready().await;
    let ports = [a.port, b.port];
    let c = Client::connect(a.port, &client_token(Some("alice")), true, &ports).await;
    let id = c.id();
    c.join("g").await;
    // Someone else of the hub, on the surviving node: to-all messages reach it live.
    let other = Client::connect(b.port, &client_token(Some("bob")), true, &ports).await;
    send(b.port, &format!("/connections/{id}/:send"), "before").await;
    c.wait_count(1).await;

    c.hold_resumption();
    a.kill();
    gone_on(b.port, &id).await;
    let sends = [
        (format!("/connections/{id}/:send"), "direct-1"),
        ("/users/alice/:send".to_string(), "user-1"),
        ("/:send".to_string(), "all-1"),
        ("/groups/g/:send".to_string(), "group-1"),
        (format!("/connections/{id}/:send"), "direct-2"),
        ("/users/alice/:send".to_string(), "user-2"),
        ("/:send".to_string(), "all-2"),
    ];
    for (path, msg) in &sends {
        send(b.port, path, msg).await;
    }
    other.wait_count(2).await;
    assert_eq!(texts(&other), ["all-1", "all-2"]);
    assert_eq!(c.count(), 1, "nothing reaches the client while it is away");

    c.allow_resumption();
    c.wait_count(8).await;
    send(b.port, &format!("/connections/{id}/:send"), "after").await;
    c.wait_count(9).await;
    // The kept messages in the order they were sent, then the group's history, then live.
    assert_eq!(
        texts(&c),
        [
            "before", "direct-1", "user-1", "all-1", "direct-2", "user-2", "all-2", "group-1",
            "after"
        ]
    );
    assert_eq!(
        c.sequence_ids(),
        (1..=9).collect::<Vec<u64>>(),
        "sequence ids continue the session's numbering"
    );
    assert_eq!(c.resumes(), 1);
    assert!(c.closed().is_none());
    // Nothing arrives twice, even later.
    send(b.port, &format!("/connections/{id}/:send"), "last").await;
    c.wait_count(10).await;
    assert_eq!(c.count(), 10);
    assert_eq!(c.sequence_ids().last(), Some(&10));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_session_keeps_a_bounded_number_of_messages() {
    const CAP: usize = 20;
    let limits = format!("[limits]\noutbox_messages = {CAP}\n");
    let redis = RedisServer::start();
    let mut a = Node::start_with("ca", &[redis.url()], false, &limits);
    let b = Node::start_with("cb", &[redis.url()], false, &limits);
    a.wait_ready().await;
    b.wait_ready().await;
    let ports = [a.port, b.port];
    let c = Client::connect(a.port, &client_token(Some("carol")), true, &ports).await;
    let id = c.id();
    let (meta, buf) = (
        format!("nerve:{{s:{id}}}:meta"),
        format!("nerve:{{s:{id}}}:buf"),
    );
    c.hold_resumption();
    a.kill();
    gone_on(b.port, &id).await;

    // Under the cap, everything is kept.
    for i in 0..CAP {
        send(b.port, "/users/carol/:send", &format!("m{i}")).await;
    }
    let buf_ref = &buf;
    let redis_ref = &redis;
    eventually(WAIT, "the messages kept with the session", || async move {
        (redis_cli(redis_ref, &["LLEN", buf_ref]) == CAP.to_string()).then_some(())
    })
    .await;
    // One more than the session may keep: it is dropped, as an overflowing reliable
    // session is, and what it kept goes with it.
    for i in CAP..CAP * 5 {
        let path = if i % 2 == 0 {
            format!("/connections/{id}/:send")
        } else {
            "/:send".to_string()
        };
        send(b.port, &path, &format!("m{i}")).await;
    }
    let (meta_ref, id_ref) = (&meta, &id);
    eventually(WAIT, "the overflowing session dropped", || async move {
        let left = redis_cli(redis_ref, &["EXISTS", meta_ref, buf_ref]);
        let listed = redis_cli(redis_ref, &["HEXISTS", "nerve:{nodes}:detached", id_ref]);
        (left == "0" && listed == "0").then_some(())
    })
    .await;
    // The client cannot resume a session that is over: it is refused and starts anew.
    c.allow_resumption();
    let closed = c.wait_closed().await;
    assert_eq!(closed.code, 1008, "{closed:?}");
    assert_eq!(c.count(), 0);
    let fresh = Client::connect(b.port, &client_token(Some("carol")), true, &ports).await;
    // Nothing grows after it: later messages for the old connection are kept nowhere (the
    // node handles its sends in order, so once `fresh` has its message these are done).
    for i in 0..CAP {
        send(
            b.port,
            &format!("/connections/{id}/:send"),
            &format!("x{i}"),
        )
        .await;
    }
    send(b.port, "/users/carol/:send", "fresh").await;
    fresh.wait_count(1).await;
    assert_eq!(fresh.received(), [json!("fresh")]);
    let keys = redis_cli(&redis, &["KEYS", &format!("nerve:{{s:{id}}}:*")]);
    assert_eq!(keys, "", "no keys of the dropped session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_a_client_of_a_drained_node_reach_it_after_it_resumes() {
    let redis = RedisServer::start();
    let mut a = Node::start("ra", &[redis.url()], false);
    let b = Node::start("rb", &[redis.url()], false);
    a.wait_ready().await;
    b.wait_ready().await;
    let ports = [a.port, b.port];
    let c = Client::connect(a.port, &client_token(Some("dave")), true, &ports).await;
    let id = c.id();
    send(b.port, &format!("/connections/{id}/:send"), "before").await;
    c.wait_count(1).await;

    c.hold_resumption();
    // A drain hands the session to the cluster (its record names no node) and closes.
    a.terminate();
    gone_on(b.port, &id).await;
    for i in 0..3 {
        send(
            b.port,
            &format!("/connections/{id}/:send"),
            &format!("d{i}"),
        )
        .await;
    }
    c.allow_resumption();
    c.wait_count(4).await;
    send(b.port, &format!("/connections/{id}/:send"), "after").await;
    c.wait_count(5).await;
    assert_eq!(texts(&c), ["before", "d0", "d1", "d2", "after"]);
    assert_eq!(c.sequence_ids(), (1..=5).collect::<Vec<u64>>());
    assert_eq!(c.resumes(), 1);
}
