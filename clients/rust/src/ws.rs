//! Opening a WebSocket with one subprotocol, shared by the hub client and the bus client.

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{ClientError, Result};

/// A client WebSocket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `url` offering `subprotocol`; the hub must echo it.
pub(crate) async fn open(url: &str, subprotocol: &str) -> Result<Socket> {
    let mut request = url.into_client_request()?;
    let value = HeaderValue::from_str(subprotocol).map_err(|e| ClientError::Url(e.to_string()))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", value);
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(ClientError::from_handshake)?;
    Ok(socket)
}

/// `ws(s)://host[/base]/bus/ws?access_token=…` from an http(s) or ws(s) hub endpoint.
pub fn bus_url(endpoint: &str, token: &str) -> Result<String> {
    let mut url = url::Url::parse(endpoint).map_err(|e| ClientError::Url(e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(ClientError::Url(format!("unsupported scheme {other}"))),
    };
    url.set_scheme(scheme)
        .map_err(|()| ClientError::Url("cannot set scheme".into()))?;
    let path = url.path().trim_end_matches('/').to_string();
    if !path.ends_with("/bus/ws") {
        url.set_path(&format!("{path}/bus/ws"));
    }
    url.query_pairs_mut()
        .clear()
        .append_pair("access_token", token);
    Ok(url.into())
}

/// The client URL with `awps_connection_id` and `awps_reconnection_token` set.
pub(crate) fn recovery_url(url: &str, connection_id: &str, token: &str) -> Result<String> {
    let mut parsed = url::Url::parse(url).map_err(|e| ClientError::Url(e.to_string()))?;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("awps_"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("awps_connection_id", connection_id)
        .append_pair("awps_reconnection_token", token);
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_bus_and_recovery_urls() {
        assert_eq!(
            bus_url("http://127.0.0.1:8080", "t").ok().as_deref(),
            Some("ws://127.0.0.1:8080/bus/ws?access_token=t")
        );
        assert_eq!(
            bus_url("wss://h/bus/ws", "t").ok().as_deref(),
            Some("wss://h/bus/ws?access_token=t")
        );
        let r = recovery_url(
            "ws://h/client/hubs/c?access_token=a&awps_connection_id=old",
            "c1",
            "t+/",
        );
        assert_eq!(
            r.ok().as_deref(),
            Some(
                "ws://h/client/hubs/c?access_token=a&awps_connection_id=c1&awps_reconnection_token=t%2B%2F"
            )
        );
    }
}
