//! What the registry reads out of a card — name, description, version, skills, media types —
//! held as spans of the card's own text, so a card held in memory costs its bytes and a few
//! words per string rather than a second copy of every string. A string the card spells with
//! escapes is kept decoded beside the spans.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

use super::CardKind;

/// Where one string is: in the card's text, or (`len`'s top bit set) in the decoded strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    len: u32,
}

const DECODED: u32 = 1 << 31;

/// One skill's strings; its lists (tags, examples, input modes, output modes) are the items
/// of [`CardSummary::lists`] from `lists[k]` to `lists[k + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SkillSpans {
    id: Span,
    name: Span,
    description: Span,
    lists: [u32; 5],
}

/// What the registry reads out of a card: what search indexes and an agent shows.
#[derive(Clone, PartialEq, Eq)]
pub struct CardSummary {
    /// The card's JSON text (the same allocation as the card's bytes).
    source: Arc<str>,
    /// Strings the card spells with escapes, decoded, one after another.
    decoded: Box<str>,
    name: Span,
    description: Span,
    version: Span,
    /// The schema it was read by: `a2a/1.0`, `a2a/0.3` or `mcp`.
    pub schema: &'static str,
    skills: Box<[SkillSpans]>,
    /// Every list item: the default input modes, the default output modes, then each skill's
    /// lists in order.
    lists: Box<[Span]>,
    /// The default input modes are `lists[defaults[0]..defaults[1]]`, the output modes
    /// `lists[defaults[1]..defaults[2]]`.
    defaults: [u32; 3],
}

/// One skill of a card, as search indexes and answers it.
#[derive(Clone, Copy)]
pub struct SkillRef<'a> {
    summary: &'a CardSummary,
    spans: &'a SkillSpans,
}

impl<'a> SkillRef<'a> {
    pub fn id(&self) -> &'a str {
        self.summary.text(self.spans.id)
    }

    pub fn name(&self) -> &'a str {
        self.summary.text(self.spans.name)
    }

    pub fn description(&self) -> &'a str {
        self.summary.text(self.spans.description)
    }

    pub fn tags(self) -> impl Iterator<Item = &'a str> + 'a {
        self.list(0)
    }

    pub fn examples(self) -> impl Iterator<Item = &'a str> + 'a {
        self.list(1)
    }

    /// The skill's own media types; none: the card's defaults.
    pub fn input_modes(self) -> impl Iterator<Item = &'a str> + 'a {
        self.list(2)
    }

    pub fn output_modes(self) -> impl Iterator<Item = &'a str> + 'a {
        self.list(3)
    }

    fn list(self, k: usize) -> impl Iterator<Item = &'a str> + 'a {
        let b = &self.spans.lists;
        self.summary.items(b[k], b[k + 1])
    }
}

