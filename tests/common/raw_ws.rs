//! A WebSocket client written by hand over TCP, for what a well-behaved client
//! library will not do: announce a frame it never finishes, or never read.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::WAIT;

pub struct RawSocket {
    pub reader: OwnedReadHalf,
    pub writer: OwnedWriteHalf,
}

/// A frame from the server (servers do not mask).
pub struct ServerFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawSocket {
    /// Opens `GET /ws` on `addr` and reads the handshake's answer. The socket's
    /// receive buffer is small, as a slow client's would be, so what it does not
    /// read backs up at the gateway rather than in the kernel.
    pub async fn connect(addr: &str) -> RawSocket {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
        let addr_parsed = addr.parse().expect("an IP:port address");
        let mut stream = socket.connect(addr_parsed).await.expect("connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tokio::time::timeout(WAIT, stream.read_exact(&mut byte))
                .await
                .expect("the handshake's answer in time")
                .expect("read the handshake's answer");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let (reader, writer) = stream.into_split();
        RawSocket { reader, writer }
    }

    /// A client frame's header (masked, as clients must) for `length` payload bytes.
    pub fn header(opcode: u8, fin: bool, length: u64) -> Vec<u8> {
        let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
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
        // The zero mask leaves the payload as it is.
        header.extend_from_slice(&[0, 0, 0, 0]);
        header
    }

    /// A whole text frame.
    pub fn text_frame(text: &str) -> Vec<u8> {
        let mut frame = Self::header(0x1, true, text.len() as u64);
        frame.extend_from_slice(text.as_bytes());
        frame
    }

    /// Reads the next frame (at most [`WAIT`]); `None` if the connection ended.
    pub async fn read_frame(&mut self) -> Option<ServerFrame> {
        tokio::time::timeout(WAIT, read_frame(&mut self.reader))
            .await
            .expect("a frame or the end in time")
    }

    /// Reads frames until a close frame; its code (`None`: the connection ended
    /// without one).
    pub async fn close_code(&mut self) -> Option<u16> {
        close_code(&mut self.reader).await
    }
}

/// Reads frames until a close frame (each within [`WAIT`]); its code (`None`: the
/// connection ended without one).
pub async fn close_code(reader: &mut OwnedReadHalf) -> Option<u16> {
    loop {
        let frame = tokio::time::timeout(WAIT, read_frame(reader))
            .await
            .expect("a frame or the end in time")?;
        if frame.opcode == 0x8 {
            return frame
                .payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
    }
}

async fn read_frame(reader: &mut OwnedReadHalf) -> Option<ServerFrame> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await.ok()?;
    let length = match head[1] & 0x7f {
        126 => {
            let mut bytes = [0u8; 2];
            reader.read_exact(&mut bytes).await.ok()?;
            u64::from(u16::from_be_bytes(bytes))
        }
        127 => {
            let mut bytes = [0u8; 8];
            reader.read_exact(&mut bytes).await.ok()?;
            u64::from_be_bytes(bytes)
        }
        length => u64::from(length),
    };
    let mut payload = vec![0u8; length as usize];
    reader.read_exact(&mut payload).await.ok()?;
    Some(ServerFrame {
        opcode: head[0] & 0x0f,
        payload,
    })
}

/// Writes `total` bytes of `x` in pieces of 1 MiB, giving up quietly when the peer
/// stops reading for `patience` or closes.
pub async fn write_filler(writer: &mut OwnedWriteHalf, total: usize, patience: Duration) {
    let piece = vec![b'x'; 1 << 20];
    let mut written = 0;
    while written < total {
        let size = piece.len().min(total - written);
        match tokio::time::timeout(patience, writer.write_all(&piece[..size])).await {
            Ok(Ok(())) => written += size,
            _ => return,
        }
    }
}
