//! The tool calls the mock makes: their ids, their arguments and how the arguments
//! are cut into streamed fragments.

/// Most tool calls in one reply.
pub const MAX_TOOL_CALLS: usize = 3;

/// How many results every call asks for (`top_k`).
pub const TOOL_CALL_TOP_K: u32 = 3;

/// Characters per streamed argument fragment after the first: short enough that
/// every call's arguments come in several pieces, cut inside the query string.
const FRAGMENT_CHARS: usize = 8;

/// A tool call of the mock, whole (as a client assembles it from the fragments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockToolCall {
    /// `call_<index>_<8 hex digits>`, the digits a hash of the name, the query and
    /// the turn: the same request always gets the same ids.
    pub id: String,
    pub name: String,
    /// JSON text: [`tool_call_arguments`], or not JSON at all when broken on purpose.
    pub arguments: String,
}

/// The `index`-th call (from 0) of the reply to a conversation whose last user
/// message is `query` and which holds `turn` user messages.
pub fn mock_tool_call(index: usize, name: &str, query: &str, turn: usize) -> MockToolCall {
    MockToolCall {
        id: format!("call_{index}_{:08x}", call_hash(name, query, turn)),
        name: name.to_owned(),
        arguments: tool_call_arguments(query),
    }
}

/// The arguments of every mock tool call: `{"query":<query>,"top_k":3}`.
pub fn tool_call_arguments(query: &str) -> String {
    // Serializing a str cannot fail.
    let query = serde_json::to_string(query).unwrap_or_default();
    format!("{{\"query\":{query},\"top_k\":{TOOL_CALL_TOP_K}}}")
}

/// Arguments cut short (`[mock:tool-args=broken]`): the closing brace is missing,
/// so they are not JSON.
pub(crate) fn break_arguments(call: &mut MockToolCall) {
    call.arguments.pop();
}

/// The streamed pieces of `arguments`, in order; they concatenate to it. Cut on
/// character boundaries, never inside a UTF-8 sequence.
pub(crate) fn argument_fragments(arguments: &str) -> Vec<&str> {
    let mut fragments = Vec::new();
    let mut rest = arguments;
    while !rest.is_empty() {
        let cut = rest
            .char_indices()
            .nth(FRAGMENT_CHARS)
            .map_or(rest.len(), |(at, _)| at);
        let (fragment, tail) = rest.split_at(cut);
        fragments.push(fragment);
        rest = tail;
    }
    fragments
}

/// 32-bit FNV-1a: a stable hash (std's `DefaultHasher` may change between releases).
fn call_hash(name: &str, query: &str, turn: usize) -> u32 {
    let bytes = name
        .bytes()
        .chain([0])
        .chain(query.bytes())
        .chain([0])
        .chain(turn.to_le_bytes());
    bytes.fold(0x811c_9dc5, |hash: u32, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_deterministic_and_distinct() {
        let call = mock_tool_call(1, "docs", "what is \"x\"?", 2);
        assert_eq!(call, mock_tool_call(1, "docs", "what is \"x\"?", 2));
        assert!(call.id.starts_with("call_1_"), "{}", call.id);
        assert_eq!(call.id.len(), "call_1_".len() + 8);
        assert_ne!(call.id, mock_tool_call(1, "web", "what is \"x\"?", 2).id);
        assert_ne!(call.id, mock_tool_call(1, "docs", "what is \"x\"?", 3).id);
        let arguments: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(
            arguments,
            serde_json::json!({"query": "what is \"x\"?", "top_k": 3})
        );
    }

    #[test]
    fn broken_arguments_are_not_json() {
        let mut call = mock_tool_call(0, "docs", "q", 1);
        break_arguments(&mut call);
        assert!(serde_json::from_str::<serde_json::Value>(&call.arguments).is_err());
    }

    #[test]
    fn fragments_cut_inside_the_query_and_concatenate_back() {
        let arguments = tool_call_arguments("où est la gare ?");
        let fragments = argument_fragments(&arguments);
        assert!(fragments.len() >= 3, "{fragments:?}");
        assert_eq!(fragments.concat(), arguments);
        // The second piece starts before the query string and ends inside it.
        assert_eq!(fragments[1], ":\"où est");
        assert!(argument_fragments("").is_empty());
    }
}
