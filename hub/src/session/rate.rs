//! Per-connection rate limits as a session enforces them: a client over its message or byte
//! rate is told why in a `disconnected` message and closed with 1008.

use nerve_protocol::close;

use super::{End, Session};
use crate::limits::LimitKind;
use crate::socket::{Message, Socket};

impl Session {
    /// Accounts a received frame against the connection's rates; over them, the client is
    /// told why and the connection closes with 1008.
    pub(crate) async fn enforce_rate(
        &mut self,
        socket: &mut Socket,
        msg: &Option<Result<Message, crate::socket::Error>>,
    ) -> Option<End> {
        let len = match msg {
            Some(Ok(Message::Text(t))) => t.len(),
            Some(Ok(Message::Binary(b))) => b.len(),
            _ => return None,
        };
        let kind = self.rate.check(len).err()?;
        kind.count();
        let limits = &self.app.config.limits;
        let reason = match kind {
            LimitKind::ByteRate => format!(
                "Rate limit: more than {} bytes per second",
                limits.bytes_per_sec
            ),
            _ => format!(
                "Rate limit: more than {} messages per second",
                limits.messages_per_sec
            ),
        };
        self.close(socket, &reason, close::NO_RECOVERY).await;
        Some(End::Finished)
    }
}
