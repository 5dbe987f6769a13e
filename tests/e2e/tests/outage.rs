//! Redis lost under steady traffic (killed, or hung) and brought back empty: a node's own
//! clients never wait on it, the loss is noticed within the documented bound, every message the
//! other nodes miss is counted, and once Redis is back the nodes write again what they hold, so
//! a node killed afterwards loses nothing for its reliable clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nerve_e2e::{Client, Node, Proxy, WAIT, client_token, metric, ready, rest};
use nerve_testkit::{RedisServer, eventually};
use serde_json::Value;

/// One REST send every this long (100 a second: five times the rate the fault run used, so a
/// stall cannot hide between two messages).
const STEP: Duration = Duration::from_millis(10);

/// The bound on how long a node's own clients may wait for a message, Redis or not.
const LOCAL_BOUND: Duration = Duration::from_millis(100);

/// How soon a node must notice an unresponsive Redis: `heartbeat_ms` (200 in these tests) plus
/// the heartbeat's answer timeout (at least 500 ms), as `hub/docs/operations.md` states.
const NOTICE_BOUND: Duration = Duration::from_millis(700);

/// What the test's own polling of `/readyz` adds to a measured time to notice (one poll
/// interval and a request).
const POLL_SLACK: Duration = Duration::from_millis(100);

/// REST sends `m0`, `m1`, … to `group` through the node at `port`, one every [`STEP`], until
/// `stop`; returns each message with the moment its request started.
async fn publish_steadily(
    port: u16,
    group: String,
    stop: Arc<AtomicBool>,
) -> Vec<(String, Instant)> {
    let path = format!("/groups/{group}/:send");
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(STEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let msg = format!("m{}", sent.len());
        let at = Instant::now();
        let answer = rest(port, "POST", &path, Some(&msg)).await;
        assert_eq!(answer.status, 202, "{msg}: {answer:?}");
        sent.push((msg, at));
    }
    sent
}

