//! A rolling restart of all three nodes under steady traffic: each node drains (SIGTERM), its
//! reliable clients resume on the others, it comes back, and no reliable client misses or
//! repeats a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nerve_e2e::{Client, Node, WAIT, client_token, ready, rest};
use nerve_testkit::{RedisServer, eventually};
use serde_json::Value;

/// Publishes `m0`, `m1`, … through the ready nodes in turn until `stop`, each until one node
/// accepts it (202); returns the accepted messages.
async fn publish(ports: Vec<u16>, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut accepted = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let msg = format!("m{i}");
        let mut sent = false;
        for k in 0..ports.len() * 20 {
            let port = ports[(i + k) % ports.len()];
            // As a load balancer does: only nodes that say they are ready get traffic.
            if ready(port).await != Some(true) {
                continue;
            }
            if rest(port, "POST", "/groups/roll/:send", Some(&msg))
                .await
                .status
                == 202
            {
                sent = true;
                break;
            }
        }
        assert!(sent, "no node accepted {msg}");
        accepted.push(msg);
        i += 1;
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_loses_nothing_for_reliable_clients() {
    let redis = RedisServer::start();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&format!("r{i}"), &[redis.url()], false))
        .collect();
    for n in &nodes {
        n.wait_ready().await;
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let mut clients = Vec::new();
    for i in 0..6 {
        let user = format!("v{i}");
        let c = Client::connect(ports[i / 2], &client_token(Some(&user)), true, &ports).await;
        c.join("roll").await;
        clients.push(c);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish(ports.clone(), stop.clone()));
    for node in nodes.iter_mut() {
        node.terminate();
        node.restart();
        node.wait_ready().await;
    }
    // Traffic continues a little after the last node is back.
    let all = &clients;
    let seen: Vec<usize> = all.iter().map(Client::count).collect();
    let seen = &seen;
    let after = eventually(WAIT, "traffic after the restarts", || async move {
        all.iter()
            .zip(seen)
            .all(|(c, n)| c.count() >= n + 20)
            .then_some(())
    });
    if tokio::time::timeout(WAIT, after).await.is_err() {
        let state: Vec<_> = all
            .iter()
            .map(|c| (c.count(), c.resumes(), c.closed()))
            .collect();
        panic!("no traffic after the restarts (count, resumes, closed): {state:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut expected = publisher.await.expect("publisher");
    expected.sort();
    let n = expected.len();
    let deadline = tokio::time::Instant::now() + WAIT;
    while clients.iter().any(|c| c.count() < n) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let report: Vec<String> = clients
        .iter()
        .map(|c| {
            let got: Vec<String> = c
                .received()
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            let missing: Vec<&String> = expected.iter().filter(|m| !got.contains(m)).collect();
            format!(
                "{}/{n} resumes {} missing {missing:?}",
                got.len(),
                c.resumes()
            )
        })
        .collect();
    eprintln!("{report:#?}");
    for (i, c) in clients.iter().enumerate() {
        let got: Vec<String> = c
            .received()
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let missing: Vec<&String> = expected.iter().filter(|m| !got.contains(m)).collect();
        assert!(
            missing.is_empty(),
            "client {i}: {} of {n} messages, {} resumes, closed {:?}, missing {missing:?}",
            c.count(),
            c.resumes(),
            c.closed()
        );
        let mut got = got;
        got.sort();
        assert_eq!(got, expected, "client {i}: every message exactly once");
        assert!(c.closed().is_none(), "client {i} still connected");
        assert!(c.resumes() >= 1, "client {i} resumed at least once");
    }
}
