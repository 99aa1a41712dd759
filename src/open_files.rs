//! Raising the limit on open files at start. Every WebSocket is a file descriptor,
//! and the usual soft limit (1,024) would cap a gateway at about a thousand
//! clients, failing `accept` (and then its own health checks) beyond them, while
//! the hard limit set by the operator is often far higher. The soft limit is the
//! process's own to raise up to the hard one, so parlor does, and says what it got.

/// The soft and hard limits on open files, as `getrlimit` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub soft: libc::rlim_t,
    pub hard: libc::rlim_t,
}

/// Raises the soft limit on open files to the hard limit; answers the limits
/// before and after (`None` where the platform has no such limit).
pub fn raise_to_hard_limit() -> Option<(OpenFileLimit, OpenFileLimit)> {
    let before = current()?;
    if before.soft < before.hard {
        let raised = libc::rlimit {
            rlim_cur: before.hard,
            rlim_max: before.hard,
        };
        // SAFETY: setrlimit reads the struct it is given and changes only this
        // process's limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, soft = before.soft, "could not raise the open file limit");
        }
    }
    Some((before, current()?))
}

/// Raises the limit (see [`raise_to_hard_limit`]) and logs what a gateway can hold.
pub fn raise_and_report() {
    let Some((before, now)) = raise_to_hard_limit() else {
        return;
    };
    if now.soft > before.soft {
        tracing::info!(
            from = before.soft,
            to = now.soft,
            "raised the open file limit"
        );
    }
    if now.soft < 4_096 {
        tracing::warn!(
            limit = now.soft,
            "the open file limit caps connections at about this many; raise the hard limit (ulimit -Hn, LimitNOFILE=) for more"
        );
    } else {
        tracing::debug!(limit = now.soft, "open file limit");
    }
}

fn current() -> Option<OpenFileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    Some(OpenFileLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (before, now) = raise_to_hard_limit().expect("Linux has an open file limit");
        assert_eq!(now.hard, before.hard);
        assert_eq!(now.soft, now.hard);
    }
}
