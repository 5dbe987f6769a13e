//! A test MQTT client over WebSocket: whole packets in and out, every read with a deadline.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nerve_protocol::codec::mqtt::{self, Packet, PacketReader, QoS4, Version, v4, v5};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::WAIT;

/// An MQTT connection under test.
pub struct Mqtt {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    reader: PacketReader,
    pub version: Version,
}

/// Opens the WebSocket (subprotocol `mqtt`) without sending anything.
pub async fn open(url: &str, version: Version) -> Result<Mqtt, WsError> {
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("mqtt")
    );
    Ok(Mqtt {
        ws,
        reader: PacketReader::new(1 << 20),
        version,
    })
}

/// A 3.1.1 CONNECT.
pub fn connect_v4(id: &str, keep_alive: u16, will: Option<(&str, &str)>) -> Packet {
    let mut c = v4::Connect::new(id);
    c.keep_alive = keep_alive;
    c.last_will = will.map(|(t, m)| v4::LastWill::new(t, m, rumqttc_qos4(0), false));
    Packet::V4(v4::Packet::Connect(c))
}

fn rumqttc_qos4(q: u8) -> QoS4 {
    match q {
        0 => QoS4::AtMostOnce,
        1 => QoS4::AtLeastOnce,
        _ => QoS4::ExactlyOnce,
    }
}

/// A 5.0 CONNECT.
pub fn connect_v5(id: &str, keep_alive: u16) -> Packet {
    Packet::V5(v5::Packet::Connect(
        v5::Connect {
            keep_alive,
            client_id: id.to_string(),
            clean_start: true,
            properties: None,
        },
        None,
        None,
    ))
}

impl Mqtt {
    /// Opens, sends `connect` and returns the CONNACK.
    pub async fn connect(url: &str, connect: Packet) -> (Mqtt, Packet) {
        let version = match connect {
            Packet::V4(_) => Version::V311,
            Packet::V5(_) => Version::V5,
        };
        let mut m = open(url, version).await.expect("upgrade");
        m.send(connect).await;
        let ack = m.next().await.expect("CONNACK");
        (m, ack)
    }

    /// Sends one packet in one frame.
    pub async fn send(&mut self, p: Packet) {
        let bytes = mqtt::write(&p).expect("write");
        self.send_bytes(bytes).await;
    }

    /// Sends raw bytes as one binary frame.
    pub async fn send_bytes(&mut self, bytes: Bytes) {
        self.ws.send(Message::Binary(bytes)).await.expect("send");
    }

    /// The next packet; `None` once the socket closed.
    pub async fn next(&mut self) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(p) = self.reader.next(self.version).expect("packet from the hub") {
                return Some(p);
            }
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for a packet");
            match m {
                Some(Ok(Message::Binary(b))) => self.reader.push(&b),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads until the socket closes: the packets that came first, and the close code.
    pub async fn closed(&mut self) -> (Vec<Packet>, Option<u16>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut packets = Vec::new();
        loop {
            while let Ok(Some(p)) = self.reader.next(self.version) {
                packets.push(p);
            }
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for the close");
            match m {
                Some(Ok(Message::Binary(b))) => self.reader.push(&b),
                Some(Ok(Message::Close(f))) => return (packets, f.map(|f| u16::from(f.code))),
                None | Some(Err(_)) => return (packets, None),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next PUBLISH, acknowledged if it has a packet id: (topic, payload, qos).
    pub async fn publish_received(&mut self) -> (String, Bytes, u8) {
        match self.next().await.expect("a PUBLISH") {
            Packet::V4(v4::Packet::Publish(p)) => {
                if p.pkid != 0 {
                    self.send(Packet::V4(v4::Packet::PubAck(v4::PubAck::new(p.pkid))))
                        .await;
                }
                (p.topic, p.payload, p.qos as u8)
            }
            Packet::V5(v5::Packet::Publish(p)) => {
                if p.pkid != 0 {
                    self.send(Packet::V5(v5::Packet::PubAck(v5::PubAck::new(
                        p.pkid, None,
                    ))))
                    .await;
                }
                (
                    String::from_utf8_lossy(&p.topic).into_owned(),
                    p.payload,
                    p.qos as u8,
                )
            }
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }

    /// Drops the TCP connection with no DISCONNECT and no close handshake.
    pub fn drop_socket(self) {
        drop(self.ws);
    }
}
