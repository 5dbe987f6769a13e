//! `nerve token` against a running hub: the client URL it prints connects with the user,
//! roles and groups asked for, its REST token sends, and its bare token opens the bus.

use serde_json::json;

use crate::harness::{Client, Hub, JSON, WAIT, post, run_nerve};

/// `nerve token ARGS` with the hub's connection string in the environment, as a user who
/// copied it from the banner has it; what it printed.
fn nerve_token(hub: &Hub, args: &[&str]) -> String {
    let cs = format!(
        "Endpoint={};AccessKey={};Version=1.0;",
        hub.endpoint(),
        hub.key()
    );
    let out = run_nerve(
        &[&["token"], args].concat(),
        &[("NERVE_CONNECTION_STRING", cs.as_str())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nerve token {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_printed_client_url_connects_with_its_user_roles_and_groups() {
    let hub = Hub::start();
    let url = nerve_token(
        &hub,
        &[
            "--hub",
            "chat",
            "--user",
            "alice",
            "--role",
            "webpubsub.sendToGroup.lobby",
            "--group",
            "lobby",
        ],
    );
    let mut alice = Client::connect(&url, Some(JSON)).await.expect("connect");
    assert_eq!(alice.next_json().await["userId"], "alice");
    // Joined to lobby by the token, and allowed to send there only.
    alice
        .send(
            json!({"type": "sendToGroup", "group": "lobby", "dataType": "text",
                     "data": "hi", "ackId": 1}),
        )
        .await;
    assert_eq!(alice.ack(1).await["success"], true);
    let m = alice.next_json().await;
    assert_eq!(
        (m["group"].as_str(), m["data"].as_str()),
        (Some("lobby"), Some("hi"))
    );
    alice
        .send(
            json!({"type": "sendToGroup", "group": "other", "dataType": "text",
                     "data": "x", "ackId": 2}),
        )
        .await;
    assert_eq!(alice.ack(2).await["error"]["name"], "Forbidden");
}

#[tokio::test]
async fn the_rest_token_sends_and_the_bare_token_opens_the_bus() {
    let hub = Hub::start();
    let (mut listener, _) = hub.client("chat", Some("bob"), Some(JSON)).await;
    let bearer = nerve_token(&hub, &["--rest"]);
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/hubs/chat/:send?api-version=2024-01-01",
            hub.endpoint()
        ))
        .bearer_auth(&bearer)
        .header("content-type", "text/plain")
        .body("hello from curl")
        .timeout(WAIT)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(listener.next_json().await["data"], "hello from curl");
    // The token names one URL: another route refuses it.
    let r = reqwest::Client::new()
        .post(format!("{}/api/hubs/other/:send", hub.endpoint()))
        .bearer_auth(&bearer)
        .body("x")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 401);

    let bus = nerve_token(
        &hub,
        &["--hub", "bus", "--role", "bus.watch", "--token-only"],
    );
    assert!(!bus.contains("://"), "{bus}");
    let (status, agents) = post(&hub, "/bus/api/bus.agents", &bus, json!({})).await;
    assert_eq!(status, 200, "{agents}");
}

#[test]
fn without_a_key_it_says_where_to_get_one() {
    let out = run_nerve(&["token", "--hub", "chat"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NERVE_CONNECTION_STRING"), "{stderr}");
}
