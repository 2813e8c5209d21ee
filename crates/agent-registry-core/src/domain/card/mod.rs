//! Agent cards (SPEC §15): what an agent offers, as an A2A AgentCard or an MCP `server.json`.
//! A card is kept as the exact bytes it arrived as; validation reads the members the registry
//! indexes (name, description, version, skills, modes) and names the JSON path of anything
//! wrong; the digest is of its RFC 8785 canonical form. No I/O.

mod a2a;
mod json;
mod mcp;
mod summary;

use std::sync::Arc;

use serde_json::{Map, Value};

use super::validate::ValidationError;

pub use json::is_digest;
pub use summary::{CardSummary, SkillRef};

/// The default `--max-card-size`.
pub const DEFAULT_MAX_CARD_BYTES: usize = 64 * 1024;
/// Most skills a card may list.
pub const MAX_SKILLS: usize = 100;

/// What a card describes, and so which schema it is read by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CardKind {
    /// An A2A AgentCard (A2A 1.0; 0.3 accepted).
    A2a,
    /// An MCP server's `server.json`.
    Mcp,
}

impl CardKind {
    pub const ALL: [CardKind; 2] = [CardKind::A2a, CardKind::Mcp];

    /// The spelling stored and sent (`a2a`, `mcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            CardKind::A2a => "a2a",
            CardKind::Mcp => "mcp",
        }
    }

    pub fn parse(s: &str) -> Option<CardKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A card as a request carries it, before validation: its kind (empty: `a2a`) and its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardInput {
    pub kind: String,
    pub json: Vec<u8>,
}

impl CardInput {
    /// The card, validated (see [`Card::parse`]); an unknown kind is refused naming `card.kind`.
    pub fn parse(&self, max_bytes: usize) -> Result<Card, ValidationError> {
        let kind = parse_kind("card.kind", &self.kind)?;
        Card::parse(kind, &self.json, max_bytes)
    }
}

/// A kind as a request spells it (empty: `a2a`), or an error naming `field`.
fn parse_kind(field: &str, kind: &str) -> Result<CardKind, ValidationError> {
    match kind {
        "" => Ok(CardKind::A2a),
        k => CardKind::parse(k).ok_or_else(|| invalid(field, "must be `a2a` or `mcp`")),
    }
}

/// A valid card: its kind, the exact bytes received, its digest and what was read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub kind: CardKind,
    pub bytes: Arc<[u8]>,
    pub digest: String,
    pub summary: Arc<CardSummary>,
}

impl Card {
    /// Reads a card of `kind` from `bytes`, refusing (naming the JSON path under `card`) a card
    /// over `max_bytes`, one that is not a JSON object, or one missing what its kind requires.
    /// Members the registry does not know are kept (cards evolve).
    pub fn parse(kind: CardKind, bytes: &[u8], max_bytes: usize) -> Result<Card, ValidationError> {
        if bytes.len() > max_bytes {
            return Err(invalid(
                ROOT,
                format!(
                    "is {} bytes; the limit is {max_bytes} (--max-card-size)",
                    bytes.len()
                ),
            ));
        }
        let object = json::parse_object(ROOT, bytes)?;
        match kind {
            CardKind::A2a => a2a::check(&object)?,
            CardKind::Mcp => mcp::check(&object)?,
        }
        // Parsed as JSON, so UTF-8 throughout (outside strings JSON is ASCII).
        let source = std::str::from_utf8(bytes).map_err(|e| invalid(ROOT, e.to_string()))?;
        Card::of_text(kind, Arc::from(source), json::digest(&object))
    }

    /// A card read back from the store: validated strictly (and digested) when it was
    /// stored, so only its summary is read again (start-up reads every card); its digest is
    /// the stored one.
    pub fn from_stored(
        kind: CardKind,
        bytes: Vec<u8>,
        digest: String,
    ) -> Result<Card, ValidationError> {
        let source = String::from_utf8(bytes).map_err(|e| invalid(ROOT, e.to_string()))?;
        Card::of_text(kind, Arc::from(source), digest)
    }

