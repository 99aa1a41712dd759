//! Log lines reach stderr through a thread of their own, so the threads that serve
//! chats never wait for a write. A few lines a turn at thousands of turns a second
//! made one `write` call each a tenth of the gateway's time; here a line is copied
//! into a buffer in memory and the writer thread writes what gathered, in one call,
//! every [`LINGER`] while lines keep coming (only an idle writer is woken).
//!
//! Nothing is lost: a line waits for room when the buffer is full (stderr does not
//! keep up), and what is left at exit is written by an `atexit` handler (the
//! process returning from `main` or calling `exit`; an abort loses the last
//! [`LINGER`] of lines).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets lines gather before it writes them.
const LINGER: Duration = Duration::from_millis(10);
/// Bytes of lines that may wait for the writer; beyond that a line waits too.
const MAX_PENDING: usize = 1 << 20;
/// How long the exit-time flush waits for a write in flight (stderr may be stuck).
const EXIT_WAIT: Duration = Duration::from_secs(1);

/// Where the log lines go: a handle on the one writer thread of the process.
#[derive(Clone)]
pub struct BackgroundWriter {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Lines arrived for an idle writer thread.
    lines: Condvar,
    /// The writer took the lines: there is room again.
    room: Condvar,
    /// Held while writing, so the exit-time flush comes after the write in flight.
    output: Mutex<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The writer thread waits for lines (and must be woken).
    writer_idle: bool,
}

static STDERR: OnceLock<BackgroundWriter> = OnceLock::new();

impl BackgroundWriter {
    /// The process's writer to stderr, started on first use.
    pub fn stderr() -> Self {
        STDERR
            .get_or_init(|| {
                let writer = Self::start(Box::new(io::stderr()));
                // SAFETY: registers a plain function that does not unwind (every
                // lock it takes tolerates poisoning and it never panics).
                unsafe { libc::atexit(flush_stderr_at_exit) };
                writer
            })
            .clone()
    }

    /// Starts a writer thread writing to `output`.
    fn start(output: Box<dyn Write + Send>) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            lines: Condvar::new(),
            room: Condvar::new(),
            output: Mutex::new(output),
        });
        let writer = shared.clone();
        thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run())
            .expect("cannot start the log writer thread");
        Self { shared }
    }

    /// Writes the lines gathered so far now, after the write in flight, if that
    /// ends within `wait`.
    fn flush_within(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let output = loop {
            match self.shared.output.try_lock() {
                Ok(output) => break output,
                Err(TryLockError::Poisoned(poisoned)) => break poisoned.into_inner(),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(TryLockError::WouldBlock) => return,
            }
        };
        self.shared.write_pending(output, &mut Vec::new());
    }
}

extern "C" fn flush_stderr_at_exit() {
    if let Some(writer) = STDERR.get() {
        writer.flush_within(EXIT_WAIT);
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let mut batch = Vec::new();
        loop {
            self.wait_for_lines();
            // While lines keep coming, nobody needs to wake this thread.
            loop {
                thread::sleep(LINGER);
                let output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
                if !self.write_pending(output, &mut batch) {
                    break;
                }
            }
        }
    }

    fn wait_for_lines(&self) {
        let mut state = self.state();
        while state.pending.is_empty() {
            state.writer_idle = true;
            state = self
                .lines
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Takes the pending lines (into `batch`, which it leaves empty) and writes
    /// them; answers whether there were any.
    fn write_pending(
        &self,
        mut output: MutexGuard<'_, Box<dyn Write + Send>>,
        batch: &mut Vec<u8>,
    ) -> bool {
        std::mem::swap(&mut self.state().pending, batch);
        if batch.is_empty() {
            return false;
        }
        self.room.notify_all();
        // Nowhere to report a failed write to: the line is lost, as with stderr.
        let _ = output.write_all(batch);
        let _ = output.flush();
        batch.clear();
        true
    }

    fn append(&self, line: &[u8]) {
        let mut state = self.state();
        while !state.pending.is_empty() && state.pending.len() + line.len() > MAX_PENDING {
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.pending.extend_from_slice(line);
        if state.writer_idle {
            state.writer_idle = false;
            self.lines.notify_one();
        }
    }
}

/// What one log line is written through: a borrow of the writer, so a line
/// costs no reference count.
pub struct LineSink<'a>(&'a Shared);

impl Write for LineSink<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.0.append(line);
        Ok(line.len())
    }

    /// Lines are written within [`LINGER`]; there is nothing to wait for here.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BackgroundWriter {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> LineSink<'a> {
        LineSink(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn lines_arrive_in_order_soon_after() {
        let output = Captured::default();
        let writer = BackgroundWriter::start(Box::new(output.clone()));
        let expected: String = (0..1000).map(|n| format!("line {n}\n")).collect();
        for n in 0..1000 {
            writer
                .make_writer()
                .write_all(format!("line {n}\n").as_bytes())
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while output.text().len() < expected.len() && Instant::now() < deadline {
            thread::sleep(LINGER);
        }
        assert_eq!(output.text(), expected);
    }

    #[test]
    fn a_flush_writes_what_waits_at_once() {
        let output = Captured::default();
        let writer = BackgroundWriter::start(Box::new(output.clone()));
        writer.make_writer().write_all(b"last words\n").unwrap();
        writer.flush_within(EXIT_WAIT);
        assert_eq!(output.text(), "last words\n");
    }

    #[test]
    fn a_line_longer_than_the_buffer_still_gets_through() {
        let output = Captured::default();
        let writer = BackgroundWriter::start(Box::new(output.clone()));
        let long = "x".repeat(MAX_PENDING + 1);
        writer.make_writer().write_all(b"short\n").unwrap();
        writer.make_writer().write_all(long.as_bytes()).unwrap();
        writer.flush_within(EXIT_WAIT);
        assert_eq!(output.text(), format!("short\n{long}"));
    }
}
