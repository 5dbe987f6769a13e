//! End-to-end tests of the reliable protocol: sequence ids, acks, resume after a dropped socket
//! or a client's close frame, refused resumes, slow consumers, and graceful shutdown.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{ALL_ROLES, Client, Hub, JSON, RELIABLE, metric};

async fn connected(c: &mut Client) -> (String, String) {
    let v = c.next_json().await;
    assert_eq!(v["event"], "connected");
    (
        v["connectionId"]
            .as_str()
            .expect("connectionId")
            .to_string(),
        v["reconnectionToken"]
            .as_str()
            .expect("reconnectionToken")
            .to_string(),
    )
}

fn resume_url(hub: &Hub, id: &str, token: &str, with_access_token: bool) -> String {
    let mut url = format!(
        "ws://127.0.0.1:{}/client/hubs/chat?awps_connection_id={id}&awps_reconnection_token={token}",
        hub.port
    );
    if with_access_token {
        url.push_str(&format!(
            "&access_token={}",
            hub.token("chat", Some("r"), ALL_ROLES, &[])
        ));
    }
    url
}

async fn publish(p: &mut Client, ack: u64, data: Value) {
    p.send(json!({"type":"sendToGroup","group":"g","ackId":ack,"data":data}))
        .await;
    assert_eq!(p.ack(ack).await["success"], true);
}

#[tokio::test]
async fn resume_after_drop_resends_unacked_in_order_and_keeps_groups() {
    let hub = Hub::start();
    let mut r = hub
        .connect("chat", Some("r"), ALL_ROLES, Some(RELIABLE))
        .await;
    let (id, token) = connected(&mut r).await;
    r.send(json!({"type":"joinGroup","group":"g","ackId":1}))
        .await;
    r.ack(1).await;
    let mut p = hub.connect("chat", Some("p"), ALL_ROLES, Some(JSON)).await;
    p.next_json().await;

    for i in 1..=5 {
        publish(&mut p, i, json!(i)).await;
    }
    for i in 1..=5 {
        let m = r.until(|v| v["type"] == "message").await;
        assert_eq!(m["sequenceId"], i);
    }
    r.send(json!({"type":"sequenceAck","sequenceId":3})).await;
    // Make sure the ack was processed before the socket drops.
    r.send(json!({"type":"ping"})).await;
    r.until(|v| v["type"] == "pong").await;
    r.drop_socket();

    // Published while the client is away.
    for i in 6..=8 {
        publish(&mut p, i, json!(i)).await;
    }
    for with_token in [true, false] {
        let mut r2 = Client::connect(&resume_url(&hub, &id, &token, with_token), Some(RELIABLE))
            .await
            .unwrap();
        let (id2, _) = connected(&mut r2).await;
        assert_eq!(id2, id, "resumed session keeps its connection id");
        if with_token {
            // Unacked 4..=8 come back in order with their original sequence ids.
            for i in 4..=8 {
                let m = r2.next_json().await;
                assert_eq!(
                    (m["sequenceId"].clone(), m["data"].clone()),
                    (json!(i), json!(i))
                );
            }
            r2.send(json!({"type":"sequenceAck","sequenceId":8})).await;
            // Still in the group after resuming.
            publish(&mut p, 9, json!(9)).await;
            let m = r2.next_json().await;
            assert_eq!(
                (m["sequenceId"].clone(), m["data"].clone()),
                (json!(9), json!(9))
            );
            r2.send(json!({"type":"sequenceAck","sequenceId":9})).await;
            r2.send(json!({"type":"ping"})).await;
            r2.until(|v| v["type"] == "pong").await;
            r2.drop_socket();
        } else {
            // Everything was acked: nothing is resent; new messages continue the numbering.
            publish(&mut p, 10, json!(10)).await;
            let m = r2.next_json().await;
            assert_eq!(
                (m["sequenceId"].clone(), m["data"].clone()),
                (json!(10), json!(10))
            );
        }
    }
}

