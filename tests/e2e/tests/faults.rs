//! Faults: a node killed mid-stream (its reliable clients resume through another node and
//! get every message exactly once) and Redis going away and coming back (local delivery
//! goes on, `/readyz` flips, cross-node delivery resumes).

use nerve_e2e::{Client, Node, WAIT, client_token, metric, ready};
use nerve_testkit::{RedisServer, eventually};
use serde_json::Value;

fn texts(c: &Client) -> Vec<String> {
    c.received()
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn missing(got: &[String], expected: &[String]) -> (Vec<String>, usize) {
    let miss: Vec<String> = expected
        .iter()
        .filter(|e| !got.contains(e))
        .cloned()
        .collect();
    let dups = got.len() + miss.len() - expected.len();
    (miss.into_iter().take(10).collect(), dups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_clients_of_a_killed_node_resume_elsewhere_and_miss_nothing() {
    const N: usize = 300;
    let redis = RedisServer::start();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&format!("k{i}"), &[redis.url()], false))
        .collect();
    for n in &nodes {
        n.wait_ready().await;
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let mut receivers = Vec::new();
    for i in 0..4 {
        // Three on the node that dies, one on a survivor.
        let port = if i < 3 { ports[0] } else { ports[1] };
        let user = format!("r{i}");
        let c = Client::connect(port, &client_token(Some(&user)), true, &ports).await;
        c.join("stream").await;
        receivers.push(c);
    }
    let publisher = Client::connect(ports[2], &client_token(Some("pub")), false, &ports).await;
    for i in 0..N {
        if i == N / 3 {
            // Mid-stream, with frames in flight and unacknowledged.
            nodes[0].kill();
        }
        publisher
            .send_to_group("stream", &format!("m{i}"), true)
            .await;
    }
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    let all = &receivers;
    let done = eventually(WAIT, "every receiver has every message", || async move {
        all.iter().all(|r| r.count() >= N).then_some(true)
    });
    if tokio::time::timeout(WAIT, done).await.is_err() {
        let state: Vec<_> = all
            .iter()
            .map(|r| {
                (
                    r.count(),
                    r.resumes(),
                    r.closed(),
                    missing(&texts(r), &expected),
                )
            })
            .collect();
        panic!("receivers (count, resumes, closed, missing): {state:?}");
    }
    for (i, r) in receivers.iter().enumerate() {
        assert_eq!(
            texts(r),
            expected,
            "receiver {i}: every message once, in order"
        );
        assert!(r.closed().is_none(), "receiver {i} is still connected");
    }
    for r in &receivers[..3] {
        assert!(r.resumes() >= 1, "clients of the killed node resumed");
    }
    assert_eq!(receivers[3].resumes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_keeps_local_delivery_and_recovers() {
    let mut redis = RedisServer::start();
    let nodes: Vec<Node> = (0..2)
        .map(|i| Node::start(&format!("f{i}"), &[redis.url()], false))
        .collect();
    for n in &nodes {
        n.wait_ready().await;
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let local = Client::connect(ports[0], &client_token(Some("a")), false, &ports).await;
    let remote = Client::connect(ports[1], &client_token(Some("b")), false, &ports).await;
    let sender = Client::connect(ports[0], &client_token(Some("s")), false, &ports).await;
    local.join("r").await;
    remote.join("r").await;
    sender.send_to_group("r", "before", true).await;
    local.wait_count(1).await;
    remote.wait_count(1).await;

    redis.kill();
    for &p in &ports {
        eventually(WAIT, "not ready without Redis", || async move {
            (ready(p).await == Some(false)).then_some(())
        })
        .await;
    }
    assert!(metric(ports[0], "nerve_redis_errors_total").await > 0.0);
    assert_eq!(metric(ports[0], "nerve_redis_up").await, 0.0);
    // Local delivery goes on while Redis is away.
    sender.send_to_group("r", "during", true).await;
    local.wait_count(2).await;

    redis.restart();
    for &p in &ports {
        eventually(WAIT, "ready again", || async move {
            (ready(p).await == Some(true)).then_some(())
        })
        .await;
    }
    assert_eq!(metric(ports[1], "nerve_redis_up").await, 1.0);
    sender.send_to_group("r", "after", true).await;
    local.wait_count(3).await;
    remote.wait_count(2).await;
    assert_eq!(texts(&local), ["before", "during", "after"]);
    assert_eq!(texts(&remote), ["before", "after"]);
}
