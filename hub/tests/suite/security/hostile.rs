//! Hostile input against the real binary while a well-behaved publisher and subscriber keep
//! working: random and malformed frames, wrong frame types, huge and deeply nested JSON,
//! invalid UTF-8 crafted as raw WebSocket frames, forged and stale tokens, oversized headers,
//! half-open and slowloris connections. The good clients lose nothing, every attacker gets its
//! error, and the hub's RSS stays bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{ALL_ROLES, Hub, JSON, WAIT, metric, refused};

const KEY: &str = "hostile-test-key-0123456789";
const CONFIG: &str = "[limits]\nmax_frame_bytes = 65536\nhandshake_timeout_ms = 1000\nkeepalive_secs = 1\nmessages_per_sec = 100000\nmessage_burst = 100000\n[hubs.chat]\nanonymous_connect = false\n";

/// A hub with tight frame and handshake limits, rates high enough for the good clients, and
/// anonymous connections refused.
fn hostile_hub() -> Hub {
    Hub::start_with(&[KEY], CONFIG, &["--log-level", "error"])
}

fn now() -> u64 {
    nerve_hub::auth::now_secs()
}

/// A JWT with any header, signed with HMAC-SHA256 over the key (or unsigned).
fn forge(header: serde_json::Value, claims: serde_json::Value, sign: bool) -> String {
    let head = B64.encode(header.to_string());
    let body = B64.encode(claims.to_string());
    let input = format!("{head}.{body}");
    let sig = if sign {
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).expect("hmac key");
        mac.update(input.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    } else {
        String::new()
    };
    format!("{input}.{sig}")
}

/// Every bad token is refused with 401 and a reason.
async fn bad_tokens(hub: &Hub) {
    let aud = hub.client_audience("chat");
    let good = json!({"aud": aud, "exp": now() + 600, "sub": "x"});
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .expect("hs512");
    let tokens = [
        forge(json!({"alg": "none", "typ": "JWT"}), good.clone(), false),
        forge(json!({"alg": "RS256", "typ": "JWT"}), good.clone(), true),
        hs512,
        forge(
            json!({"alg": "HS256"}),
            json!({"aud": aud, "exp": now() - 600}),
            true,
        ),
        forge(
            json!({"alg": "HS256"}),
            json!({"aud": aud, "exp": now() + 600, "nbf": now() + 300}),
            true,
        ),
        forge(
            json!({"alg": "HS256"}),
            json!({"aud": "http://elsewhere/client/hubs/chat", "exp": now() + 600}),
            true,
        ),
        "a.b".to_string(),
        "%%%".to_string(),
    ];
    for t in tokens {
        let (status, body) = refused(&hub.url("chat", &t), Some(JSON)).await;
        assert_eq!(status, 401, "{t}: {body}");
        assert!(body.contains("Unauthorized"), "{body}");
    }
}

/// Frames that close the connection with a specific code.
async fn bad_frames(hub: &Hub) {
    let nested = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let cases: Vec<(Message, u16)> = vec![
        (Message::Text("{not json".into()), 1007),
        (Message::Text(json!({"type": 5}).to_string().into()), 1007),
        (
            Message::Text(json!({"type": "joinGroup"}).to_string().into()),
            1007,
        ),
        (Message::Text(nested.into()), 1007),
        (
            Message::Text(format!("\"{}\"", "x".repeat(70_000)).into()),
            1009,
        ),
        (Message::Binary(vec![0u8, 159, 146, 150].into()), 1003),
    ];
    for (frame, code) in cases {
        let mut c = hub
            .connect("chat", Some("attacker"), ALL_ROLES, Some(JSON))
            .await;
        c.next_json().await;
        c.send_raw(frame).await;
        let closed = c.closed().await;
        assert_eq!(closed.code, Some(code), "{closed:?}");
    }
    // Random printable garbage: every frame is answered (an error ack or a close), never a
    // crash.
    let mut rng = rand::rng();
    for _ in 0..20 {
        let mut c = hub
            .connect("chat", Some("fuzzer"), ALL_ROLES, Some(JSON))
            .await;
        c.next_json().await;
        let len = rng.random_range(1..512);
        let junk: String = (0..len).map(|_| rng.random_range(' '..='~')).collect();
        c.send_raw(Message::Text(junk.into())).await;
        c.send_raw(Message::Close(None)).await;
        c.closed().await;
    }
}