fn texts(c: &Client) -> Vec<String> {
    c.received()
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The longest time from a send to its arrival at `c`, and the longest time between two
/// arrivals; panics unless `c` got every message of `sent`, once and in order.
fn waits(name: &str, c: &Client, sent: &[(String, Instant)]) -> (Duration, Duration) {
    let arrivals = c.arrivals();
    let got: Vec<&str> = arrivals.iter().filter_map(|(v, _)| v.as_str()).collect();
    let expected: Vec<&str> = sent.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(got, expected, "{name}: every message once, in order");
    let longest_wait = sent
        .iter()
        .zip(&arrivals)
        .map(|((_, at), (_, arrived))| arrived.saturating_duration_since(*at))
        .max()
        .unwrap_or_default();
    let longest_gap = arrivals
        .windows(2)
        .map(|w| w[1].1.saturating_duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    (longest_wait, longest_gap)
}

/// Polls `/readyz` of `port` until it answers 503; returns how long that took from `since`.
async fn noticed(port: u16, since: Instant) -> Duration {
    eventually(WAIT, "the node to notice Redis is gone", || async move {
        (ready(port).await == Some(false)).then(|| since.elapsed())
    })
    .await
}

async fn all_ready(ports: &[u16]) {
    for &p in ports {
        eventually(WAIT, "ready again", || async move {
            (ready(p).await == Some(true)).then_some(())
        })
        .await;
    }
}

/// Two nodes; on node A two reliable clients and a plain one, on node B one reliable client,
/// all in group `live`; a REST publisher sends to A one message every [`STEP`] while `fault`
/// takes Redis away. Returns the nodes' ports, what was sent, the clients (A's first), and how
/// long A took to notice.
struct Run {
    ports: [u16; 2],
    sent: Vec<(String, Instant)>,
    local: Vec<Client>,
    remote: Client,
    noticed: Duration,
    _nodes: Vec<Node>,
}

async fn publish_through(redis: &mut RedisServer, fault: impl FnOnce(&mut RedisServer)) -> Run {
    let nodes = vec![
        Node::start("oa", &[redis.url()], false),
        Node::start("ob", &[redis.url()], false),
    ];
    for n in &nodes {
        n.wait_ready().await;
    }
    let ports = [nodes[0].port, nodes[1].port];
    let mut local = Vec::new();
    for (user, reliable) in [("la", true), ("lb", true), ("lc", false)] {
        let c = Client::connect(ports[0], &client_token(Some(user)), reliable, &ports).await;
        c.join("live").await;
        local.push(c);
    }
    let remote = Client::connect(ports[1], &client_token(Some("ra")), true, &ports).await;
    remote.join("live").await;

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_steadily(ports[0], "live".into(), stop.clone()));
    // A steady stream first, through Redis.
    let first = &remote;
    eventually(WAIT, "traffic through Redis", || async move {
        (first.count() >= 30).then_some(())
    })
    .await;
    let lost_at = Instant::now();
    fault(redis);
    let noticed = noticed(ports[0], lost_at).await;
    // Well past the bound on noticing: whatever waits on Redis has shown by then.
    let until = lost_at + NOTICE_BOUND * 2;
    tokio::time::sleep_until(until.into()).await;
    stop.store(true, Ordering::Relaxed);
    let sent = publisher.await.expect("publisher");
    let (clients, n) = (&local, sent.len());
    eventually(WAIT, "every message at A's clients", || async move {
        clients.iter().all(|c| c.count() >= n).then_some(())
    })
    .await;
    Run {
        ports,
        sent,
        local,
        remote,
        noticed,
        _nodes: nodes,
    }
}

/// Checks that A's clients got everything in time; returns the longest wait.
fn local_delivery_held(run: &Run) -> Duration {
    let mut longest = Duration::ZERO;
    for (i, c) in run.local.iter().enumerate() {
        let (wait, gap) = waits(&format!("A's client {i}"), c, &run.sent);
        eprintln!(
            "A's client {i}: {} messages, longest wait {wait:?}, longest gap {gap:?}",
            run.sent.len()
        );
        longest = longest.max(wait);
    }
    assert!(
        longest < LOCAL_BOUND,
        "A's own clients waited {longest:?} for a message (bound {LOCAL_BOUND:?})"
    );
    longest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_traffic_stalls_no_local_client_and_every_drop_is_counted() {
    let mut redis = RedisServer::start();
    let run = publish_through(&mut redis, RedisServer::kill).await;
    eprintln!("Redis killed: node A noticed after {:?}", run.noticed);
    assert!(
        run.noticed < NOTICE_BOUND + POLL_SLACK,
        "noticed after {:?}",
        run.noticed
    );
    local_delivery_held(&run);

    // B's client got a prefix: everything A handed to Redis before it died.
    let got = texts(&run.remote);
    let expected: Vec<&str> = run.sent.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(got, expected[..got.len()], "B's client: a prefix, in order");
    let missed = expected.len() - got.len();
    assert!(missed > 0, "the outage fell inside the stream");
    let dropped = metric(run.ports[0], "nerve_cluster_drops_total").await;
    assert_eq!(
        dropped, missed as f64,
        "node A counted every message B's client missed, once"
    );
    assert_eq!(metric(run.ports[1], "nerve_cluster_drops_total").await, 0.0);

    // Back, empty: the nodes find each other again.
    redis.restart();
    all_ready(&run.ports).await;
    let answer = rest(run.ports[0], "POST", "/groups/live/:send", Some("after")).await;
    assert_eq!(answer.status, 202);
    run.remote.wait_count(got.len() + 1).await;
    assert_eq!(texts(&run.remote).last().map(String::as_str), Some("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_noticed_in_bounded_time_and_stalls_no_local_client() {
    let mut redis = RedisServer::start();
    let run = publish_through(&mut redis, |r| r.pause()).await;
    eprintln!("Redis hung: node A noticed after {:?}", run.noticed);
    assert!(
        run.noticed < NOTICE_BOUND + POLL_SLACK,
        "noticed after {:?}",
        run.noticed
    );
    local_delivery_held(&run);
    assert!(metric(run.ports[0], "nerve_cluster_drops_total").await > 0.0);

    redis.unpause();
    all_ready(&run.ports).await;
    let before = run.remote.count();
    let answer = rest(run.ports[0], "POST", "/groups/live/:send", Some("after")).await;
    assert_eq!(answer.status, 202);
    let remote = &run.remote;
    eventually(WAIT, "cross-node delivery again", || async move {
        (remote.count() > before).then_some(())
    })
    .await;
    assert_eq!(texts(&run.remote).last().map(String::as_str), Some("after"));
}

/// Runs a command on the test's Redis and returns its answer.
fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_returns_empty_a_killed_nodes_reliable_clients_lose_nothing() {
    const N: usize = 200;
    let mut redis = RedisServer::start();
    let mut a = Node::start("ea", &[redis.url()], false);
    let mut b = Node::start("eb", &[redis.url()], false);
    a.wait_ready().await;
    b.wait_ready().await;
    let ports = [a.port, b.port];
    let mut clients = Vec::new();
    for i in 0..4 {
        // Three on the node that dies, one on the survivor.
        let port = if i < 3 { b.port } else { a.port };
        let user = format!("e{i}");
        let c = Client::connect(port, &client_token(Some(&user)), true, &ports).await;
        c.join("stream").await;
        clients.push(c);
    }
    let before = rest(a.port, "POST", "/groups/stream/:send", Some("before")).await;
    assert_eq!(before.status, 202);
    for c in &clients {
        c.wait_count(1).await;
    }

    redis.kill();
    for &p in &ports {
        noticed(p, Instant::now()).await;
    }
    redis.restart();
    assert_eq!(redis_cli(&redis, &["DBSIZE"]), "0", "Redis came back empty");
    all_ready(&ports).await;
    // The surviving node sees B's clients again (presence) and B has written their sessions
    // again, so another node can resume them.
    for c in &clients[..3] {
        let path = format!("/connections/{}", c.id());
        let (path, key) = (&path, format!("nerve:{{s:{}}}:meta", c.id()));
        let (redis_ref, key) = (&redis, &key);
        eventually(WAIT, "B's sessions written again", || async move {
            let seen = rest(a.port, "HEAD", path, None).await.status == 200;
            let kept = redis_cli(redis_ref, &["HEXISTS", key, "token"]) == "1";
            (seen && kept).then_some(())
        })
        .await;
    }

    let mut expected = vec!["before".to_string()];
    for i in 0..N {
        if i == N / 3 {
            // Mid-stream, with frames in flight and unacknowledged.
            b.kill();
        }
        let msg = format!("m{i}");
        let answer = rest(a.port, "POST", "/groups/stream/:send", Some(&msg)).await;
        assert_eq!(answer.status, 202, "{msg}: {answer:?}");
        expected.push(msg);
    }
    let (all, total) = (&clients, expected.len());
    let done = eventually(WAIT, "every client has every message", || async move {
        all.iter().all(|c| c.count() >= total).then_some(())
    });
    if tokio::time::timeout(WAIT, done).await.is_err() {
        let state: Vec<_> = all
            .iter()
            .map(|c| (c.count(), c.resumes(), c.closed()))
            .collect();
        panic!("clients (count, resumes, closed): {state:?}");
    }
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(
            texts(c),
            expected,
            "client {i}: every message once, in order"
        );
        assert!(c.closed().is_none(), "client {i} is still connected");
    }
    for c in &clients[..3] {
        assert_eq!(c.resumes(), 1, "B's clients resumed on A");
    }
    assert_eq!(clients[3].resumes(), 0);
    // Each resume from another node's session counts.
    assert_eq!(metric(a.port, "nerve_reconnections_total").await, 3.0);
    a.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_gets_the_group_messages_it_missed_once_back() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port()).await;
    let a = Node::start("pa", &[redis.url()], false);
    let b = Node::start("pb", &[proxy.url()], false);
    a.wait_ready().await;
    b.wait_ready().await;
    let ports = [a.port, b.port];
    let here = Client::connect(a.port, &client_token(Some("ph")), true, &ports).await;
    let there = Client::connect(b.port, &client_token(Some("pt")), true, &ports).await;
    let plain = Client::connect(b.port, &client_token(Some("pp")), false, &ports).await;
    for c in [&here, &there, &plain] {
        c.join("part").await;
    }
    let send = |msg: String| async move {
        let answer = rest(a.port, "POST", "/groups/part/:send", Some(&msg)).await;
        assert_eq!(answer.status, 202, "{msg}: {answer:?}");
        msg
    };
    let mut expected = vec![send("before".into()).await];
    for c in [&here, &there, &plain] {
        c.wait_count(1).await;
    }

    // Node B has listened for a few heartbeats (it counts what it misses from then on).
    let b_port = b.port;
    eventually(WAIT, "node B's first heartbeats", || async move {
        (metric(b_port, "nerve_redis_latency_seconds_count").await >= 3.0).then_some(())
    })
    .await;
    // Node B alone loses Redis; node A keeps it and passes every message on.
    proxy.cut();
    noticed(b.port, Instant::now()).await;
    for i in 0..20 {
        expected.push(send(format!("m{i}")).await);
    }
    // A message to everyone has no history to come back from: B counts it when it hears the
    // next one from A.
    let to_all = rest(a.port, "POST", "/:send", Some("everyone")).await;
    assert_eq!(to_all.status, 202);
    here.wait_count(expected.len() + 1).await;
    assert_eq!(
        there.count(),
        1,
        "nothing reaches node B while it is cut off"
    );
    assert_eq!(metric(a.port, "nerve_cluster_drops_total").await, 0.0);

    proxy.restore();
    all_ready(&ports).await;
    // What B missed of the group comes from its history, before anything newer.
    expected.push(send("after".into()).await);
    for c in [&there, &plain] {
        c.wait_count(expected.len()).await;
        assert_eq!(texts(c), expected, "every group message once, in order");
    }
    assert_eq!(
        there.sequence_ids(),
        (1..=expected.len() as u64).collect::<Vec<u64>>(),
        "the reliable client's sequence ids run on"
    );
    assert_eq!(there.resumes(), 0);
    let again = rest(a.port, "POST", "/:send", Some("everyone again")).await;
    assert_eq!(again.status, 202);
    there.wait_count(expected.len() + 1).await;
    assert_eq!(
        texts(&there).last().map(String::as_str),
        Some("everyone again")
    );
    // Counted when the next message from A showed the gap.
    assert_eq!(
        metric(b.port, "nerve_cluster_drops_total").await,
        1.0,
        "node B counted the message to everyone it missed"
    );
    // And only once: the heartbeats after it, which tell B what A sent, add nothing.
    let beats = metric(b.port, "nerve_redis_latency_seconds_count").await;
    eventually(WAIT, "more heartbeats of node B", || async move {
        (metric(b_port, "nerve_redis_latency_seconds_count").await >= beats + 3.0).then_some(())
    })
    .await;
    assert_eq!(metric(b.port, "nerve_cluster_drops_total").await, 1.0);
    assert_eq!(metric(a.port, "nerve_cluster_drops_total").await, 0.0);
}
