//! `[mcp]`: the MCP servers whose tools the knowledge agent offers the model, and
//! the hosts `POST /validate_mcp` may reach (docs/mcp.md).

use std::collections::BTreeMap;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// `[[mcp.servers]]`, each reached over streamable HTTP (`url`) or started as a
    /// child process spoken to over its stdio (`command`).
    pub servers: Vec<McpServerConfig>,
    /// Hosts (`name` or `name:port`) `POST /validate_mcp` may connect to. None by
    /// default: that route makes the server open a URL a browser chose.
    pub validate_allowed_hosts: Vec<String>,
}

/// One `[[mcp.servers]]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// `[A-Za-z0-9_-]{1,32}`; its tools reach the model as `<name>__<tool>`.
    pub name: String,
    /// The server's streamable HTTP endpoint (e.g. `http://127.0.0.1:7003/mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Headers sent with every request to `url` (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    /// The program to start, spoken to over its stdin and stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Variables added to the child's environment (it inherits parlor's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, Secret>,
}

/// How parlor reaches one MCP server.
#[derive(Clone, Debug, PartialEq)]
pub enum McpTransport<'a> {
    Http {
        url: &'a str,
        headers: &'a BTreeMap<String, Secret>,
    },
    Stdio {
        command: &'a str,
        args: &'a [String],
        env: &'a BTreeMap<String, Secret>,
    },
}

impl McpServerConfig {
    pub const MAX_NAME_LEN: usize = 32;

    /// The transport the table names; [`McpConfig::problem`] has checked there is one.
    pub fn transport(&self) -> McpTransport<'_> {
        match (&self.url, &self.command) {
            (Some(url), _) => McpTransport::Http {
                url,
                headers: &self.headers,
            },
            (None, command) => McpTransport::Stdio {
                command: command.as_deref().unwrap_or_default(),
                args: &self.args,
                env: &self.env,
            },
        }
    }

    fn problem(&self) -> Option<String> {
        let name = &self.name;
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if !(1..=Self::MAX_NAME_LEN).contains(&name.len()) || !name.chars().all(allowed) {
            return Some(format!(
                "a server name is 1 to {} characters of A-Z, a-z, 0-9, _ and -, not {name:?}",
                Self::MAX_NAME_LEN
            ));
        }
        if name.contains("__") {
            return Some(format!(
                "the server name {name:?} holds \"__\", which separates a server's name from its tools'"
            ));
        }
        match (&self.url, &self.command) {
            (Some(_), Some(_)) => Some(format!(
                "server {name:?} has both url and command; give one"
            )),
            (None, None) => Some(format!(
                "server {name:?} needs url (streamable HTTP) or command (stdio)"
            )),
            (Some(url), None) => {
                if !self.args.is_empty() || !self.env.is_empty() {
                    return Some(format!(
                        "server {name:?}: args and env are for a command, not a url"
                    ));
                }
                match Url::parse(url) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => None,
                    _ => Some(format!(
                        "server {name:?}: url must be an http(s) URL, not {url:?}"
                    )),
                }
            }
            (None, Some(command)) => {
                if command.trim().is_empty() {
                    return Some(format!("server {name:?}: command is empty"));
                }
                (!self.headers.is_empty())
                    .then(|| format!("server {name:?}: headers are for a url, not a command"))
            }
        }
    }
}

impl McpConfig {
    /// What is wrong with `[mcp]`, if anything: the key and the problem.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        for (index, server) in self.servers.iter().enumerate() {
            if let Some(problem) = server.problem() {
                return Some(("mcp.servers", problem));
            }
            let later = &self.servers[index + 1..];
            if later.iter().any(|other| other.name == server.name) {
                return Some((
                    "mcp.servers",
                    format!(
                        "two servers are named {:?}; names prefix tools and must differ",
                        server.name
                    ),
                ));
            }
        }
        let empty = self.validate_allowed_hosts.iter().find(|host| {
            host.trim().is_empty() || host.contains('/') || host.contains(char::is_whitespace)
        });
        if let Some(host) = empty {
            return Some((
                "mcp.validate_allowed_hosts",
                format!("{host:?} is not a host (write `name` or `name:port`)"),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(name: &str, url: &str) -> McpServerConfig {
        McpServerConfig {
            name: name.into(),
            url: Some(url.into()),
            headers: BTreeMap::new(),
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
        }
    }

    fn problem(servers: Vec<McpServerConfig>) -> Option<String> {
        let config = McpConfig {
            servers,
            validate_allowed_hosts: Vec::new(),
        };
        config.problem().map(|(_, problem)| problem)
    }

    #[test]
    fn a_server_has_a_tool_friendly_name_and_one_transport() {
        assert_eq!(
            problem(vec![http("tickets", "http://127.0.0.1:1/mcp")]),
            None
        );
        for name in ["", "has space", "a.b", "x__y", &"n".repeat(33)] {
            let found = problem(vec![http(name, "http://h/mcp")]);
            assert!(found.is_some(), "{name:?} was accepted");
        }
        let found = problem(vec![http("t", "ftp://h/mcp")]).unwrap();
        assert!(found.contains("http(s) URL"), "{found}");
        let mut both = http("t", "http://h/mcp");
        both.command = Some("server".into());
        assert!(
            problem(vec![both])
                .unwrap()
                .contains("both url and command")
        );
        let mut neither = http("t", "http://h/mcp");
        neither.url = None;
        assert!(problem(vec![neither]).unwrap().contains("needs url"));
    }

    #[test]
    fn server_names_differ() {
        let servers = vec![http("a", "http://h/1"), http("a", "http://h/2")];
        assert!(problem(servers).unwrap().contains("two servers"));
    }

    #[test]
    fn a_stdio_server_takes_args_and_env_and_no_headers() {
        let mut stdio = http("files", "http://h/mcp");
        stdio.url = None;
        stdio.command = Some("npx".into());
        stdio.args = vec!["-y".into(), "server".into()];
        stdio.env.insert("TOKEN".into(), Secret::new("s"));
        assert_eq!(problem(vec![stdio.clone()]), None);
        assert!(matches!(
            stdio.transport(),
            McpTransport::Stdio { command: "npx", .. }
        ));
        stdio
            .headers
            .insert("Authorization".into(), Secret::new("x"));
        assert!(problem(vec![stdio]).unwrap().contains("headers"));
    }
}
