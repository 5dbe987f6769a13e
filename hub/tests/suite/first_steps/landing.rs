//! The banner names the landing page; the page lists the endpoints as the caller reaches
//! them, links the demo pages, and shows the connection string only to a browser on this
//! machine of a loopback hub.

use crate::harness::{Client, Hub, JSON, http_get, http_get_as};

#[tokio::test]
async fn the_banner_names_the_page_and_the_page_the_connection_string() {
    let hub = Hub::start();
    let base = format!("http://127.0.0.1:{}", hub.port);
    assert!(
        hub.banner()
            .iter()
            .any(|l| l.ends_with(&format!("{base}/"))),
        "{:?}",
        hub.banner()
    );
    let page = http_get(hub.port, "/").await;
    let cs = format!("Endpoint={base};AccessKey={};Version=1.0;", hub.key());
    assert!(page.contains(&cs), "{page}");
    assert!(page.contains(&format!("export NERVE_CONNECTION_STRING='{cs}'")));
    for link in [
        "/demo/chat",
        "/demo/dashboard",
        "/demo/tasks",
        "/healthz",
        "/metrics",
    ] {
        assert!(page.contains(&format!("href=\"{link}\"")), "{link}");
    }
    assert!(page.contains(&format!("ws://127.0.0.1:{}/client/hubs/", hub.port)));
    assert!(!page.contains("id=\"demo-off\""), "{page}");
    // `/demo` was the pages' index; it leads here now.
    let index = http_get(hub.port, "/demo").await;
    assert!(index.is_empty(), "{index}");
}

#[tokio::test]
async fn another_site_rebinding_its_name_to_loopback_sees_no_key() {
    let hub = Hub::start();
    let page = http_get_as(hub.port, "/", "attacker.example:8080").await;
    assert!(page.contains("Endpoints"), "{page}");
    assert!(!page.contains(hub.key()), "{page}");
    assert!(!page.contains("AccessKey="), "{page}");
    let token = http_get_as(hub.port, "/demo/token?hub=chat", "attacker.example:8080").await;
    assert!(!token.contains("access_token"), "{token}");
    assert!(token.contains("own machine"), "{token}");
}

#[tokio::test]
async fn on_every_interface_the_urls_name_this_machine_and_the_pages_say_why_they_are_off() {
    let hub = Hub::start_with(&[], "", &["--listen", "0.0.0.0:0"]);
    let banner = hub.banner().join("\n");
    assert!(!banner.contains("://0.0.0.0"), "{banner}");
    assert!(
        banner.contains("Nerve is listening on 0.0.0.0:"),
        "{banner}"
    );
    assert!(banner.contains("--public-endpoint"), "{banner}");
    assert!(banner.contains("The demo pages are off"), "{banner}");
    // The printed client URL works as printed.
    let url = hub
        .banner()
        .iter()
        .find(|l| l.starts_with("ws://127.0.0.1:"))
        .expect("client URL");
    let mut c = Client::connect(url, Some(JSON)).await.expect("connect");
    assert_eq!(c.next_json().await["userId"], "demo");
    let page = http_get(hub.port, "/").await;
    assert!(!page.contains(hub.key()), "{page}");
    assert!(page.contains("id=\"demo-off\""), "{page}");
    assert!(page.contains("--listen 127.0.0.1:"), "{page}");
    let token = http_get(hub.port, "/demo/token?hub=chat").await;
    assert!(token.contains("beyond this machine"), "{token}");
}
