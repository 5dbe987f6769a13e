//! The reliable protocol's side of a session: sequence ids and the buffer of unacknowledged
//! messages that a reconnecting client gets again.

use std::collections::VecDeque;

use nerve_protocol::{Codec, FrameRef};

use crate::socket::{Message, Utf8Bytes};

/// The reliable buffer exceeded its bounds; the session cannot be recovered.
#[derive(Debug, PartialEq, Eq)]
pub struct BufferFull;

/// Unacked messages of one reliable session, in sequence order.
#[derive(Debug)]
pub struct ReliableBuffer {
    next_sequence_id: u64,
    /// Sequence id, stamped frame, and expiry (Unix ms) of a message sent with a TTL.
    unacked: VecDeque<(u64, Message, Option<u64>)>,
    unacked_bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl ReliableBuffer {
    /// An empty buffer with the given bounds (the service uses 1000 messages / 16 MB).
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        ReliableBuffer {
            next_sequence_id: 1,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            max_messages,
            max_bytes,
        }
    }

    /// Numbers a message frame with `codec` and keeps it until acknowledged (or, with an
    /// `expires_at`, until then: an expired frame is not resent); returns the frame to write.
    pub fn stamp(
        &mut self,
        codec: &dyn Codec,
        frame: &Message,
        expires_at: Option<u64>,
    ) -> Result<Message, BufferFull> {
        if self.unacked.len() >= self.max_messages
            || self.unacked_bytes + frame.len() > self.max_bytes
        {
            return Err(BufferFull);
        }
        let id = self.next_sequence_id;
        self.next_sequence_id += 1;
        let numbered = match frame {
            Message::Text(text) => codec.sequence(FrameRef::Text(text.as_str()), id),
            Message::Binary(bytes) => codec.sequence(FrameRef::Binary(bytes), id),
            _ => None,
        };
        // A protocol without sequence ids resends the frame as it is.
        let stamped = numbered.map_or_else(|| frame.clone(), crate::socket::message);
        self.unacked_bytes += stamped.len();
        self.unacked.push_back((id, stamped.clone(), expires_at));
        if self.unacked.capacity() > 64 && self.unacked.len() < self.unacked.capacity() / 4 {
            self.unacked.shrink_to(self.unacked.len() * 2);
        }
        Ok(stamped)
    }

    /// Drops everything up to and including `sequence_id`; returns how many were dropped.
    pub fn ack(&mut self, sequence_id: u64) -> usize {
        let mut dropped = 0;
        while let Some((id, frame, _)) = self.unacked.front() {
            if *id > sequence_id {
                break;
            }
            self.unacked_bytes -= frame.len();
            self.unacked.pop_front();
            dropped += 1;
        }
        if self.unacked.is_empty() && self.unacked.capacity() > 16 {
            // Idle connections keep no buffer.
            self.unacked = VecDeque::new();
        }
        dropped
    }

