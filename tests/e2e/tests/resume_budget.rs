//! A session resumed on another node is a connection like any other there: it takes a place in
//! that node's connection budget and counts in `nerve_connections_opened_total`.

use nerve_e2e::{Client, Node, WAIT, client_token, metric};
use nerve_testkit::{RedisServer, eventually};

/// The HTTP status a new client connection to `port` gets.
async fn handshake_status(port: u16, user: &str) -> u16 {
    use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest, http::HeaderValue};
    let url = format!(
        "ws://127.0.0.1:{port}/client/hubs/{}?access_token={}",
        nerve_e2e::HUB,
        client_token(Some(user))
    );
    let mut req = url.into_client_request().expect("a client request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(nerve_e2e::JSON),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, r)) => r.status().as_u16(),
        Err(Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("handshake to {port} failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_counts_against_the_budget_and_as_opened() {
    let redis = RedisServer::start();
    let mut a = Node::start("ra", &[redis.url()], false);
    let b = Node::start_with(
        "rb",
        &[redis.url()],
        false,
        "[limits]\nmax_connections = 1\n",
    );
    a.wait_ready().await;
    b.wait_ready().await;
    assert_eq!(metric(b.port, "nerve_connections_opened_total").await, 0.0);

    let c = Client::connect(
        a.port,
        &client_token(Some("alice")),
        true,
        &[a.port, b.port],
    )
    .await;
    a.kill();
    eventually(WAIT, "a resume on node b", || async {
        (c.resumes() == 1).then_some(())
    })
    .await;
    // Counted once the session is registered there (after its claim on the store).
    eventually(
        WAIT,
        "the resumed session counted as opened on node b",
        || async {
            let opened = metric(b.port, "nerve_connections_opened_total").await;
            (opened > 0.0).then_some(())
        },
    )
    .await;
    assert_eq!(metric(b.port, "nerve_connections_opened_total").await, 1.0);
    assert_eq!(metric(b.port, "nerve_connections").await, 1.0);
    // Node b holds one connection, its limit: the resumed session took the place.
    assert_eq!(handshake_status(b.port, "bob").await, 503);
    assert!(c.closed().is_none(), "the resumed client stays connected");
}
