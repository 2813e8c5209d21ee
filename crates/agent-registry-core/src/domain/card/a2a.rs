//! An A2A AgentCard: 1.0 (`supportedInterfaces`) or 0.3 (`url` and `protocolVersion` at the
//! top), each with its own required members, checked and named by path.

use serde_json::{Map, Value};

use super::{Fields, ROOT, ValidationError, invalid, skills};

/// Whether a card with these top-level members is A2A 0.3: one with `supportedInterfaces` is
/// 1.0; one with a `url` or `protocolVersion` (and no interfaces) is 0.3; any other is judged
/// as 1.0, whose members its errors then name. Validation and the summary both ask here.
pub(super) fn is_v03(interfaces: bool, url: bool, protocol_version: bool) -> bool {
    !interfaces && (url || protocol_version)
}

/// Checks an AgentCard of either version ([`is_v03`]).
pub(super) fn check(object: &Map<String, Value>) -> Result<(), ValidationError> {
    let card = Fields::new(ROOT, object);
    let v03 = is_v03(
        card.has("supportedInterfaces"),
        card.has("url"),
        card.has("protocolVersion"),
    );
    let name = card.string("name")?;
    card.string("description")?;
    card.string("version")?;
    if name.is_empty() {
        return Err(invalid(card.at("name"), "must not be empty"));
    }
    match v03 {
        true => {
            card.string("protocolVersion")?;
            card.string("url")?;
        }
        false => {
            let interfaces = card.objects("supportedInterfaces")?;
            if interfaces.is_empty() {
                return Err(invalid(
                    card.at("supportedInterfaces"),
                    "must list at least one interface",
                ));
            }
            for interface in &interfaces {
                interface.string("url")?;
                interface.string("protocolBinding")?;
                interface.string("protocolVersion")?;
            }
        }
    }
    card.object("capabilities")?;
    card.strings("defaultInputModes")?;
    card.strings("defaultOutputModes")?;
    skills(&card)
}