    /// The card whose (valid) text is `source`: its summary and its bytes share the text.
    fn of_text(kind: CardKind, source: Arc<str>, digest: String) -> Result<Card, ValidationError> {
        let summary =
            CardSummary::read(kind, source.clone()).map_err(|e| invalid(ROOT, e.to_string()))?;
        Ok(Card {
            kind,
            bytes: Arc::from(source),
            digest,
            summary: Arc::new(summary),
        })
    }
}

/// Where every card path starts.
const ROOT: &str = "card";

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads typed members of one JSON object, naming each by its path.
struct Fields<'a> {
    path: String,
    object: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(path: impl Into<String>, object: &'a Map<String, Value>) -> Self {
        Fields {
            path: path.into(),
            object,
        }
    }

    fn at(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    fn has(&self, name: &str) -> bool {
        self.object.contains_key(name)
    }

    fn required(&self, name: &str) -> Result<&'a Value, ValidationError> {
        self.object
            .get(name)
            .ok_or_else(|| invalid(self.at(name), "required"))
    }

    /// A required string.
    fn string(&self, name: &str) -> Result<&'a str, ValidationError> {
        match self.required(name)? {
            Value::String(s) => Ok(s),
            _ => Err(invalid(self.at(name), "must be a string")),
        }
    }

    /// A required object.
    fn object(&self, name: &str) -> Result<Fields<'a>, ValidationError> {
        match self.required(name)? {
            Value::Object(o) => Ok(Fields::new(self.at(name), o)),
            _ => Err(invalid(self.at(name), "must be an object")),
        }
    }

    /// A required array of objects.
    fn objects(&self, name: &str) -> Result<Vec<Fields<'a>>, ValidationError> {
        let Value::Array(items) = self.required(name)? else {
            return Err(invalid(self.at(name), "must be an array"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(o) => Ok(Fields::new(format!("{}[{i}]", self.at(name)), o)),
                _ => Err(invalid(
                    format!("{}[{i}]", self.at(name)),
                    "must be an object",
                )),
            })
            .collect()
    }

    /// A required array of strings.
    fn strings(&self, name: &str) -> Result<Vec<&'a str>, ValidationError> {
        let Value::Array(items) = self.required(name)? else {
            return Err(invalid(self.at(name), "must be an array of strings"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(invalid(
                    format!("{}[{i}]", self.at(name)),
                    "must be a string",
                )),
            })
            .collect()
    }

    /// An optional array of strings (empty when absent).
    fn optional_strings(&self, name: &str) -> Result<Vec<&'a str>, ValidationError> {
        match self.object.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => self.strings(name),
        }
    }
}

/// Checks skills as A2A cards of either version list them: at most [`MAX_SKILLS`], each with
/// `id`, `name`, `description` and `tags`, ids unique within the card.
fn skills(card: &Fields) -> Result<(), ValidationError> {
    let listed = card.objects("skills")?;
    if listed.len() > MAX_SKILLS {
        return Err(invalid(
            card.at("skills"),
            format!("lists {} skills; at most {MAX_SKILLS}", listed.len()),
        ));
    }
    let mut ids: Vec<&str> = Vec::with_capacity(listed.len());
    for skill in listed {
        let id = skill.string("id")?;
        skill.string("name")?;
        skill.string("description")?;
        skill.strings("tags")?;
        for list in ["examples", "inputModes", "outputModes"] {
            skill.optional_strings(list)?;
        }
        if id.is_empty() {
            return Err(invalid(skill.at("id"), "must not be empty"));
        }
        if let Some(first) = ids.iter().position(|s| *s == id) {
            return Err(invalid(
                skill.at("id"),
                format!("duplicates {}.skills[{first}].id", card.path),
            ));
        }
        ids.push(id);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
