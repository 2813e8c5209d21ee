//! Realistic agent cards for the catalog scenarios: A2A 1.0 cards of about 2 KiB with 3–10
//! skills, drawn deterministically (agent `i` always has the same card) from a vocabulary of
//! tasks, objects and tags, so text queries and tag filters select a few percent of agents.

use agent_registry::proto::{Card, CardKind, RegisterRequest};
use serde_json::{Value, json};

const VERBS: &[&str] = &[
    "translate",
    "summarize",
    "classify",
    "extract",
    "route",
    "schedule",
    "plan",
    "review",
    "draft",
    "search",
    "monitor",
    "forecast",
    "reconcile",
    "validate",
    "transcribe",
    "tag",
    "rank",
    "detect",
    "generate",
    "audit",
    "negotiate",
    "book",
    "triage",
    "answer",
    "convert",
    "compare",
    "recommend",
    "diagnose",
    "moderate",
    "index",
];
const OBJECTS: &[&str] = &[
    "documents",
    "invoices",
    "tickets",
    "contracts",
    "emails",
    "meetings",
    "flights",
    "hotels",
    "orders",
    "shipments",
    "payments",
    "claims",
    "images",
    "recordings",
    "logs",
    "incidents",
    "leads",
    "reports",
    "datasets",
    "queries",
    "prescriptions",
    "recipes",
    "itineraries",
    "receipts",
    "transactions",
    "resumes",
    "reviews",
    "policies",
    "alerts",
    "repositories",
];
const TAGS: &[&str] = &[
    "finance",
    "travel",
    "legal",
    "health",
    "support",
    "sales",
    "hr",
    "devops",
    "security",
    "retail",
    "logistics",
    "insurance",
    "education",
    "media",
    "research",
    "marketing",
    "compliance",
    "operations",
    "analytics",
    "language",
    "vision",
    "speech",
    "code",
    "data",
    "planning",
    "scheduling",
    "booking",
    "billing",
    "monitoring",
    "search",
    "nlp",
    "ocr",
    "forecasting",
    "fraud",
    "risk",
    "audit",
    "crm",
    "erp",
    "email",
    "chat",
    "voice",
    "pdf",
    "spreadsheet",
    "calendar",
    "maps",
    "weather",
    "news",
    "social",
    "gaming",
    "energy",
];
const MODES: &[&str] = &[
    "text/plain",
    "application/json",
    "image/png",
    "application/pdf",
    "audio/wav",
    "text/csv",
];
const ADJECTIVES: &[&str] = &[
    "Swift", "Careful", "Bright", "Quiet", "Steady", "Clever", "Nimble", "Patient", "Keen",
    "Thorough",
];

/// A small deterministic generator (SplitMix64): the same seed, the same card.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Agent `i`'s card.
pub fn card(i: usize) -> Value {
    let mut d = Draw(i as u64 * 7919 + 17);
    let (adj, obj) = (d.pick(ADJECTIVES), d.pick(OBJECTS));
    let skills: Vec<Value> = (0..d.between(3, 10))
        .map(|k| {
            let (verb, object) = (d.pick(VERBS), d.pick(OBJECTS));
            let tags: Vec<&str> = (0..d.between(2, 4)).map(|_| d.pick(TAGS)).collect();
            json!({
                "id": format!("{verb}-{object}-{k}"),
                "name": format!("{} {object}", capitalize(verb)),
                "description": format!("Can {verb} {object} for {} teams.", tags[0]),
                "tags": tags,
                "examples": [format!("Please {verb} these {object} from last week.")],
                "inputModes": [d.pick(MODES)],
            })
        })
        .collect();
    json!({
        "name": format!("{adj} {} agent {i}", capitalize(obj)),
        "description": format!(
            "A {} agent that works with {obj} end to end: it reads them, acts on them and \
             reports what it did. Deployed by the bench fleet, number {i}.",
            adj.to_lowercase()
        ),
        "version": format!("1.{}.0", i % 7),
        "provider": {"organization": "Bench Corp", "url": "https://bench.example"},
        "supportedInterfaces": [{
            "url": format!("https://agents.bench.example/{i}/a2a"),
            "protocolBinding": "JSONRPC",
            "protocolVersion": "1.0"
        }],
        "capabilities": {"streaming": true, "pushNotifications": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": skills,
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The `n`th query of a run: two words of the vocabulary (a task and an object) and a tag.
pub fn query(n: usize) -> (String, String) {
    let mut d = Draw(n as u64 * 104_729 + 3);
    (
        format!("{} {}", d.pick(VERBS), d.pick(OBJECTS)),
        d.pick(TAGS).to_string(),
    )
}

/// The `n`th filter of a run: one tag.
pub fn tag(n: usize) -> String {
    TAGS[n % TAGS.len()].to_string()
}

/// How a registration carries a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    None,
    /// The card's bytes.
    Bytes,
    /// Only its digest (the card is stored already).
    Digest,
}

/// Cards and their digests for agents `range`, made before a timed phase.
pub struct Prepared {
    first: usize,
    json: Vec<String>,
    digests: Vec<String>,
}

impl Prepared {
    pub fn new(range: std::ops::Range<usize>) -> Prepared {
        let first = range.start;
        let json: Vec<String> = range.map(|i| card(i).to_string()).collect();
        let digests = json
            .iter()
            .map(|j| agent_registry_client::card::digest(j).expect("a valid card"))
            .collect();
        Prepared {
            first,
            json,
            digests,
        }
    }

    /// The cards' mean size in bytes.
    pub fn mean_bytes(&self) -> f64 {
        self.json.iter().map(String::len).sum::<usize>() as f64 / self.json.len().max(1) as f64
    }

    /// All the cards' JSON bytes.
    pub fn total_bytes(&self) -> usize {
        self.json.iter().map(String::len).sum()
    }

    pub fn attach(&self, how: Attach, i: usize, req: &mut RegisterRequest) {
        match how {
            Attach::None => {}
            Attach::Bytes => {
                req.card = Some(Card {
                    kind: CardKind::A2a as i32,
                    json: self.json[i - self.first].clone(),
                })
            }
            Attach::Digest => req.card_digest = self.digests[i - self.first].clone(),
        }
    }
}
