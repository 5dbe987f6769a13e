//! The hub client against the real binary: groups, data types, acks, recovery, rejoin.

mod common;

use std::time::Duration;

use common::{Nerve, mint};
use nerve_client::{HubClient, HubEvents, HubOptions, Message, Payload};
use serde_json::json;

const ALL: &[&str] = &["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
const WAIT: Duration = Duration::from_secs(15);

async fn next(events: &mut HubEvents) -> Message {
    tokio::time::timeout(WAIT, events.next_message())
        .await
        .expect("a message in time")
        .expect("client still running")
}

async fn connect(url: &str) -> (HubClient, HubEvents) {
    HubClient::connect(url, HubOptions::default())
        .await
        .expect("connect")
}

#[tokio::test]
async fn join_send_receive_every_data_type_and_no_echo() {
    let hub = Nerve::start();
    let (alice, mut alice_in) = connect(&hub.client_url("chat", "alice", ALL)).await;
    let (bob, mut bob_in) = connect(&hub.client_url("chat", "bob", ALL)).await;
    assert_eq!(alice.user_id().as_deref(), Some("alice"));
    bob.join_group("room").await.expect("join");
    alice.join_group("room").await.expect("join");
    let sent = [
        Payload::Json(json!({"n": 1})),
        Payload::Text("plain".into()),
        Payload::Binary(vec![0, 1, 255]),
    ];
    for p in &sent {
        alice
            .send_to_group("room", p.clone(), true)
            .await
            .expect("send");
    }
    alice
        .send_to_group("room", Payload::Text("echoed".into()), false)
        .await
        .expect("send");
    for (i, p) in sent.iter().enumerate() {
        let m = next(&mut bob_in).await;
        assert_eq!(m.payload, *p);
        assert_eq!(m.group.as_deref(), Some("room"));
        assert_eq!(m.from_user_id.as_deref(), Some("alice"));
        assert_eq!(m.sequence_id, Some(i as u64 + 1));
    }
    // noEcho kept the first three from alice; the fourth is echoed.
    assert_eq!(
        next(&mut alice_in).await.payload,
        Payload::Text("echoed".into())
    );
    bob.leave_group("room").await.expect("leave");
    alice
        .send_to_group("room", Payload::Text("gone".into()), false)
        .await
        .expect("send");
    alice
        .publish_to_group("room", Payload::Text("no ack".into()), false)
        .await
        .expect("publish");
    assert_eq!(
        next(&mut alice_in).await.payload,
        Payload::Text("gone".into())
    );
    assert_eq!(
        next(&mut bob_in).await.payload,
        Payload::Text("echoed".into())
    );
    assert_eq!(
        next(&mut alice_in).await.payload,
        Payload::Text("no ack".into())
    );
}

#[tokio::test]
async fn refused_requests_come_back_as_named_errors() {
    let hub = Nerve::start();
    let (nobody, _in) = connect(&hub.client_url("chat", "mallory", &[])).await;
    let e = nobody.join_group("room").await.expect_err("forbidden");
    assert_eq!(e.name(), Some("Forbidden"));
    let e = nobody
        .send_to_group("room", Payload::Text("x".into()), false)
        .await
        .expect_err("forbidden");
    assert_eq!(e.name(), Some("Forbidden"));
    let bad = HubClient::connect(
        &format!("{}x", hub.client_url("chat", "m", &[])),
        HubOptions::default(),
    )
    .await;
    assert!(bad.is_err(), "a bad signature must fail the handshake");
}

#[tokio::test]
async fn server_messages_from_rest_arrive() {
    let hub = Nerve::start();
    let (_erin, mut inbox) = connect(&hub.client_url("chat", "erin", &[])).await;
    let url = format!("{}/api/hubs/chat/users/erin/:send", hub.endpoint);
    let status = reqwest::Client::new()
        .post(&url)
        .bearer_auth(mint(&url, "", &[]))
        .header("content-type", "application/json")
        .body(r#"{"x":1}"#)
        .send()
        .await
        .expect("rest send")
        .status();
    assert_eq!(status.as_u16(), 202);
    let m = next(&mut inbox).await;
    assert_eq!((m.group, m.payload), (None, Payload::Json(json!({"x": 1}))));
}

#[tokio::test]
async fn a_dropped_socket_recovers_without_loss_or_duplicates() {
    let hub = Nerve::start();
    let (publisher, _p) = connect(&hub.client_url("chat", "pub", ALL)).await;
    let slow_acks = HubOptions {
        sequence_ack_interval: Duration::from_secs(30),
        ..HubOptions::default()
    };
    let (sub, mut inbox) = HubClient::connect(&hub.client_url("chat", "sub", ALL), slow_acks)
        .await
        .expect("connect");
    sub.join_group("feed").await.expect("join");
    let first_id = sub.connection_id();
    const TOTAL: u64 = 400;
    let sender = tokio::spawn(async move {
        for i in 0..TOTAL {
            publisher
                .send_to_group("feed", Payload::Json(json!(i)), false)
                .await
                .expect("publish");
        }
        publisher
    });
    let mut got = Vec::new();
    while got.len() < 50 {
        got.push(next(&mut inbox).await.payload);
    }
    sub.drop_socket().await.expect("drop");
    while got.len() < TOTAL as usize {
        got.push(next(&mut inbox).await.payload);
    }
    let publisher = sender.await.expect("sender");
    let want: Vec<Payload> = (0..TOTAL).map(|i| Payload::Json(json!(i))).collect();
    assert_eq!(got, want, "lost, duplicated or reordered messages");
    assert_eq!(sub.recoveries(), 1);
    assert_eq!(sub.connection_id(), first_id);
    let dups = sub
        .stats()
        .duplicates
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        dups > 0,
        "the hub resends unacked messages; the client must drop them"
    );
    publisher
        .send_to_group("feed", Payload::Text("after".into()), false)
        .await
        .expect("send");
    assert_eq!(
        next(&mut inbox).await.payload,
        Payload::Text("after".into())
    );
}

#[tokio::test]
async fn a_refused_recovery_opens_a_new_connection_and_rejoins() {
    let hub = Nerve::start();
    let (publisher, _p) = connect(&hub.client_url("chat", "pub", ALL)).await;
    let (sub, mut inbox) = connect(&hub.client_url("chat", "sub", ALL)).await;
    sub.join_group("feed").await.expect("join");
    let old = sub.connection_id().expect("id");
    let url = format!("{}/api/hubs/chat/connections/{old}", hub.endpoint);
    let status = reqwest::Client::new()
        .delete(format!("{url}?reason=bye"))
        .bearer_auth(mint(&url, "", &[]))
        .send()
        .await
        .expect("rest close")
        .status();
    assert_eq!(status.as_u16(), 204);
    nerve_testkit::eventually(WAIT, "a new connection", || {
        let id = sub.connection_id();
        let old = old.clone();
        async move { id.filter(|id| *id != old) }
    })
    .await;
    // The rejoin races with these sends: publish until one arrives through the group.
    let deadline = tokio::time::Instant::now() + WAIT;
    let message = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group was not rejoined"
        );
        publisher
            .send_to_group("feed", Payload::Text("ping".into()), false)
            .await
            .expect("send");
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), inbox.next_message()).await
        {
            break m;
        }
    };
    assert_eq!(message.group.as_deref(), Some("feed"));
    assert_eq!(
        sub.stats()
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn eager_sequence_acks_keep_a_fast_stream_within_the_hub_buffer() {
    // The hub closes a reliable connection at 1000 unacknowledged messages; with the periodic
    // ack far away, only the ack after every 300 messages keeps this stream alive.
    let hub = Nerve::start();
    let (publisher, _p) = connect(&hub.client_url("chat", "pub", ALL)).await;
    let slow_acks = HubOptions {
        sequence_ack_interval: Duration::from_secs(60),
        ..HubOptions::default()
    };
    let (sub, mut inbox) = HubClient::connect(&hub.client_url("chat", "sub", ALL), slow_acks)
        .await
        .expect("connect");
    sub.join_group("fast").await.expect("join");
    const TOTAL: u64 = 1500;
    let sender = tokio::spawn(async move {
        for i in 0..TOTAL {
            publisher
                .send_to_group("fast", Payload::Json(json!(i)), false)
                .await
                .expect("publish");
        }
    });
    for i in 0..TOTAL {
        assert_eq!(next(&mut inbox).await.payload, Payload::Json(json!(i)));
    }
    sender.await.expect("sender");
    let stats = sub.stats();
    assert_eq!(
        stats.reconnects.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(sub.recoveries(), 0);
}

#[tokio::test]
async fn the_plain_json_protocol_reconnects_and_rejoins_after_a_drop() {
    let hub = Nerve::start();
    let (publisher, _p) = connect(&hub.client_url("chat", "pub", ALL)).await;
    let plain = HubOptions {
        protocol: nerve_client::JSON.into(),
        ..HubOptions::default()
    };
    let (sub, mut inbox) = HubClient::connect(&hub.client_url("chat", "sub", ALL), plain)
        .await
        .expect("connect");
    sub.join_group("feed").await.expect("join");
    publisher
        .send_to_group("feed", Payload::Text("before".into()), false)
        .await
        .expect("send");
    let first = next(&mut inbox).await;
    assert_eq!(
        (first.payload, first.sequence_id),
        (Payload::Text("before".into()), None)
    );
    let old = sub.connection_id();
    sub.drop_socket().await.expect("drop");
    let deadline = tokio::time::Instant::now() + WAIT;
    let message = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group was not rejoined"
        );
        publisher
            .send_to_group("feed", Payload::Text("after".into()), false)
            .await
            .expect("send");
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), inbox.next_message()).await
        {
            break m;
        }
    };
    assert_eq!(message.payload, Payload::Text("after".into()));
    assert_ne!(sub.connection_id(), old);
}

