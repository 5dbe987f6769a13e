//! A bounded soak: waves of clients connect, join and leave groups, publish and disconnect
//! (some cleanly, some by dropping the socket) while a steady subscriber counts what it gets.
//! At the end nothing leaks: the connections gauge is back to 0, every open counted is closed,
//! and the hub's RSS is back near its baseline; a second run does the same on a Redis-backed hub
//! whose Redis restarts halfway. `NERVE_SOAK_SECS` sets the length (default 15 and 8 seconds).

use std::time::{Duration, Instant};

use nerve_testkit::RedisServer;
use serde_json::json;

use crate::harness::{ALL_ROLES, Client, Hub, JSON, WAIT, http_get, metric};

/// Reads `n` messages; returns `n`.
async fn drain(sub: &mut Client, n: u64) -> u64 {
    for _ in 0..n {
        sub.until(|v| v["type"] == "message").await;
    }
    n
}

fn soak_secs(default: u64) -> u64 {
    std::env::var("NERVE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_no_connection_or_memory_behind() {
    soak(Hub::start(), soak_secs(15), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_through_a_redis_restart_leaves_nothing_behind() {
    let redis = RedisServer::start();
    let hub = Hub::start_with_config(&format!("redis_url = \"{}\"\n", redis.url()));
    soak(hub, soak_secs(8), Some(redis)).await;
}

/// Churns for `secs`; with `redis`, restarts it once halfway (between waves, while the
/// subscriber stays connected) and waits for the hub to be ready again.
async fn soak(hub: Hub, secs: u64, mut redis: Option<RedisServer>) {
    let tasks_before = metric(&hub.metrics().await, "nerve_runtime_tasks");
    assert!(tasks_before > 0.0, "the hub reports its runtime tasks");
    let mut sub = hub
        .connect("chat", Some("sub"), ALL_ROLES, Some(JSON))
        .await;
    sub.next_json().await;
    sub.send(json!({"type": "joinGroup", "group": "g0", "ackId": 1}))
        .await;
    sub.ack(1).await;
    // Warm up allocator pools with one wave before taking the baseline.
    let wave = |w: u64| {
        let hub = &hub;
        async move {
            let clients = (0..50).map(|i| async move {
                let user = format!("u{}", i % 10);
                let mut c = hub
                    .connect("chat", Some(&user), ALL_ROLES, Some(JSON))
                    .await;
                c.next_json().await;
                let group = format!("g{}", i % 5);
                c.send(json!({"type": "joinGroup", "group": group, "ackId": 1}))
                    .await;
                assert_eq!(c.ack(1).await["success"], true);
                c.send(
                    json!({"type": "sendToGroup", "group": "g0", "dataType": "json",
                    "data": {"wave": w, "i": i}, "noEcho": true, "ackId": 2}),
                )
                .await;
                assert_eq!(c.ack(2).await["success"], true);
                c.send(json!({"type": "leaveGroup", "group": group, "ackId": 3}))
                    .await;
                assert_eq!(c.ack(3).await["success"], true);
                if i % 2 == 0 {
                    c.send_raw(tokio_tungstenite::tungstenite::Message::Close(None))
                        .await;
                    c.closed().await;
                } else {
                    c.drop_socket();
                }
            });
            futures_util::future::join_all(clients).await;
        }
    };
    let mut redis_restarted = false;
    let mut received = 0u64;
    let mut waves = 0u64;
    wave(waves).await;
    received += drain(&mut sub, 50).await;
    waves += 1;
    let baseline = hub.rss_kib();
    let end = Instant::now() + Duration::from_secs(secs);
    let halfway = Instant::now() + Duration::from_secs(secs / 2);
    let port = hub.port;
    while Instant::now() < end {
        if !redis_restarted
            && Instant::now() > halfway
            && let Some(mut r) = redis.take()
        {
            r.restart();
            nerve_testkit::eventually(WAIT, "readiness after the Redis restart", || async move {
                let body = http_get(port, "/readyz").await;
                body.contains("\"ready\":true").then_some(())
            })
            .await;
            // Keep the server alive until the end of the test.
            redis = Some(r);
            redis_restarted = true;
        }
        wave(waves).await;
        received += drain(&mut sub, 50).await;
        waves += 1;
    }
    assert!(
        redis.is_none() || redis_restarted,
        "the run ended before the Redis restart"
    );
    // Every churned connection is gone: only the subscriber remains, then none.
    hub.wait_for_metric("nerve_connections", "churned connections to close", |n| {
        n == 1.0
    })
    .await;
    let scrape = hub.metrics().await;
    assert_eq!(
        metric(&scrape, "nerve_connections_opened_total"),
        (waves * 50 + 1) as f64
    );
    assert_eq!(received, waves * 50);
    sub.send_raw(tokio_tungstenite::tungstenite::Message::Close(None))
        .await;
    sub.closed().await;
    hub.wait_for_metric("nerve_connections", "the last connection to close", |n| {
        n == 0.0
    })
    .await;
    // Every task a connection, session or join started has ended: the runtime holds what it
    // held before the first connection (the scrape's own connection and lazily started
    // background loops, such as the Redis reconnection, allow a few more).
    hub.wait_for_metric(
        "nerve_runtime_tasks",
        "runtime tasks to return to their level before the churn",
        |n| n <= tasks_before + 4.0,
    )
    .await;
    let tasks_after = metric(&hub.metrics().await, "nerve_runtime_tasks");
    let after = hub.rss_kib();
    println!(
        "{waves} waves of 50 connections; runtime tasks {tasks_before} before, {tasks_after} \
         after; RSS baseline {baseline} KiB, after {after} KiB"
    );
    assert!(
        after < baseline + 16 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB"
    );
}