#[tokio::test]
async fn a_client_close_is_answered_and_keeps_the_session_whatever_the_code() {
    let hub = Hub::start();
    let mut p = hub.connect("chat", Some("p"), ALL_ROLES, Some(JSON)).await;
    p.next_json().await;
    let mut ack = 0;
    // No code is what the official JS client's own close sends; 1001 the Python SDK's
    // recovery test; 3001 Azure's reliable chat sample.
    for code in [None, Some(1000), Some(1001), Some(3001), Some(4000)] {
        let mut r = hub
            .connect("chat", Some("r"), ALL_ROLES, Some(RELIABLE))
            .await;
        let (id, token) = connected(&mut r).await;
        r.send(json!({"type":"joinGroup","group":"g","ackId":1}))
            .await;
        r.ack(1).await;
        for i in 1..=3 {
            ack += 1;
            publish(&mut p, ack, json!(i)).await;
            let m = r.until(|v| v["type"] == "message").await;
            assert_eq!(
                (m["sequenceId"].clone(), m["data"].clone()),
                (json!(i), json!(i))
            );
        }
        r.send(json!({"type":"sequenceAck","sequenceId":2})).await;
        r.send(json!({"type":"ping"})).await;
        r.until(|v| v["type"] == "pong").await;

        // A clean close: the hub echoes the code, with no `disconnected` before it.
        let closed = r.close_with(code).await;
        assert_eq!(closed.code, code, "{closed:?}");
        assert!(closed.frames.is_empty(), "{closed:?}");

        // Published while the client is away.
        for i in 4..=5 {
            ack += 1;
            publish(&mut p, ack, json!(i)).await;
        }
        let mut r2 = Client::connect(&resume_url(&hub, &id, &token, false), Some(RELIABLE))
            .await
            .unwrap();
        let (id2, _) = connected(&mut r2).await;
        assert_eq!(
            id2, id,
            "close {code:?}: the session keeps its connection id"
        );
        // Unacked 3, then 4 and 5, each once with its sequence id; then the group continues.
        ack += 1;
        publish(&mut p, ack, json!(6)).await;
        for i in 3..=6 {
            let m = r2.next_json().await;
            assert_eq!(
                (m["sequenceId"].clone(), m["data"].clone()),
                (json!(i), json!(i)),
                "close {code:?}"
            );
        }
        r2.send(json!({"type":"sequenceAck","sequenceId":6})).await;
        r2.send(json!({"type":"leaveGroup","group":"g","ackId":2}))
            .await;
        r2.ack(2).await;
    }
}

#[tokio::test]
async fn a_session_closed_by_its_client_expires_after_the_reconnect_window() {
    let hub = Hub::start_with_config("[limits]\nreconnect_window_secs = 1\n");
    let mut r = hub.connect("chat", None, ALL_ROLES, Some(RELIABLE)).await;
    let (id, token) = connected(&mut r).await;
    assert_eq!(r.close_with(Some(1000)).await.code, Some(1000));
    // Kept for the window, then gone without a client.
    nerve_testkit::eventually(Duration::from_secs(5), "session expiry", || async {
        (metric(&hub.metrics().await, "nerve_connections") == 0.0).then_some(())
    })
    .await;
    let url = resume_url(&hub, &id, &token, false);
    let mut c = Client::connect(&url, Some(RELIABLE)).await.unwrap();
    let closed = c.closed().await;
    assert_eq!(closed.frames[0]["event"], "disconnected");
    assert_eq!(closed.code, Some(1008));
}

#[tokio::test]
async fn unknown_or_forged_sessions_get_disconnected_then_1008() {
    let hub = Hub::start();
    let mut r = hub.connect("chat", None, ALL_ROLES, Some(RELIABLE)).await;
    let (id, _token) = connected(&mut r).await;
    for url in [
        resume_url(&hub, "no-such-connection", "x", false),
        resume_url(&hub, &id, "forged-token", false),
    ] {
        let mut c = Client::connect(&url, Some(RELIABLE))
            .await
            .expect("upgrade is accepted");
        let closed = c.closed().await;
        assert_eq!(closed.code, Some(1008));
        assert_eq!(closed.frames[0]["type"], "system");
        assert_eq!(closed.frames[0]["event"], "disconnected");
    }
    // The real session was not disturbed by the forged attempt.
    r.send(json!({"type":"ping"})).await;
    assert_eq!(r.next_json().await["type"], "pong");
}

#[tokio::test]
async fn session_expires_after_the_reconnect_window() {
    let hub = Hub::start_with_config("[limits]\nreconnect_window_secs = 1\n");
    let mut r = hub.connect("chat", None, ALL_ROLES, Some(RELIABLE)).await;
    let (id, token) = connected(&mut r).await;
    r.drop_socket();
    // The session stays for the window, then disappears without a client.
    nerve_testkit::eventually(Duration::from_secs(5), "session expiry", || async {
        (metric(&hub.metrics().await, "nerve_connections") == 0.0).then_some(())
    })
    .await;
    let url = resume_url(&hub, &id, &token, false);
    let mut c = Client::connect(&url, Some(RELIABLE)).await.unwrap();
    let closed = c.closed().await;
    assert_eq!(closed.frames[0]["event"], "disconnected");
    assert_eq!(closed.code, Some(1008));
}

