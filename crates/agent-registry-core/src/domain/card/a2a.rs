//! An A2A AgentCard: 1.0 (`supportedInterfaces`) or 0.3 (`url` and `protocolVersion` at the
//! top), each with its own required members, read into the same summary.

use serde_json::{Map, Value};

use super::{CardSummary, Fields, ROOT, ValidationError, invalid, skills};

/// Reads an AgentCard. A card with `supportedInterfaces` is 1.0; one with a top-level `url` or
/// `protocolVersion` (and no interfaces) is 0.3; any other is judged as 1.0, whose members its
/// errors then name.
pub(super) fn read(object: &Map<String, Value>) -> Result<CardSummary, ValidationError> {
    let card = Fields::new(ROOT, object);
    let v03 = !card.has("supportedInterfaces") && (card.has("url") || card.has("protocolVersion"));
    let summary = CardSummary {
        name: card.string("name")?,
        description: card.string("description")?,
        version: card.string("version")?,
        ..CardSummary::default()
    };
    if summary.name.is_empty() {
        return Err(invalid(card.at("name"), "must not be empty"));
    }
    let schema = match v03 {
        true => {
            card.string("protocolVersion")?;
            card.string("url")?;
            "a2a/0.3"
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
            "a2a/1.0"
        }
    };
    card.object("capabilities")?;
    let default_input_modes = card.strings("defaultInputModes")?;
    let default_output_modes = card.strings("defaultOutputModes")?;
    let skills = skills(&card)?;
    Ok(CardSummary {
        schema,
        skills,
        default_input_modes,
        default_output_modes,
        ..summary
    })
}
