//! Giving freed heap memory back to the operating system.
//!
//! glibc keeps what a burst of connections freed: after rounds of opening and
//! closing 10,000 sessions a gateway's resident memory drifts upwards although it
//! holds the same sessions. `malloc_trim` hands the free pages back; doing it now
//! and then keeps the resident size close to what is really in use.

use std::time::Duration;

/// How often freed memory is handed back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Hands freed memory back every [`TRIM_INTERVAL`] for as long as the runtime runs.
pub fn trim_periodically() {
    actix_web::rt::spawn(async {
        let mut interval = tokio::time::interval(TRIM_INTERVAL);
        loop {
            interval.tick().await;
            trim();
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own heap structures under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
