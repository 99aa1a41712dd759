//! The open-file limit: every connection is a file descriptor, so thousands of
//! sessions need more than the usual soft limit of 1024.

use std::io;

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit and returns
/// the soft limit in force afterwards.
pub fn raise_open_file_limit() -> io::Result<libc::rlim_t> {
    let mut limit = current()?;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// The RLIMIT_NOFILE soft limit in force now.
pub fn open_file_limit() -> Option<libc::rlim_t> {
    current().ok().map(|limit| limit.rlim_cur)
}

fn current() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        let soft = raise_open_file_limit().unwrap();
        let limit = current().unwrap();
        assert_eq!(soft, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(open_file_limit(), Some(soft));
    }
}
