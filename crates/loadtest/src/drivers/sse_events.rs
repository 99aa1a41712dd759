//! A small incremental Server-Sent Events reader: bytes in, events out, borrowing
//! from its buffer so an event costs no allocation (unless it has several `data:`
//! lines).

use std::borrow::Cow;

/// Largest event accepted; a stream that sends more without a blank line is broken.
const MAX_EVENT_BYTES: usize = 8 << 20;

#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field; empty for the default event type.
    pub name: &'a str,
    pub data: Cow<'a, str>,
}

#[derive(Default)]
pub struct EventReader {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already handed out as events.
    consumed: usize,
}

/// The stream sent more than [`MAX_EVENT_BYTES`] without ending an event.
#[derive(Debug)]
pub struct EventTooLarge;

impl EventReader {
    /// Forgets everything, keeping the buffer's memory.
    pub fn clear(&mut self) {
        self.buffer.clear();
        self.consumed = 0;
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<(), EventTooLarge> {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        if self.buffer.len() + bytes.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        loop {
            let start = self.consumed;
            let (block, end) = next_block(&self.buffer[start..])?;
            self.consumed = start + end;
            let block = &self.buffer[start..start + block];
            if let Some(event) = parse_block(block) {
                return Some(event);
            }
        }
    }
}

/// Where the first event block of `bytes` ends (its length without the blank
/// line) and where the next one starts.
fn next_block(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    while let Some(offset) = bytes[line_start..].iter().position(|&b| b == b'\n') {
        let line_end = line_start + offset;
        let line = &bytes[line_start..line_end];
        if line.is_empty() || line == b"\r" {
            return Some((line_start, line_end + 1));
        }
        line_start = line_end + 1;
    }
    None
}

/// The event of one block, or `None` for a block of comments only.
fn parse_block(block: &[u8]) -> Option<Event<'_>> {
    let text = std::str::from_utf8(block).ok()?;
    let mut name = "";
    let mut data: Option<Cow<'_, str>> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => name = value,
            "data" => {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(earlier) => Cow::Owned(format!("{earlier}\n{value}")),
                })
            }
            _ => {}
        }
    }
    data.map(|data| Event { name, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(reader: &mut EventReader) -> Vec<(String, String)> {
        let mut events = Vec::new();
        while let Some(event) = reader.next_event() {
            events.push((event.name.to_owned(), event.data.into_owned()));
        }
        events
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream =
            b"data: {\"a\":1}\n\n: comment\n\nevent: end\ndata: x\r\n\r\ndata: one\ndata: two\n\n";
        for cut in 0..stream.len() {
            let mut reader = EventReader::default();
            reader.push(&stream[..cut]).unwrap();
            let mut events = drain(&mut reader);
            reader.push(&stream[cut..]).unwrap();
            events.extend(drain(&mut reader));
            assert_eq!(
                events,
                vec![
                    ("".into(), "{\"a\":1}".into()),
                    ("end".into(), "x".into()),
                    ("".into(), "one\ntwo".into()),
                ],
                "cut at {cut}"
            );
        }
    }
}
