//! Reading the hub over plain HTTP: a minimal GET (as any host), and values out of a Prometheus scrape.

use tokio::net::TcpStream;

/// A minimal HTTP GET returning the body.
pub async fn http_get(port: u16, path: &str) -> String {
    http_get_as(port, path, &format!("127.0.0.1:{port}")).await
}

/// A minimal HTTP GET naming `host` in its `Host` header, returning the body.
pub async fn http_get_as(port: u16, path: &str, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Reads a counter or gauge value (summing all label sets) from a metrics scrape.
pub fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of `name{labels}` in a scrape (0 when absent).
pub fn labelled(scrape: &str, name_and_labels: &str) -> f64 {
    let prefix = format!("{name_and_labels} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The value of `nerve_limit_violations_total{kind="<kind>"}` in a scrape (0 when absent).
pub fn violations(scrape: &str, kind: &str) -> f64 {
    labelled(
        scrape,
        &format!("nerve_limit_violations_total{{kind=\"{kind}\"}}"),
    )
}