#[tokio::test]
async fn slow_consumer_is_cut_off_without_stalling_others() {
    let hub = Hub::start_with_config("[limits]\noutbox_messages = 16\n");
    let mut slow = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    let mut fast = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    let mut p = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    for (i, c) in [&mut slow, &mut fast, &mut p].into_iter().enumerate() {
        c.next_json().await;
        if i < 2 {
            c.send(json!({"type":"joinGroup","group":"g","ackId":1}))
                .await;
            c.ack(1).await;
        }
    }
    // `slow` stops reading; 64 KiB messages fill its socket buffers, then its outbox.
    let big = "x".repeat(64 * 1024);
    let total = 400u64;
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        while got < total {
            let m = fast.until(|v| v["type"] == "message").await;
            assert_eq!(m["data"].as_str().map(str::len), Some(64 * 1024));
            got += 1;
        }
        got
    });
    for i in 0..total {
        p.send(
            json!({"type":"sendToGroup","group":"g","ackId":i + 10,"dataType":"text","data":big}),
        )
        .await;
        assert_eq!(
            p.ack(i + 10).await["success"],
            true,
            "publisher was refused or stalled"
        );
    }
    assert_eq!(
        reader.await.unwrap(),
        total,
        "the fast reader lost messages"
    );
    let scrape = hub.metrics().await;
    assert!(
        metric(&scrape, "nerve_slow_consumer_kicks_total") >= 1.0,
        "{scrape}"
    );
    // Once the slow reader drains its socket it sees the connection closed.
    let closed = slow.closed().await;
    assert!(
        closed.code.is_none() || closed.code == Some(1008),
        "{closed:?}"
    );
    // Left: the publisher (the fast reader's task has ended and dropped its client).
    nerve_testkit::eventually(
        Duration::from_secs(5),
        "slow and fast clients removed",
        || async { (metric(&hub.metrics().await, "nerve_connections") == 1.0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn graceful_shutdown_sends_disconnected_and_close() {
    let mut hub = Hub::start();
    let mut c = hub.connect("chat", None, ALL_ROLES, Some(RELIABLE)).await;
    connected(&mut c).await;
    let (closed, clean) = tokio::join!(c.closed(), async { hub.terminate() });
    assert!(clean, "nerve did not exit cleanly on SIGTERM");
    assert_eq!(closed.code, Some(1001));
    assert_eq!(closed.frames[0]["event"], "disconnected");
}

/// `ttlSeconds` and `messageTtlSeconds`: a message whose TTL passes while a reliable client is
/// away is not resent on resume (nor delivered at all); one without a TTL (or 0) still is. Out
/// of range is refused on the ack and with a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_not_resent_on_resume() {
    let hub = Hub::start();
    let mut r = hub
        .connect("chat", Some("r"), ALL_ROLES, Some(RELIABLE))
        .await;
    let (id, token) = connected(&mut r).await;
    r.send(json!({"type":"joinGroup","group":"g","ackId":1}))
        .await;
    r.ack(1).await;
    let mut p = hub.connect("chat", Some("p"), ALL_ROLES, Some(JSON)).await;
    p.next_json().await;
    // Delivered in time, a message with a TTL arrives as any other.
    p.send(json!({"type":"sendToGroup","group":"g","ackId":2,"ttlSeconds":30,"data":"in time"}))
        .await;
    assert_eq!(p.ack(2).await["success"], true);
    let m = r.until(|v| v["type"] == "message").await;
    assert_eq!(
        (m["data"].clone(), m["sequenceId"].clone()),
        (json!("in time"), json!(1))
    );
    r.send(json!({"type":"sequenceAck","sequenceId":1})).await;
    r.send(json!({"type":"ping"})).await;
    r.until(|v| v["type"] == "pong").await;
    r.drop_socket();

    p.send(json!({"type":"sendToGroup","group":"g","ackId":3,"ttlSeconds":1,"data":"short"}))
        .await;
    assert_eq!(p.ack(3).await["success"], true);
    p.send(json!({"type":"sendToGroup","group":"g","ackId":4,"ttlSeconds":0,"data":"forever"}))
        .await;
    assert_eq!(p.ack(4).await["success"], true);
    let rest = hub.rest(0);
    let a = rest
        .call(
            axum::http::Method::POST,
            "/api/hubs/chat/users/r/:send?messageTtlSeconds=1",
            Some(("text/plain", b"rest short".to_vec())),
        )
        .await;
    assert_eq!(a.status, 202);
    let a = rest
        .call(
            axum::http::Method::POST,
            "/api/hubs/chat/users/r/:send",
            Some(("text/plain", b"rest forever".to_vec())),
        )
        .await;
    assert_eq!(a.status, 202);
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let mut r2 = Client::connect(&resume_url(&hub, &id, &token, true), Some(RELIABLE))
        .await
        .unwrap();
    connected(&mut r2).await;
    let first = r2.until(|v| v["type"] == "message").await;
    let second = r2.until(|v| v["type"] == "message").await;
    assert_eq!(
        (first["data"].clone(), second["data"].clone()),
        (json!("forever"), json!("rest forever")),
        "expired messages were resent"
    );
    // Their sequence ids are skipped, not reused.
    assert_eq!(first["sequenceId"], 3);
    assert_eq!(second["sequenceId"], 5);
    r2.send(json!({"type":"ping"})).await;
    assert_eq!(
        r2.until(|v| v["type"] != "ack").await["type"],
        "pong",
        "nothing else came"
    );

    // Out of range.
    p.send(json!({"type":"sendToGroup","group":"g","ackId":5,"ttlSeconds":301,"data":"x"}))
        .await;
    let ack = p.ack(5).await;
    assert_eq!(ack["success"], false);
    assert_eq!(ack["error"]["name"], "BadRequest");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("'ttlSeconds' must be an integer from 0 to 300"),
        "{ack}"
    );
    let a = rest
        .call(
            axum::http::Method::POST,
            "/api/hubs/chat/users/r/:send?messageTtlSeconds=301",
            Some(("text/plain", b"x".to_vec())),
        )
        .await;
    assert_eq!(a.status, 400);
}