/// The strings, not the spans (a failing test shows what was read).
impl fmt::Debug for CardSummary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let skills: Vec<_> = self
            .skills()
            .map(|s| {
                (
                    s.id(),
                    s.name(),
                    s.description(),
                    s.tags().collect::<Vec<_>>(),
                    s.examples().collect::<Vec<_>>(),
                    s.input_modes().collect::<Vec<_>>(),
                    s.output_modes().collect::<Vec<_>>(),
                )
            })
            .collect();
        f.debug_struct("CardSummary")
            .field("schema", &self.schema)
            .field("name", &self.name())
            .field("description", &self.description())
            .field("version", &self.version())
            .field("skills", &skills)
            .field(
                "default_input_modes",
                &self.default_input_modes().collect::<Vec<_>>(),
            )
            .field(
                "default_output_modes",
                &self.default_output_modes().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl CardSummary {
    pub fn name(&self) -> &str {
        self.text(self.name)
    }

    pub fn description(&self) -> &str {
        self.text(self.description)
    }

    pub fn version(&self) -> &str {
        self.text(self.version)
    }

    /// Its skills, in the card's order.
    pub fn skills(&self) -> impl ExactSizeIterator<Item = SkillRef<'_>> {
        self.skills.iter().map(|spans| SkillRef {
            summary: self,
            spans,
        })
    }

    pub fn default_input_modes(&self) -> impl Iterator<Item = &str> {
        self.items(self.defaults[0], self.defaults[1])
    }

    pub fn default_output_modes(&self) -> impl Iterator<Item = &str> {
        self.items(self.defaults[1], self.defaults[2])
    }

    /// Every input media type the card accepts: its defaults and every skill's own.
    pub fn input_modes(&self) -> impl Iterator<Item = &str> {
        let skills = self.skills().flat_map(|s| s.input_modes());
        self.default_input_modes().chain(skills)
    }

    /// Every output media type the card produces.
    pub fn output_modes(&self) -> impl Iterator<Item = &str> {
        let skills = self.skills().flat_map(|s| s.output_modes());
        self.default_output_modes().chain(skills)
    }

    /// Every tag of every skill.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.skills().flat_map(|s| s.tags())
    }

    /// Bytes held for this summary beyond the card's own text, for memory accounting.
    pub fn approx_size(&self) -> usize {
        size_of::<Self>()
            + self.decoded.len()
            + self.skills.len() * size_of::<SkillSpans>()
            + self.lists.len() * size_of::<Span>()
    }

    fn text(&self, span: Span) -> &str {
        let (start, len) = (span.start as usize, (span.len & !DECODED) as usize);
        match span.len & DECODED {
            0 => &self.source[start..start + len],
            _ => &self.decoded[start..start + len],
        }
    }

    fn items(&self, from: u32, to: u32) -> impl Iterator<Item = &str> {
        self.lists[from as usize..to as usize]
            .iter()
            .map(|s| self.text(*s))
    }

    /// Reads the summary of a card of `kind` whose JSON text is `source`. The card was
    /// validated (its errors named by path) before; this pass only finds its strings.
    pub(super) fn read(kind: CardKind, source: Arc<str>) -> Result<CardSummary, serde_json::Error> {
        if source.len() >= DECODED as usize {
            // Spans count in 31 bits; `--max-card-size` is far below.
            return Err(de::Error::custom("is 2 GiB or more"));
        }
        let mut b = Builder {
            source: &source,
            decoded: String::new(),
            lists: Vec::new(),
            skills: Vec::new(),
        };
        let (name, description, version, schema, defaults) = match kind {
            CardKind::A2a => {
                let doc: A2aDoc = serde_json::from_str(&source)?;
                let v03 = super::a2a::is_v03(
                    doc.supported_interfaces.0,
                    doc.url.0,
                    doc.protocol_version.0,
                );
                let defaults = [
                    0,
                    b.list(doc.default_input_modes),
                    b.list(doc.default_output_modes),
                ];
                for skill in doc.skills.unwrap_or_default() {
                    let spans = SkillSpans {
                        id: b.span(skill.id),
                        name: b.span(skill.name),
                        description: b.span(skill.description),
                        lists: [
                            b.lists.len() as u32,
                            b.list(skill.tags),
                            b.list(skill.examples),
                            b.list(skill.input_modes),
                            b.list(skill.output_modes),
                        ],
                    };
                    b.skills.push(spans);
                }
                let schema = if v03 { "a2a/0.3" } else { "a2a/1.0" };
                (doc.name, doc.description, doc.version, schema, defaults)
            }
            CardKind::Mcp => {
                let doc: McpDoc = serde_json::from_str(&source)?;
                (doc.name, doc.description, doc.version, "mcp", [0; 3])
            }
        };
        let (name, description, version) = (b.span(name), b.span(description), b.span(version));
        let Builder {
            decoded,
            lists,
            skills,
            ..
        } = b;
        Ok(CardSummary {
            decoded: decoded.into_boxed_str(),
            name,
            description,
            version,
            schema,
            skills: skills.into_boxed_slice(),
            lists: lists.into_boxed_slice(),
            defaults,
            source,
        })
    }
}

/// Turns the strings found in a card into spans.
struct Builder<'s> {
    source: &'s str,
    decoded: String,
    lists: Vec<Span>,
    skills: Vec<SkillSpans>,
}

impl Builder<'_> {
    /// A span of the card's text when `text` was borrowed from it, else of the decoded text.
    fn span(&mut self, text: Text) -> Span {
        let base = self.source.as_ptr() as usize;
        if let Cow::Borrowed(s) = text.0 {
            let at = (s.as_ptr() as usize).wrapping_sub(base);
            if at <= self.source.len() && s.len() <= self.source.len() - at {
                return Span {
                    start: at as u32,
                    len: s.len() as u32,
                };
            }
        }
        let start = self.decoded.len() as u32;
        self.decoded.push_str(&text.0);
        Span {
            start,
            len: (self.decoded.len() as u32 - start) | DECODED,
        }
    }

    /// Appends a list's items; where the lists now end.
    fn list(&mut self, items: Option<Vec<Text>>) -> u32 {
        for item in items.unwrap_or_default() {
            let span = self.span(item);
            self.lists.push(span);
        }
        self.lists.len() as u32
    }
}

/// A JSON string, borrowed from the card's text when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Whether a member is there at all (with any value, `null` included).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// The members of an A2A card (either version) a summary reads; the rest are skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct A2aDoc<'a> {
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    description: Text<'a>,
    #[serde(borrow)]
    version: Text<'a>,
    #[serde(default, borrow)]
    skills: Option<Vec<SkillDoc<'a>>>,
    #[serde(default, borrow)]
    default_input_modes: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    default_output_modes: Option<Vec<Text<'a>>>,
    #[serde(default)]
    supported_interfaces: Present,
    #[serde(default)]
    url: Present,
    #[serde(default)]
    protocol_version: Present,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SkillDoc<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    description: Text<'a>,
    #[serde(default, borrow)]
    tags: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    examples: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    input_modes: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    output_modes: Option<Vec<Text<'a>>>,
}

/// The members of a `server.json` a summary reads.
#[derive(Deserialize)]
struct McpDoc<'a> {
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    description: Text<'a>,
    #[serde(borrow)]
    version: Text<'a>,
}
