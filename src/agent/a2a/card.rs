//! The agent card (`GET /.well-known/agent-card.json`): who the agent is, where
//! and how to reach it, and one skill per knowledge source.

use a2a::{AgentCapabilities, AgentCard, AgentInterface, AgentSkill};

use crate::agent::knowledge::DataSource;

/// The card of the knowledge agent searching `sources`. Its interface's URL is
/// `/`: the server names the URL it was asked at instead.
pub fn agent_card(sources: &[DataSource]) -> AgentCard {
    let skills = sources
        .iter()
        .map(|source| AgentSkill {
            id: source.id.clone(),
            name: source.name.clone(),
            description: if source.description.is_empty() {
                format!(
                    "Answers from the knowledge source \"{}\", citing it.",
                    source.name
                )
            } else {
                source.description.clone()
            },
            tags: vec!["knowledge".into(), source.kind.clone()],
            examples: None,
            input_modes: None,
            output_modes: None,
            security_requirements: None,
        })
        .collect();
    AgentCard {
        name: "parlor knowledge agent".into(),
        description: "Answers questions from its knowledge sources (and the tools of its MCP \
                      servers), streaming the answer with its tool steps and the passages it \
                      cites."
            .into(),
        version: env!("CARGO_PKG_VERSION").into(),
        supported_interfaces: vec![AgentInterface::new("/", "JSONRPC")],
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(false),
            extensions: None,
            extended_agent_card: Some(false),
        },
        default_input_modes: vec!["text/plain".into()],
        default_output_modes: vec!["text/plain".into(), "application/json".into()],
        skills,
        provider: None,
        documentation_url: None,
        icon_url: None,
        security_schemes: None,
        security_requirements: None,
        signatures: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_card_names_the_jsonrpc_interface_and_a_skill_per_source() {
        let sources = [DataSource {
            id: "search_handbook".into(),
            name: "Handbook".into(),
            description: String::new(),
            kind: "knowledge_base".into(),
        }];
        let card = serde_json::to_value(agent_card(&sources)).unwrap();
        assert_eq!(
            card["supportedInterfaces"],
            json!([{"url": "/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}])
        );
        assert_eq!(card["capabilities"]["streaming"], true);
        assert_eq!(card["skills"][0]["id"], "search_handbook");
        assert!(
            card["skills"][0]["description"]
                .as_str()
                .unwrap()
                .contains("Handbook")
        );
        assert_eq!(card["defaultInputModes"], json!(["text/plain"]));
    }
}