    /// The sequence id of the last stamped message (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.next_sequence_id - 1
    }

    /// Continues a session another node served: its unacknowledged frames (already stamped)
    /// and the sequence ids after them.
    pub fn restore(&mut self, frames: Vec<(u64, String)>, last_id: u64) {
        for (id, frame) in frames {
            if id < self.next_sequence_id {
                continue;
            }
            self.next_sequence_id = id + 1;
            self.unacked_bytes += frame.len();
            self.unacked
                .push_back((id, Message::Text(Utf8Bytes::from(frame)), None));
        }
        self.next_sequence_id = self.next_sequence_id.max(last_id + 1);
    }

    /// The frames to resend after a reconnection, oldest first, without those whose TTL has
    /// passed (their sequence ids are skipped; the client acknowledges past them).
    pub fn unacked(&self) -> impl Iterator<Item = &Message> {
        self.unacked_with_ids().map(|(_, f)| f)
    }

    /// The unacknowledged frames not yet expired, with their sequence ids, oldest first.
    pub fn unacked_with_ids(&self) -> impl Iterator<Item = (u64, &Message)> {
        let now = crate::registry::now_ms();
        self.unacked
            .iter()
            .filter(move |(_, _, at)| at.is_none_or(|at| now < at))
            .map(|(id, f, _)| (*id, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_protocol::codec::json::ReliableJsonCodec;
    use nerve_protocol::codec::protobuf::ReliableProtobufCodec;
    use nerve_protocol::{Codec, Frame, Payload, Sender, ServerFrame};

    fn text(s: &str) -> Message {
        Message::Text(Utf8Bytes::from(s))
    }

    #[test]
    fn binary_frames_are_numbered_by_their_codec() {
        let p = Payload::text("x");
        let Some(Frame::Binary(shared)) =
            ReliableProtobufCodec.encode(&ServerFrame::message(Sender::Server, &p))
        else {
            panic!("binary")
        };
        let mut b = ReliableBuffer::new(10, 1 << 20);
        let one = b
            .stamp(
                &ReliableProtobufCodec,
                &Message::Binary(shared.clone()),
                None,
            )
            .unwrap();
        let two = b
            .stamp(
                &ReliableProtobufCodec,
                &Message::Binary(shared.clone()),
                None,
            )
            .unwrap();
        assert_ne!(one, two, "each copy carries its own sequence id");
        assert!(one.len() > shared.len());
        assert_eq!(b.ack(1), 1);
        assert_eq!(b.unacked().collect::<Vec<_>>(), vec![&two]);
    }

    #[test]
    fn numbers_from_one_and_trims_on_ack() {
        let mut b = ReliableBuffer::new(10, 1 << 20);
        for _ in 0..5 {
            b.stamp(&ReliableJsonCodec, &text(r#"{"type":"message"}"#), None)
                .unwrap();
        }
        b.ack(3);
        let left: Vec<String> = b
            .unacked()
            .map(|f| f.to_text().unwrap().to_string())
            .collect();
        assert_eq!(left.len(), 2);
        assert!(left[0].starts_with(r#"{"sequenceId":4,"#));
        b.ack(99);
        assert!(b.unacked().next().is_none());
        let next = b.stamp(&ReliableJsonCodec, &text("{}"), None).unwrap();
        assert!(next.to_text().unwrap().starts_with(r#"{"sequenceId":6,"#));
    }

    #[test]
    fn restores_and_continues_numbering() {
        let mut b = ReliableBuffer::new(10, 1 << 20);
        b.restore(
            vec![
                (7, "{\"sequenceId\":7}".into()),
                (8, "{\"sequenceId\":8}".into()),
            ],
            8,
        );
        assert_eq!((b.unacked().count(), b.last_id()), (2, 8));
        assert_eq!(b.ack(7), 1);
        assert!(
            b.stamp(&ReliableJsonCodec, &text("{}"), None)
                .unwrap()
                .to_text()
                .unwrap()
                .starts_with(r#"{"sequenceId":9,"#)
        );
        let mut b = ReliableBuffer::new(10, 1 << 20);
        b.restore(Vec::new(), 41);
        let next = b.stamp(&ReliableJsonCodec, &text("{}"), None).unwrap();
        assert!(next.to_text().unwrap().starts_with(r#"{"sequenceId":42,"#));
    }

    #[test]
    fn expired_frames_are_not_resent() {
        let mut b = ReliableBuffer::new(10, 1 << 20);
        let now = crate::registry::now_ms();
        b.stamp(&ReliableJsonCodec, &text("{}"), Some(now.saturating_sub(1)))
            .unwrap();
        b.stamp(&ReliableJsonCodec, &text("{}"), Some(now + 60_000))
            .unwrap();
        b.stamp(&ReliableJsonCodec, &text("{}"), None).unwrap();
        let ids: Vec<u64> = b.unacked_with_ids().map(|(id, _)| id).collect();
        assert_eq!(ids, vec![2, 3], "the expired message is left out");
        assert_eq!(b.unacked().count(), 2);
        // Acknowledging past it still drops it.
        assert_eq!(b.ack(3), 3);
    }

    #[test]
    fn bounded_in_messages_and_bytes() {
        let mut b = ReliableBuffer::new(2, 1 << 20);
        b.stamp(&ReliableJsonCodec, &text("{}"), None).unwrap();
        b.stamp(&ReliableJsonCodec, &text("{}"), None).unwrap();
        assert_eq!(
            b.stamp(&ReliableJsonCodec, &text("{}"), None),
            Err(BufferFull)
        );
        let mut b = ReliableBuffer::new(100, 40);
        b.stamp(&ReliableJsonCodec, &text(r#"{"a":"0123456789"}"#), None)
            .unwrap();
        assert_eq!(
            b.stamp(&ReliableJsonCodec, &text(r#"{"a":"0123456789"}"#), None),
            Err(BufferFull)
        );
    }
}
