//! The raw limit: the least work a server can do to fan a message out over WebSockets.
//!
//! A client connects to `/raw/{group}`; every text frame it sends is encoded once into an
//! unmasked server frame and the same bytes are written to every socket in the group (sender
//! included); frames that queue up for a busy socket leave in one write. `POST /publish/{group}` does the same for an HTTP body. No parsing of payloads, no
//! per-socket encoding, no protocol: what the hub achieves is reported as a fraction of this.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Frames queued per group before a slow reader starts losing them.
const GROUP_QUEUE: usize = 1024;
/// Largest frame or body accepted (the Azure limit).
const MAX_PAYLOAD: u64 = 1 << 20;
/// Most bytes of queued frames written in one call.
const COALESCE_BYTES: usize = 16 * 1024;
/// Largest HTTP request head accepted.
const MAX_HEAD: usize = 16 * 1024;

type Groups = Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>;

/// Serves until the process is killed.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let groups: Groups = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let groups = Arc::clone(&groups);
        tokio::spawn(async move {
            let _ = handle(stream, groups).await;
        });
    }
}

/// Encodes `payload` as one unmasked server text frame.
pub fn encode_frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 10);
    b.put_u8(0x81);
    match payload.len() {
        n if n < 126 => b.put_u8(n as u8),
        n if n < 65536 => {
            b.put_u8(126);
            b.put_u16(n as u16);
        }
        n => {
            b.put_u8(127);
            b.put_u64(n as u64);
        }
    }
    b.put_slice(payload);
    b.freeze()
}

fn group_sender(groups: &Groups, name: &str) -> broadcast::Sender<Bytes> {
    groups
        .lock()
        .entry(name.to_string())
        .or_insert_with(|| broadcast::channel(GROUP_QUEUE).0)
        .clone()
}

struct Head {
    method: String,
    path: String,
    ws_key: Option<String>,
    content_length: u64,
}

async fn read_head(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        total += line.len();
        if total > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut first = lines.first().map(|l| l.split(' ')).into_iter().flatten();
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let mut head = Head {
        method,
        path,
        ws_key: None,
        content_length: 0,
    };
    for line in lines.iter().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                head.ws_key = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.parse().unwrap_or(0);
            }
        }
    }
    Ok(Some(head))
}

async fn handle(stream: TcpStream, groups: Groups) -> std::io::Result<()> {
    let mut r = BufReader::with_capacity(4096, stream);
    while let Some(head) = read_head(&mut r).await? {
        if let Some(key) = head.ws_key.clone() {
            return websocket(r, head, &key, groups).await;
        }
        let reply: &[u8] = match (head.method.as_str(), head.path.strip_prefix("/publish/")) {
            ("POST", Some(group)) if head.content_length <= MAX_PAYLOAD => {
                let mut body = vec![0; head.content_length as usize];
                r.read_exact(&mut body).await?;
                let _ = group_sender(&groups, group).send(encode_frame(&body));
                b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
            }
            ("GET" | "HEAD", _) => b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            _ => b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        };
        r.get_mut().write_all(reply).await?;
    }
    Ok(())
}

async fn websocket(
    mut r: BufReader<TcpStream>,
    head: Head,
    key: &str,
    groups: Groups,
) -> std::io::Result<()> {
    let group = head.path.strip_prefix("/raw/").unwrap_or("_").to_string();
    let accept = derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    let tx = group_sender(&groups, &group);
    let mut rx = tx.subscribe();
    r.get_mut().write_all(response.as_bytes()).await?;
    r.get_mut().write_all(&encode_frame(b"joined")).await?;
    let buffered = r.buffer().to_vec();
    let stream = r.into_inner();
    let (read_half, mut write_half) = stream.into_split();
    let writer = tokio::spawn(async move {
        // Frames that queued up while the socket was busy go out in one write.
        let mut batch = BytesMut::new();
        loop {
            match rx.recv().await {
                Ok(frame) => {
                    batch.extend_from_slice(&frame);
                    while batch.len() < COALESCE_BYTES {
                        match rx.try_recv() {
                            Ok(more) => batch.extend_from_slice(&more),
                            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                            Err(_) => break,
                        }
                    }
                    if write_half.write_all(&batch).await.is_err() {
                        return;
                    }
                    batch.clear();
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let mut reader =
        BufReader::with_capacity(4096, std::io::Cursor::new(buffered).chain(read_half));
    let result = read_frames(&mut reader, &tx).await;
    writer.abort();
    result
}

/// Reads masked client frames; data frames are published to the group, close ends the loop.
async fn read_frames(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    tx: &broadcast::Sender<Bytes>,
) -> std::io::Result<()> {
    loop {
        let mut h = [0u8; 2];
        if r.read_exact(&mut h).await.is_err() {
            return Ok(());
        }
        let opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let len = match h[1] & 0x7f {
            126 => u64::from(r.read_u16().await?),
            127 => r.read_u64().await?,
            n => u64::from(n),
        };
        if len > MAX_PAYLOAD {
            return Err(std::io::Error::other("frame too large"));
        }
        let mut mask = [0u8; 4];
        if masked {
            r.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            0x1 | 0x2 => {
                let _ = tx.send(encode_frame(&payload));
            }
            0x8 => return Ok(()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_use_the_shortest_length_form() {
        assert_eq!(&encode_frame(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let f = encode_frame(&[b'a'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(f.len(), 304);
        let f = encode_frame(&vec![b'a'; 70_000]);
        assert_eq!(f[1], 127);
        assert_eq!(f.len(), 70_010);
    }

    #[tokio::test]
    async fn publishes_unmasked_client_frames_to_the_group() {
        let (tx, mut rx) = broadcast::channel(4);
        // A masked text frame "abc" with mask 1,2,3,4, then a close frame.
        let mut wire = vec![0x81, 0x83, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2, b'c' ^ 3];
        wire.extend_from_slice(&[0x88, 0x80, 0, 0, 0, 0]);
        read_frames(&mut wire.as_slice(), &tx).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), encode_frame(b"abc"));
    }
}