/// A client-to-server frame (masked), built by hand.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A WebSocket handshake over a raw TCP socket; returns the socket after the 101.
async fn raw_websocket(hub: &Hub) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .expect("connect");
    let req = format!(
        "GET /client/hubs/chat?access_token={} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {JSON}\r\n\r\n",
        hub.token("chat", Some("raw"), ALL_ROLES, &[]),
        hub.port
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.expect("read head");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Reads server frames until a close frame; returns its code.
async fn close_code(s: &mut TcpStream) -> Option<u16> {
    loop {
        let mut h = [0u8; 2];
        tokio::time::timeout(WAIT, s.read_exact(&mut h))
            .await
            .ok()?
            .ok()?;
        let len = match h[1] & 0x7f {
            126 => u64::from(s.read_u16().await.ok()?),
            127 => s.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        s.read_exact(&mut payload).await.ok()?;
        if h[0] & 0x0f == 8 {
            return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        }
    }
}

async fn invalid_utf8(hub: &Hub) {
    let mut s = raw_websocket(hub).await;
    s.write_all(&masked_frame(0x1, &[b'{', 0xff, 0xfe, 0xc3, b'}']))
        .await
        .expect("write");
    assert_eq!(close_code(&mut s).await, Some(1007));
    // A reserved opcode is a protocol error: the hub drops the socket.
    let mut s = raw_websocket(hub).await;
    s.write_all(&masked_frame(0x3, b"??")).await.expect("write");
    assert_ne!(close_code(&mut s).await, Some(1000));
}

/// The server closes `s` within `within`.
async fn closed_within(mut s: TcpStream, within: Duration) {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection still open after {within:?}"),
        }
    }
}

async fn connections_that_stall(hub: &Hub) {
    let mut stalled = Vec::new();
    for _ in 0..100 {
        stalled.push(
            TcpStream::connect(("127.0.0.1", hub.port))
                .await
                .expect("connect"),
        );
    }
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", hub.port))
            .await
            .expect("connect");
        s.write_all(b"GET /client/hubs/chat HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    // Trickle one header byte per 200 ms: the whole head never arrives in time.
    for _ in 0..3 {
        for s in &mut slow {
            let _ = s.write_all(b"X").await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A WebSocket that goes silent (never reads, never answers pings) is cut by keep-alive.
    let silent_ws = raw_websocket(hub).await;
    let bound = Duration::from_secs(8);
    let all = stalled
        .into_iter()
        .chain(slow)
        .map(|s| closed_within(s, bound));
    futures_util::future::join_all(all).await;
    closed_within(silent_ws, bound).await;
}

async fn oversized_headers(hub: &Hub) {
    let mut s = TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .expect("connect");
    let big = "a".repeat(512 * 1024);
    let req = format!("GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
    // HTTP/2 with prior knowledge is not served (it has no request-head timeout): closed.
    let mut s = TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .expect("connect");
    let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "an HTTP/2 preface kept the connection open");
    assert!(!String::from_utf8_lossy(&out).contains(" 200 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_harms_no_one() {
    let hub = hostile_hub();
    let mut subscriber = hub
        .connect("chat", Some("sub"), ALL_ROLES, Some(JSON))
        .await;
    subscriber.next_json().await;
    subscriber
        .send(json!({"type": "joinGroup", "group": "good", "ackId": 1}))
        .await;
    assert_eq!(subscriber.ack(1).await["success"], true);
    let mut publisher = hub
        .connect("chat", Some("pub"), ALL_ROLES, Some(JSON))
        .await;
    publisher.next_json().await;
    let rss_before = hub.rss_kib();

    let attacks_done = AtomicBool::new(false);
    let attacks = async {
        bad_tokens(&hub).await;
        bad_frames(&hub).await;
        invalid_utf8(&hub).await;
        oversized_headers(&hub).await;
        connections_that_stall(&hub).await;
        attacks_done.store(true, Ordering::Release);
    };
    let good = async {
        let mut sent = 0u64;
        // Publish steadily until the attacks are over, then mark the end.
        while sent < 200 || !attacks_done.load(Ordering::Acquire) {
            sent += 1;
            publisher
                .send(
                    json!({"type": "sendToGroup", "group": "good", "dataType": "json",
                    "data": {"n": sent}, "ackId": sent}),
                )
                .await;
            assert_eq!(publisher.ack(sent).await["success"], true);
        }
        publisher
            .send(
                json!({"type": "sendToGroup", "group": "good", "dataType": "json",
                "data": {"end": sent}}),
            )
            .await;
        sent
    };
    let received = async {
        let mut n = 0u64;
        loop {
            let m = subscriber.until(|v| v["type"] == "message").await;
            if let Some(end) = m["data"]["end"].as_u64() {
                assert_eq!(n, end, "messages lost");
                return n;
            }
            n += 1;
            assert_eq!(m["data"]["n"], n, "message {n} missing or out of order");
        }
    };
    let ((), sent, got) = tokio::join!(attacks, good, received);
    assert_eq!(sent, got);
    let rss_after = hub.rss_kib();
    println!("RSS before attacks {rss_before} KiB, after {rss_after} KiB, {sent} good messages");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    let scrape = hub.metrics().await;
    assert!(
        metric(&scrape, "nerve_auth_failures_total") >= 8.0,
        "{scrape}"
    );
    assert!(
        metric(&scrape, "nerve_protocol_errors_total") >= 6.0,
        "{scrape}"
    );
}
