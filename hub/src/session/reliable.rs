//! The reliable protocol's side of a session: sequence ids and the buffer of unacknowledged
//! messages that a reconnecting client gets again.

use std::collections::VecDeque;

use nerve_protocol::{Codec, Frame, FrameRef};

use crate::socket::Utf8Bytes;

/// The reliable buffer exceeded its bounds; the session cannot be recovered.
#[derive(Debug, PartialEq, Eq)]
pub struct BufferFull;

/// Unacked messages of one reliable session, in sequence order.
#[derive(Debug)]
pub struct ReliableBuffer {
    next_sequence_id: u64,
    unacked: VecDeque<(u64, Utf8Bytes)>,
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

    /// Numbers a message frame with `codec` and keeps it until acknowledged; returns the frame
    /// to write.
    pub fn stamp(&mut self, codec: &dyn Codec, frame: &str) -> Result<Utf8Bytes, BufferFull> {
        if self.unacked.len() >= self.max_messages
            || self.unacked_bytes + frame.len() > self.max_bytes
        {
            return Err(BufferFull);
        }
        let id = self.next_sequence_id;
        self.next_sequence_id += 1;
        let stamped = match codec.sequence(FrameRef::Text(frame), id) {
            Some(Frame::Text(numbered)) => Utf8Bytes::from(numbered),
            // A protocol without sequence ids (or with binary ones) resends the frame as it is.
            _ => Utf8Bytes::from(frame),
        };
        self.unacked_bytes += stamped.len();
        self.unacked.push_back((id, stamped.clone()));
        if self.unacked.capacity() > 64 && self.unacked.len() < self.unacked.capacity() / 4 {
            self.unacked.shrink_to(self.unacked.len() * 2);
        }
        Ok(stamped)
    }

    /// Drops everything up to and including `sequence_id`; returns how many were dropped.
    pub fn ack(&mut self, sequence_id: u64) -> usize {
        let mut dropped = 0;
        while let Some((id, frame)) = self.unacked.front() {
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
            self.unacked.push_back((id, Utf8Bytes::from(frame)));
        }
        self.next_sequence_id = self.next_sequence_id.max(last_id + 1);
    }

    /// The frames to resend after a reconnection, oldest first.
    pub fn unacked(&self) -> impl Iterator<Item = &Utf8Bytes> {
        self.unacked.iter().map(|(_, f)| f)
    }

    /// The unacknowledged frames with their sequence ids, oldest first.
    pub fn unacked_with_ids(&self) -> impl Iterator<Item = (u64, &Utf8Bytes)> {
        self.unacked.iter().map(|(id, f)| (*id, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_protocol::codec::json::ReliableJsonCodec;

    #[test]
    fn numbers_from_one_and_trims_on_ack() {
        let mut b = ReliableBuffer::new(10, 1 << 20);
        for _ in 0..5 {
            b.stamp(&ReliableJsonCodec, r#"{"type":"message"}"#)
                .unwrap();
        }
        b.ack(3);
        let left: Vec<String> = b.unacked().map(|f| f.as_str().to_string()).collect();
        assert_eq!(left.len(), 2);
        assert!(left[0].starts_with(r#"{"sequenceId":4,"#));
        b.ack(99);
        assert!(b.unacked().next().is_none());
        let next = b.stamp(&ReliableJsonCodec, "{}").unwrap();
        assert!(next.as_str().starts_with(r#"{"sequenceId":6,"#));
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
            b.stamp(&ReliableJsonCodec, "{}")
                .unwrap()
                .as_str()
                .starts_with(r#"{"sequenceId":9,"#)
        );
        let mut b = ReliableBuffer::new(10, 1 << 20);
        b.restore(Vec::new(), 41);
        let next = b.stamp(&ReliableJsonCodec, "{}").unwrap();
        assert!(next.as_str().starts_with(r#"{"sequenceId":42,"#));
    }

    #[test]
    fn bounded_in_messages_and_bytes() {
        let mut b = ReliableBuffer::new(2, 1 << 20);
        b.stamp(&ReliableJsonCodec, "{}").unwrap();
        b.stamp(&ReliableJsonCodec, "{}").unwrap();
        assert_eq!(b.stamp(&ReliableJsonCodec, "{}"), Err(BufferFull));
        let mut b = ReliableBuffer::new(100, 40);
        b.stamp(&ReliableJsonCodec, r#"{"a":"0123456789"}"#)
            .unwrap();
        assert_eq!(
            b.stamp(&ReliableJsonCodec, r#"{"a":"0123456789"}"#),
            Err(BufferFull)
        );
    }
}
