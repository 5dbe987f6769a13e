//! A reliable client that closes its own socket with a close frame (any code, or none), as the
//! official clients and Azure's samples do to recover, keeps its session: it resumes on the
//! other node of the cluster, whose owner is alive and lets go, with the same connection id,
//! and gets every group message it missed once each and in order; afterwards, sends through
//! either node reach it on its new node.

use nerve_e2e::{Client, Node, WAIT, client_token, metric, rest};
use nerve_testkit::{RedisServer, eventually};
use serde_json::Value;

fn texts(c: &Client) -> Vec<String> {
    c.received()
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

async fn send(port: u16, path: &str, msg: &str) {
    let a = rest(port, "POST", path, Some(msg)).await;
    assert_eq!(a.status, 202, "POST {path}: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_its_socket_resumes_on_another_node_missing_nothing() {
    let redis = RedisServer::start();
    let a = Node::start("ca", &[redis.url()], false);
    let b = Node::start("cb", &[redis.url()], false);
    a.wait_ready().await;
    b.wait_ready().await;
    let mut ports = (a.port, b.port);
    for code in [None, Some(1000), Some(1001), Some(3001), Some(4000)] {
        // The client starts on `here` and resumes through `there`, which publishes; the next
        // round goes the other way.
        let (here, there) = ports;
        ports = (there, here);
        let c = Client::connect(here, &client_token(Some("closer")), true, &[there, here]).await;
        let id = c.id();
        c.join("g").await;
        let mut expected = Vec::new();
        for i in 0..10 {
            let msg = format!("{code:?}-before-{i}");
            send(there, "/groups/g/:send", &msg).await;
            expected.push(msg);
        }
        c.wait_count(expected.len()).await;
        c.close_socket(code).await;
        // Published while the client closes, moves and resumes.
        for i in 0..20 {
            let msg = format!("{code:?}-during-{i}");
            send(there, "/groups/g/:send", &msg).await;
            expected.push(msg);
        }
        c.wait_count(expected.len()).await;
        eventually(WAIT, "the resumption", || async {
            (c.resumes() == 1).then_some(())
        })
        .await;
        // The node it left no longer holds it: its sends follow the client.
        for path in [
            format!("/connections/{id}/:send"),
            "/users/closer/:send".into(),
        ] {
            let msg = format!("{code:?}-after via {path}");
            send(here, &path, &msg).await;
            expected.push(msg);
            c.wait_count(expected.len()).await;
        }
        assert_eq!(
            texts(&c),
            expected,
            "close {code:?}: every message once, in order"
        );
        assert_eq!(
            c.sequence_ids(),
            (1..=expected.len() as u64).collect::<Vec<_>>(),
            "close {code:?}: sequence ids run on across the close"
        );
        assert_eq!(c.id(), id, "close {code:?}: the same connection");
        // The hub answered the client's close frame with its echo (1005: none in the frame).
        assert_eq!(
            c.close_frames().iter().map(|f| f.code).collect::<Vec<_>>(),
            [code.unwrap_or(1005)],
            "close {code:?}"
        );
        assert!(c.closed().is_none(), "close {code:?}");
        c.request(serde_json::json!({"type": "leaveGroup", "group": "g"}))
            .await;
    }
    // Each node resumed the sessions that moved to it.
    assert!(metric(b.port, "nerve_reconnections_total").await >= 3.0);
    assert!(metric(a.port, "nerve_reconnections_total").await >= 2.0);
}
