//! The names MCP tools reach the model by: `<server>__<tool>`, made to fit what
//! OpenAI function names allow (`^[A-Za-z0-9_-]{1,64}$`).

use sha2::{Digest, Sha256};

/// Separates a server's name from its tool's in the name the model sees.
pub const SEPARATOR: &str = "__";

/// The longest function name models accept.
pub const MAX_NAME_LEN: usize = 64;

/// The name the model calls `tool` of `server` by. Characters a function name
/// cannot hold become `_`; a name too long is cut and ends with a short hash of the
/// whole, so two long names that share a beginning stay apart. `server` is already
/// a valid name (the configuration checks it).
pub fn model_name(server: &str, tool: &str) -> String {
    let sanitized: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{server}{SEPARATOR}{sanitized}");
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let digest = Sha256::digest(format!("{server}{SEPARATOR}{tool}"));
    let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    // ASCII only by now, so any byte index is a character boundary.
    let keep = MAX_NAME_LEN - suffix.len() - 1;
    format!("{}_{suffix}", &name[..keep])
}

/// Whether `name` could name a tool of one of `servers` (the part after the
/// separator is the server's to decide, and its list changes while parlor runs).
pub fn belongs_to_a_server<'a>(name: &str, mut servers: impl Iterator<Item = &'a str>) -> bool {
    servers.any(|server| {
        name.strip_prefix(server)
            .and_then(|rest| rest.strip_prefix(SEPARATOR))
            .is_some_and(|tool| !tool.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_function_name(name: &str) -> bool {
        (1..=MAX_NAME_LEN).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn names_join_server_and_tool() {
        assert_eq!(model_name("tickets", "lookup"), "tickets__lookup");
        assert_eq!(model_name("fs", "read-file"), "fs__read-file");
    }

    #[test]
    fn characters_functions_cannot_hold_become_underscores() {
        assert_eq!(model_name("fs", "files.read all/é"), "fs__files_read_all__");
    }

    #[test]
    fn long_names_are_cut_and_stay_distinct() {
        let base = "x".repeat(80);
        let first = model_name("server", &format!("{base}a"));
        let second = model_name("server", &format!("{base}b"));
        assert!(is_function_name(&first), "{first}");
        assert!(is_function_name(&second), "{second}");
        assert_eq!(first.len(), MAX_NAME_LEN);
        assert_ne!(first, second);
        assert!(first.starts_with("server__xxx"));
    }

    #[test]
    fn a_name_belongs_to_a_server_by_its_prefix() {
        let servers = ["tickets", "fs"];
        assert!(belongs_to_a_server("tickets__lookup", servers.into_iter()));
        assert!(belongs_to_a_server("fs__read", servers.into_iter()));
        assert!(!belongs_to_a_server("tickets__", servers.into_iter()));
        assert!(!belongs_to_a_server("tickets_lookup", servers.into_iter()));
        assert!(!belongs_to_a_server("other__lookup", servers.into_iter()));
        assert!(!belongs_to_a_server("search_handbook", servers.into_iter()));
    }
}
