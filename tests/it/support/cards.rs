//! Cards for tests: A2A 1.0 and 0.3 AgentCards and MCP `server.json`s, valid unless changed.

use serde_json::{Value, json};

/// An A2A 1.0 card named `name`, with one skill per `(id, tags)`.
pub fn a2a(name: &str, skills: &[(&str, &[&str])]) -> Value {
    json!({
        "name": name,
        "description": format!("{name}, an agent for tests."),
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": "https://agents.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": skills
            .iter()
            .map(|(id, tags)| json!({
                "id": id,
                "name": id.replace('-', " "),
                "description": format!("Does {id}."),
                "tags": tags,
            }))
            .collect::<Vec<_>>(),
    })
}

/// The card of a fixture agent: one skill, `work`.
pub fn simple(name: &str) -> Value {
    a2a(name, &[("work", &["test"])])
}

/// An MCP `server.json` named `io.example/<server>`.
pub fn mcp(server: &str) -> Value {
    json!({
        "name": format!("io.example/{server}"),
        "description": format!("The {server} MCP server."),
        "version": "1.0.0",
        "remotes": [{"type": "streamable-http", "url": format!("https://mcp.example/{server}")}]
    })
}

/// A card as a Register or PublishCard request carries it: MCP when it looks like a
/// `server.json` (a reverse-DNS name), else A2A.
pub fn proto_card(card: &Value) -> agent_registry::proto::Card {
    use agent_registry::proto::CardKind;
    let mcp = card["name"].as_str().is_some_and(|n| n.contains('/'));
    agent_registry::proto::Card {
        kind: match mcp {
            true => CardKind::Mcp,
            false => CardKind::A2a,
        } as i32,
        json: card.to_string(),
    }
}
