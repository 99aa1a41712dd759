//! Logging: `tracing`, human-readable by default, JSON with `PARLOR_LOG_FORMAT=json`,
//! level from `RUST_LOG` (default `info`). Logs go to stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("PARLOR_LOG_FORMAT").is_ok_and(|format| format == "json");
    // A second initialisation (tests calling in twice) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
