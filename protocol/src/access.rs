//! Access to a hub: the connection string that names its endpoint and key, and the client
//! endpoints a token can be for. The hub, `nerve token` and the clients read them alike, so a
//! connection string the hub prints works everywhere it is pasted.

/// The client endpoint a token is for: `clientProtocol` in the server SDKs, `clientType` in
/// `:generateToken`. Only the default protocol is served by this hub; the others mint what
/// Azure Web PubSub accepts on its MQTT and Socket.IO endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientProtocol {
    /// The Web PubSub protocols: `/client/hubs/{hub}`.
    #[default]
    Default,
    /// MQTT: `/clients/mqtt/hubs/{hub}`.
    Mqtt,
    /// Socket.IO: `/clients/socketio/hubs/{hub}`.
    SocketIo,
}

impl ClientProtocol {
    /// Parses `default`, `mqtt` or `socketio` in any case (empty is the default).
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "" | "default" => Ok(ClientProtocol::Default),
            "mqtt" => Ok(ClientProtocol::Mqtt),
            "socketio" => Ok(ClientProtocol::SocketIo),
            other => Err(format!(
                "unknown client protocol '{other}'; expected default, mqtt or socketio"
            )),
        }
    }

    /// The path of `hub`'s client endpoint, without the leading `/`.
    pub fn path(self, hub: &str) -> String {
        let base = match self {
            ClientProtocol::Default => "client/hubs",
            ClientProtocol::Mqtt => "clients/mqtt/hubs",
            ClientProtocol::SocketIo => "clients/socketio/hubs",
        };
        format!("{base}/{hub}")
    }
}

/// A connection string as the hub prints it and the Azure server SDKs read it:
/// `Endpoint=http://host:port;AccessKey=…;Version=1.0;` (keys in any case, an optional
/// `Port=`). `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The endpoint, without a trailing `/`.
    pub endpoint: String,
    /// The access key.
    pub access_key: String,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionString({}, AccessKey=…)", self.endpoint)
    }
}

impl ConnectionString {
    /// Parses a connection string; the error says which part is missing or wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (mut endpoint, mut key, mut port) = (None, None, None);
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(format!("'{part}' is not Name=value"));
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim().trim_end_matches('/').to_string()),
                "accesskey" => key = Some(value.trim().to_string()),
                "port" => port = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let mut endpoint = endpoint
            .filter(|e| e.starts_with("http://") || e.starts_with("https://"))
            .ok_or("the connection string needs Endpoint=http(s)://…")?;
        let access_key = key
            .filter(|k| !k.is_empty())
            .ok_or("the connection string needs AccessKey=…")?;
        if let Some(port) = port {
            let host_has_port = endpoint.split_once("://").is_some_and(|(_, rest)| {
                rest.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'))
            });
            if !host_has_port {
                endpoint = format!("{endpoint}:{port}");
            }
        }
        Ok(ConnectionString {
            endpoint,
            access_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_parse_as_the_sdks_read_them() {
        let secret = ConnectionString::parse("Endpoint=http://h:1;AccessKey=secret;").unwrap();
        assert!(!format!("{secret:?}").contains("secret"));
        let cs =
            ConnectionString::parse("Endpoint=http://127.0.0.1:8080/;AccessKey=k=;Version=1.0;")
                .unwrap();
        assert_eq!(
            (cs.endpoint.as_str(), cs.access_key.as_str()),
            ("http://127.0.0.1:8080", "k=")
        );
        let cs = ConnectionString::parse("endpoint=https://h;accesskey=k;port=8443").unwrap();
        assert_eq!(cs.endpoint, "https://h:8443");
        assert!(
            ConnectionString::parse("AccessKey=k")
                .unwrap_err()
                .contains("Endpoint")
        );
        assert!(
            ConnectionString::parse("Endpoint=http://h")
                .unwrap_err()
                .contains("AccessKey")
        );
        assert!(ConnectionString::parse("Endpoint=ftp://h;AccessKey=k").is_err());
    }

    #[test]
    fn client_protocols_name_their_endpoints() {
        assert_eq!(
            ClientProtocol::parse("").unwrap().path("chat"),
            "client/hubs/chat"
        );
        assert_eq!(
            ClientProtocol::parse("MQTT").unwrap().path("chat"),
            "clients/mqtt/hubs/chat"
        );
        assert_eq!(
            ClientProtocol::parse("socketio").unwrap().path("chat"),
            "clients/socketio/hubs/chat"
        );
        assert!(ClientProtocol::parse("grpc").is_err());
    }
}
