//! The `[mock:...]` markers of a last user message: failures (see `fault`) and the
//! markers that shape the reply (tool calls, broken arguments, reasoning).

/// The bodies of the well-closed `[mock:...]` markers in `text`, in order
/// (`"a [mock:hang] b"` gives `"hang"`). Scanning stops at an unclosed marker, and
/// resumes right after each `[mock:`, so in `[mock:typo [mock:hang]` the second
/// marker still counts.
pub(crate) fn markers(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find("[mock:")?;
        rest = &rest[start + "[mock:".len()..];
        let end = rest.find(']')?;
        Some(&rest[..end])
    })
}

/// The markers that shape the reply (as opposed to failures).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplyMarkers<'a> {
    /// `[mock:tool=NAME]`, in order: call these tools, offered or not.
    pub(crate) tools: Vec<&'a str>,
    /// `[mock:tool-args=broken]`: the first call's arguments are not valid JSON.
    pub(crate) broken_arguments: bool,
    /// `[mock:reasoning]`: think aloud (`reasoning_content`) before answering.
    pub(crate) reasoning: bool,
}

impl<'a> ReplyMarkers<'a> {
    /// The reply markers in `text`; any other marker is ignored here.
    pub(crate) fn find(text: &'a str) -> Self {
        let mut found = ReplyMarkers::default();
        for marker in markers(text) {
            if let Some(name) = marker.strip_prefix("tool=")
                && !name.is_empty()
            {
                found.tools.push(name);
            } else if marker == "tool-args=broken" {
                found.broken_arguments = true;
            } else if marker == "reasoning" {
                found.reasoning = true;
            }
        }
        found
    }

    /// Whether the markers ask for tool calls (when tools are offered).
    pub(crate) fn ask_for_calls(&self) -> bool {
        !self.tools.is_empty() || self.broken_arguments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_bodies_in_order() {
        let found: Vec<&str> = markers("a [mock:x] [nope] [mock:y=1]b [mock:z").collect();
        assert_eq!(found, ["x", "y=1"]);
        assert_eq!(markers("plain").count(), 0);
        let nested: Vec<&str> = markers("[mock:typo [mock:hang]").collect();
        assert_eq!(nested, ["typo [mock:hang", "hang"]);
    }

    #[test]
    fn reply_markers() {
        assert_eq!(ReplyMarkers::find("hello"), ReplyMarkers::default());
        assert!(!ReplyMarkers::find("[mock:reasoning]").ask_for_calls());
        let found = ReplyMarkers::find(
            "[mock:tool=docs] q [mock:tool=] [mock:tool-args=broken] [mock:tool=nope] [mock:reasoning]",
        );
        assert_eq!(
            found,
            ReplyMarkers {
                tools: vec!["docs", "nope"],
                broken_arguments: true,
                reasoning: true,
            }
        );
        assert!(found.ask_for_calls());
        assert!(ReplyMarkers::find("[mock:tool-args=broken]").ask_for_calls());
    }
}
