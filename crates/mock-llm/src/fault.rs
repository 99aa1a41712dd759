//! Failure simulation: the markers in a last user message that make the mock
//! misbehave (see the crate docs).

use actix_web::http::StatusCode;

use crate::markers::markers;

/// A misbehaviour asked for by a marker in the last user message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InjectedFault {
    /// `[mock:status=NNN]`: answer HTTP NNN (400 to 599), no stream.
    Status(StatusCode),
    /// `[mock:hang]`: never send a token.
    Hang,
    /// `[mock:stall-after=K]`: go silent after K chunks (reasoning, text or tool-call
    /// fragments) following the role event.
    StallAfter(usize),
    /// `[mock:endless]`: after the answer's words, keep sending `more ` until
    /// `max_tokens` (or the client leaves); tool calls are unaffected.
    Endless,
}

impl InjectedFault {
    /// The first valid failure marker in `text`; unknown or malformed markers are
    /// skipped.
    pub(crate) fn find(text: &str) -> Option<InjectedFault> {
        markers(text).find_map(|marker| {
            if marker == "hang" {
                Some(InjectedFault::Hang)
            } else if marker == "endless" {
                Some(InjectedFault::Endless)
            } else if let Some(code) = marker.strip_prefix("status=") {
                code.parse::<u16>()
                    .ok()
                    .filter(|code| (400..=599).contains(code))
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .map(InjectedFault::Status)
            } else if let Some(count) = marker.strip_prefix("stall-after=") {
                count.parse().ok().map(InjectedFault::StallAfter)
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let find = InjectedFault::find;
        assert_eq!(find("hi"), None);
        assert_eq!(
            find("x [mock:status=503] y"),
            Some(InjectedFault::Status(StatusCode::SERVICE_UNAVAILABLE))
        );
        assert_eq!(find("[mock:status=200]"), None);
        assert_eq!(find("[mock:hang]"), Some(InjectedFault::Hang));
        assert_eq!(
            find("[mock:nope] [mock:stall-after=4]"),
            Some(InjectedFault::StallAfter(4))
        );
        assert_eq!(find("[mock:hang"), None);
        assert_eq!(find("a [mock:endless]"), Some(InjectedFault::Endless));
    }
}
