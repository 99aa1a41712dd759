//! Refusing an oversized WebSocket frame as soon as its header arrives.
//!
//! The frame parser underneath actix-ws checks a frame's length against its limit
//! only once the whole frame is buffered, so a client that announces a frame of
//! 512 MiB and sends it makes the gateway hold 512 MiB first. [`FrameGuard`] sits
//! between the connection and that parser: it reads each frame's header as the bytes
//! go by (without copying them) and ends the stream with [`PayloadError::Overflow`]
//! when a frame claims more than the limit, so the session closes with 1009 while
//! the gateway holds a few kilobytes.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// Passes the client's bytes on unchanged, following the frame boundaries.
pub struct FrameGuard<S> {
    bytes: S,
    limit: u64,
    frames: FrameBoundaries,
    refused: bool,
}

impl<S> FrameGuard<S> {
    pub fn new(bytes: S, limit: usize) -> Self {
        Self {
            bytes,
            limit: limit as u64,
            frames: FrameBoundaries::default(),
            refused: false,
        }
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = Pin::into_inner(self);
        if this.refused {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.bytes).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if this.frames.read(&bytes, this.limit) {
                    Poll::Ready(Some(Ok(bytes)))
                } else {
                    this.refused = true;
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            }
            other => other,
        }
    }
}

/// Puts a [`FrameGuard`] in front of a WebSocket request's body.
pub fn guard_frames(body: actix_web::web::Payload, limit: usize) -> actix_web::dev::Payload {
    actix_web::dev::Payload::Stream {
        payload: Box::pin(FrameGuard::new(body, limit)),
    }
}

/// Where the client's byte stream is: in a frame header, or inside a payload.
#[derive(Default)]
struct FrameBoundaries {
    header: [u8; 14],
    /// Header bytes seen of the current frame.
    header_read: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
}

impl FrameBoundaries {
    /// Follows `bytes`; false once a frame's header claims more than `limit`.
    fn read(&mut self, mut bytes: &[u8], limit: u64) -> bool {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skipped = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= skipped;
                bytes = &bytes[skipped as usize..];
                continue;
            }
            self.header[self.header_read] = bytes[0];
            self.header_read += 1;
            bytes = &bytes[1..];
            if let Some(length) = self.complete_header() {
                if length > limit {
                    return false;
                }
                self.header_read = 0;
                self.payload_left = length;
            }
        }
        true
    }

    /// The payload length, once the whole header is in.
    fn complete_header(&self) -> Option<u64> {
        if self.header_read < 2 {
            return None;
        }
        let masked = self.header[1] & 0x80 != 0;
        let (length_bytes, short_length) = match self.header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            length => (0, Some(u64::from(length))),
        };
        let header_length = 2 + length_bytes + if masked { 4 } else { 0 };
        if self.header_read < header_length {
            return None;
        }
        Some(short_length.unwrap_or_else(|| {
            self.header[2..2 + length_bytes]
                .iter()
                .fold(0, |length, &byte| (length << 8) | u64::from(byte))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's (masked) frame header announcing `length` bytes.
    fn header(length: u64) -> Vec<u8> {
        let mut header = vec![0x81];
        match length {
            0..=125 => header.push(0x80 | length as u8),
            126..=65535 => {
                header.push(0x80 | 126);
                header.extend_from_slice(&(length as u16).to_be_bytes());
            }
            _ => {
                header.push(0x80 | 127);
                header.extend_from_slice(&length.to_be_bytes());
            }
        }
        header.extend_from_slice(&[1, 2, 3, 4]);
        header
    }

    fn frame(length: usize) -> Vec<u8> {
        let mut frame = header(length as u64);
        frame.extend(std::iter::repeat_n(b'x', length));
        frame
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_pieces() {
        let mut stream = frame(5);
        stream.extend(frame(300));
        stream.extend(frame(70_000));
        stream.extend(frame(0));
        for piece_size in [1, 3, 7, 1000, stream.len()] {
            let mut frames = FrameBoundaries::default();
            for piece in stream.chunks(piece_size) {
                assert!(frames.read(piece, 70_000), "pieces of {piece_size}");
            }
            assert_eq!(frames.header_read, 0);
            assert_eq!(frames.payload_left, 0);
        }
    }

    #[test]
    fn a_header_claiming_too_much_is_refused_before_any_payload() {
        for length in [126, 70_000, 512 << 20] {
            let mut frames = FrameBoundaries::default();
            assert!(frames.read(&frame(10), 125));
            assert!(!frames.read(&header(length), 125), "length {length}");
        }
    }

    #[test]
    fn the_header_is_judged_even_when_it_arrives_byte_by_byte() {
        let mut frames = FrameBoundaries::default();
        let header = header(1 << 40);
        let (last, first) = header.split_last().unwrap();
        for byte in first {
            assert!(frames.read(&[*byte], 1024));
        }
        assert!(!frames.read(&[*last], 1024));
    }
}
