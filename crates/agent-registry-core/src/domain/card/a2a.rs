//! An A2A AgentCard: 1.0 (`supportedInterfaces`) or 0.3 (`url` and `protocolVersion` at the
//! top), each with its own required members, checked and named by path.

use serde_json::{Map, Value};

use super::{Fields, ROOT, ValidationError, invalid, skills};

/// Checks an AgentCard. A card with `supportedInterfaces` is 1.0; one with a top-level `url`
/// or `protocolVersion` (and no interfaces) is 0.3; any other is judged as 1.0, whose members
/// its errors then name. (The summary reads the version the same way.)
pub(super) fn check(object: &Map<String, Value>) -> Result<(), ValidationError> {
    let card = Fields::new(ROOT, object);
    let v03 = !card.has("supportedInterfaces") && (card.has("url") || card.has("protocolVersion"));
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
