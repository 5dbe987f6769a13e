//! The demo pages and their helpers: pages are served from the binary, the token endpoint mints
//! tokens only when `[demo]` allows it, and the stats feed needs a token when it does not.

use serde_json::Value;

use crate::harness::{Client, Hub, JSON, http_get};

#[tokio::test]
async fn pages_and_the_token_endpoint_on_a_loopback_hub() {
    let hub = Hub::start();
    for (path, marker) in [
        ("/demo/chat", "Nerve chat"),
        ("/demo/dashboard", "Nerve dashboard"),
        ("/demo/tasks", "Nerve tasks"),
        ("/demo/assets/nerve.js", "class HubClient"),
    ] {
        let body = http_get(hub.port, path).await;
        assert!(body.contains(marker), "{path}: {body:.200}");
    }
    let t: Value = serde_json::from_str(&http_get(hub.port, "/demo/token?hub=bus&user=ann").await)
        .expect("token json");
    assert_eq!(t["user"], "ann");
    assert!(
        t["roles"]
            .as_array()
            .expect("roles")
            .contains(&"bus.watch".into())
    );
    // The token works on the hub it names.
    let url = t["url"].as_str().expect("url");
    let mut c = Client::connect(url, Some(JSON))
        .await
        .expect("connect with the demo token");
    assert_eq!(c.next_json().await["userId"], "ann");
    let chat: Value = serde_json::from_str(&http_get(hub.port, "/demo/token?hub=chat").await)
        .expect("chat token");
    assert!(
        !chat["roles"]
            .as_array()
            .expect("roles")
            .contains(&"bus.watch".into())
    );
    let stats: Value =
        serde_json::from_str(&http_get(hub.port, "/demo/stats.json").await).expect("stats json");
    assert!(stats["connections"].as_u64() >= Some(1), "{stats}");
    assert_eq!(stats["bus"]["queues"], serde_json::json!([]));
}

#[tokio::test]
async fn the_token_endpoint_is_off_when_demo_is_disabled() {
    let hub = Hub::start_with_config("[demo]\nenabled = false\n");
    let body = http_get(hub.port, "/demo/token?hub=chat").await;
    assert!(body.contains("enabled = false"), "{body}");
    let stats = http_get(hub.port, "/demo/stats.json").await;
    assert!(stats.contains("bus.watch"), "{stats}");
    // The pages themselves are static and still served.
    assert!(
        http_get(hub.port, "/demo/chat")
            .await
            .contains("Nerve chat")
    );
}
