//! Tokens from a connection string against the real binary, and the reasons a refused token
//! comes back with.

mod common;

use std::time::Duration;

use common::{KEY, Nerve};
use nerve_client::{
    BusClient, ClientError, ClientToken, ConnectionString, HubClient, HubOptions, Payload,
    rest_token,
};

const ALL: &[&str] = &["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
const WAIT: Duration = Duration::from_secs(15);

fn connection_string(hub: &Nerve, key: &str) -> ConnectionString {
    ConnectionString::parse(&format!(
        "Endpoint={};AccessKey={key};Version=1.0;",
        hub.endpoint
    ))
    .expect("connection string")
}

#[tokio::test]
async fn client_bus_and_rest_tokens_from_the_connection_string_are_accepted() {
    let hub = Nerve::start();
    let cs = connection_string(&hub, KEY);
    let url = ClientToken::new(&cs, "chat")
        .user("alice")
        .roles(ALL.iter().copied())
        .group("lobby")
        .url();
    let (client, mut events) = HubClient::connect(&url, HubOptions::default())
        .await
        .expect("connect");
    assert_eq!(client.user_id().as_deref(), Some("alice"));
    client
        .send_to_group("lobby", Payload::Text("joined by the token".into()), false)
        .await
        .expect("send");
    let m = tokio::time::timeout(WAIT, events.next_message())
        .await
        .expect("in time")
        .expect("a message");
    assert_eq!(m.payload, Payload::Text("joined by the token".into()));

    let token = ClientToken::new(&cs, "bus")
        .user("w")
        .role("bus.watch")
        .token();
    let (bus, _pushes) = BusClient::connect(&cs.endpoint, &token).await.expect("bus");
    assert!(bus.agents(None).await.expect("agents").is_empty());

    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/hubs/chat/:send?api-version=2024-01-01",
            hub.endpoint
        ))
        .bearer_auth(rest_token(&cs, "/api/hubs/chat/:send", 5))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 202);
}

#[tokio::test]
async fn a_refused_handshake_says_why() {
    let hub = Nerve::start();
    let wrong = connection_string(&hub, "not-the-key");
    let url = ClientToken::new(&wrong, "chat").user("eve").url();
    let e = HubClient::connect(&url, HubOptions::default())
        .await
        .err()
        .expect("refused");
    assert_eq!(e.http_status(), Some(401));
    assert!(
        matches!(&e, ClientError::Handshake { reason, .. } if reason.contains("signature is invalid")),
        "{e}"
    );
    let token = ClientToken::new(&wrong, "bus").role("bus.watch").token();
    let e = BusClient::connect(&hub.endpoint, &token)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("signature is invalid"), "{e}");
}