#[tokio::test]
async fn events_without_an_upstream_are_refused_and_pings_are_answered() {
    let hub = Nerve::start();
    let fast_pings = HubOptions {
        ping_interval: Duration::from_millis(100),
        sequence_ack_interval: Duration::from_millis(100),
        ..HubOptions::default()
    };
    let (c, _events) = HubClient::connect(&hub.client_url("chat", "gina", &[]), fast_pings)
        .await
        .expect("connect");
    let e = c
        .send_event("typing", Payload::Text("x".into()))
        .await
        .expect_err("no upstream");
    assert_eq!(e.name(), Some("NotFound"));
    nerve_testkit::eventually(WAIT, "pongs for the client's pings", || {
        let pongs = c.stats().pongs.load(std::sync::atomic::Ordering::Relaxed);
        async move { (pongs >= 2).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_request_in_flight_when_the_socket_drops_runs_exactly_once() {
    // The frame leaves, then the socket is cut before its ack can be read: after recovery the
    // client resends it with the same ackId, and the hub either runs it then or answers
    // `Duplicate` (it already ran), which the client takes as success.
    let hub = Nerve::start();
    let (publisher, _p) = connect(&hub.client_url("chat", "pub", ALL)).await;
    let (sub, mut inbox) = connect(&hub.client_url("chat", "sub", ALL)).await;
    sub.join_group("feed").await.expect("join");
    for round in 0..5 {
        let send = publisher.send_to_group("feed", Payload::Json(json!(round)), false);
        let (sent, dropped) = tokio::join!(send, publisher.drop_socket());
        sent.expect("the send succeeds after recovery");
        dropped.expect("drop");
    }
    publisher
        .send_to_group("feed", Payload::Text("end".into()), false)
        .await
        .expect("send");
    let mut got = Vec::new();
    loop {
        match next(&mut inbox).await.payload {
            Payload::Text(t) if t == "end" => break,
            p => got.push(p),
        }
    }
    let want: Vec<Payload> = (0..5).map(|i| Payload::Json(json!(i))).collect();
    assert_eq!(got, want);
    assert_eq!(publisher.recoveries(), 5);
}

#[tokio::test]
async fn a_hub_restart_ends_in_a_new_connection_with_groups_rejoined() {
    // The hub crashes: recovery attempts fail to connect until it is back, then the new
    // process knows no session (close 1008), so the client connects afresh and rejoins.
    let mut hub = Nerve::start();
    let port = hub.port();
    let url = hub.client_url("chat", "sub", ALL);
    let (sub, mut inbox) = connect(&url).await;
    sub.join_group("feed").await.expect("join");
    let old = sub.connection_id();
    hub.kill();
    let hub = Nerve::start_on(port);
    let (publisher, _p) = connect(&hub.client_url("chat", "pub", ALL)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let message = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejoin after the restart"
        );
        publisher
            .send_to_group("feed", Payload::Text("back".into()), false)
            .await
            .expect("send");
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), inbox.next_message()).await
        {
            break m;
        }
    };
    assert_eq!(message.payload, Payload::Text("back".into()));
    assert_ne!(sub.connection_id(), old);
    assert_eq!(
        sub.stats()
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_client_whose_hub_was_down_comes_back_from_its_last_offset() {
    // Two nodes on one Redis keep the group's history. The subscriber's node is down while
    // messages are published through the other one, so nothing of its connection is left
    // when it comes back (the plain JSON protocol has no session to resume): the client
    // rejoins after the last offset it saw and gets what it missed, once each and in order.
    let redis = nerve_testkit::RedisServer::start();
    let config = std::env::temp_dir().join(format!(
        "nerve-client-history-{}-{}.toml",
        std::process::id(),
        nerve_testkit::free_port()
    ));
    std::fs::write(
        &config,
        "[hubs.chat]\nhistory = { max_messages = 100, max_age_secs = 600 }\n\
         [cluster]\nheartbeat_ms = 200\npresence_ttl_ms = 1000\n",
    )
    .expect("config");
    let config = config.to_string_lossy().to_string();
    let args = |id: &'static str| {
        let (redis, config) = (redis.url(), config.clone());
        move |port| {
            let a = ["--redis", &redis, "--node-id", id, "--config", &config];
            Nerve::start_with(port, &a)
        }
    };
    let (start_a, start_b) = (args("ca"), args("cb"));
    let mut a = start_a(0);
    let b = start_b(0);
    let port = a.port();
    let opts = HubOptions {
        protocol: nerve_client::JSON.to_string(),
        ..HubOptions::default()
    };
    let (sub, mut inbox) = HubClient::connect(&a.client_url("chat", "sub", ALL), opts)
        .await
        .expect("connect");
    sub.join_group("feed").await.expect("join");
    let (publisher, _p) = connect(&b.client_url("chat", "pub", ALL)).await;
    // Until the join reached the other node, a message may not arrive: publish until one does.
    let first = loop {
        publisher
            .send_to_group("feed", Payload::Text("first".into()), false)
            .await
            .expect("send");
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), inbox.next_message()).await
        {
            break m;
        }
    };
    assert!(first.offset.is_some(), "offset: {first:?}");
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(300), inbox.next_message()).await
    {}
    a.kill();
    let missed: Vec<Payload> = (0..10)
        .map(|i| Payload::Text(format!("missed-{i}")))
        .collect();
    for p in &missed {
        publisher
            .send_to_group("feed", p.clone(), false)
            .await
            .expect("send");
    }
    let _a = start_a(port);
    let mut got = Vec::new();
    let mut offsets = Vec::new();
    for _ in 0..missed.len() {
        let m = next(&mut inbox).await;
        offsets.push(m.offset.expect("offset"));
        got.push(m.payload);
    }
    assert_eq!(got, missed, "what it missed, once each, in order");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    assert!(offsets[0] > first.offset.expect("offset"));
    publisher
        .send_to_group("feed", Payload::Text("live".into()), false)
        .await
        .expect("send");
    assert_eq!(next(&mut inbox).await.payload, Payload::Text("live".into()));
}
