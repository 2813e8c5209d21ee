use serde_json::{Value, json};

use super::*;

/// An A2A 1.0 card with every required member and a few optional and unknown ones.
pub fn a2a_v1() -> Value {
    json!({
        "name": "Planner",
        "description": "Plans trips: flights, hotels and trains.",
        "version": "1.4.2",
        "supportedInterfaces": [
            {"url": "https://planner.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": true},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": [
            {"id": "plan-trip", "name": "Plan a trip", "description": "Builds an itinerary.",
             "tags": ["travel", "itinerary"], "examples": ["Plan a week in Lisbon"]},
            {"id": "book-train", "name": "Book a train", "description": "Books rail tickets.",
             "tags": ["travel", "rail"], "inputModes": ["application/json"]}
        ],
        "x-vendor": {"tier": "gold"}
    })
}

fn a2a_v03() -> Value {
    json!({
        "protocolVersion": "0.3.0",
        "name": "Weather",
        "description": "Forecasts.",
        "url": "https://weather.example/a2a",
        "version": "0.9.0",
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "forecast", "name": "Forecast", "description": "Tomorrow's weather.", "tags": ["weather"]}]
    })
}

fn mcp() -> Value {
    json!({
        "$schema": "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json",
        "name": "io.github.example/weather",
        "description": "Weather data and forecasts",
        "version": "1.0.2",
        "remotes": [{"type": "streamable-http", "url": "https://mcp.example/weather"}]
    })
}

fn parse(kind: CardKind, v: &Value) -> Result<Card, ValidationError> {
    Card::parse(kind, v.to_string().as_bytes(), DEFAULT_MAX_CARD_BYTES)
}

/// Removes the member at `path` (dot-separated, `[i]` for array items) from `v`.
fn without(v: &Value, path: &str) -> Value {
    let mut v = v.clone();
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap();
    let mut at = &mut v;
    for part in parts {
        at = match part.split_once('[') {
            Some((name, index)) => {
                let i: usize = index.trim_end_matches(']').parse().unwrap();
                &mut at[name][i]
            }
            None => &mut at[part],
        };
    }
    at.as_object_mut().unwrap().remove(last);
    v
}

#[test]
fn cards_of_each_kind_are_read_and_keep_their_bytes() {
    let bytes = serde_json::to_vec_pretty(&a2a_v1()).unwrap();
    let card = Card::parse(CardKind::A2a, &bytes, DEFAULT_MAX_CARD_BYTES).unwrap();
    assert_eq!(&*card.bytes, &bytes[..], "the exact bytes received");
    assert_eq!(card.summary.schema, "a2a/1.0");
    assert_eq!(card.summary.name(), "Planner");
    assert_eq!(card.summary.skills().len(), 2);
    let rail = card.summary.skills().nth(1).unwrap();
    assert_eq!(rail.input_modes().collect::<Vec<_>>(), ["application/json"]);
    assert!(card.summary.input_modes().any(|m| m == "application/json"));
    assert!(card.summary.tags().any(|t| t == "rail"));
    // Reformatted, the same card: the same digest.
    let compact = parse(CardKind::A2a, &a2a_v1()).unwrap();
    assert_eq!(compact.digest, card.digest);
    assert_ne!(&*compact.bytes, &*card.bytes);

    let old = parse(CardKind::A2a, &a2a_v03()).unwrap();
    assert_eq!(old.summary.schema, "a2a/0.3");
    assert_eq!(old.summary.skills().next().unwrap().id(), "forecast");
    let server = parse(CardKind::Mcp, &mcp()).unwrap();
    assert_eq!(server.summary.schema, "mcp");
    assert_eq!(server.summary.name(), "io.github.example/weather");
    assert_eq!(server.summary.skills().len(), 0);
}

#[test]
fn every_required_member_missing_in_turn_is_named() {
    let cases: [(CardKind, Value, &[&str]); 3] = [
        (
            CardKind::A2a,
            a2a_v1(),
            &[
                "name",
                "description",
                "version",
                "capabilities",
                "supportedInterfaces",
                "supportedInterfaces[0].url",
                "supportedInterfaces[0].protocolBinding",
                "supportedInterfaces[0].protocolVersion",
                "defaultInputModes",
                "defaultOutputModes",
                "skills",
                "skills[1].id",
                "skills[1].name",
                "skills[1].description",
                "skills[1].tags",
            ],
        ),
        (
            CardKind::A2a,
            a2a_v03(),
            &[
                "protocolVersion",
                "name",
                "description",
                "version",
                "capabilities",
                "defaultInputModes",
                "defaultOutputModes",
                "skills",
                "skills[0].id",
                "skills[0].tags",
            ],
        ),
        (CardKind::Mcp, mcp(), &["name", "description", "version"]),
    ];
    for (kind, card, required) in cases {
        assert!(parse(kind, &card).is_ok());
        for path in required {
            let e = parse(kind, &without(&card, path)).unwrap_err();
            assert_eq!(e.field, format!("card.{path}"), "{path}: {e}");
            assert_eq!(e.message, "required", "{path}: {e}");
        }
    }
    // A 0.3 card without its url: still 0.3 (it has protocolVersion), so `url` is named.
    let e = parse(CardKind::A2a, &without(&a2a_v03(), "url")).unwrap_err();
    assert_eq!(e.field, "card.url");
}

#[test]
fn wrong_shapes_and_limits_are_named() {
    let mut v = a2a_v1();
    v["skills"][0]["tags"] = json!("travel");
    assert_eq!(
        parse(CardKind::A2a, &v).unwrap_err().field,
        "card.skills[0].tags"
    );
    let mut v = a2a_v1();
    v["supportedInterfaces"] = json!([]);
    assert_eq!(
        parse(CardKind::A2a, &v).unwrap_err().field,
        "card.supportedInterfaces"
    );
    let mut v = a2a_v1();
    v["skills"][1]["id"] = json!("plan-trip");
    let e = parse(CardKind::A2a, &v).unwrap_err();
    assert_eq!(e.field, "card.skills[1].id");
    assert!(e.message.contains("card.skills[0].id"), "{e}");
    let mut v = a2a_v1();
    let skill = v["skills"][0].clone();
    v["skills"] = Value::Array(
        (0..=MAX_SKILLS)
            .map(|n| {
                let mut s = skill.clone();
                s["id"] = json!(format!("s{n}"));
                s
            })
            .collect(),
    );
    assert_eq!(parse(CardKind::A2a, &v).unwrap_err().field, "card.skills");
    let big = a2a_v1().to_string();
    let e = Card::parse(CardKind::A2a, big.as_bytes(), big.len() - 1).unwrap_err();
    assert_eq!(e.field, "card");
    assert!(e.message.contains("--max-card-size"), "{e}");

    for (name, ok) in [
        ("io.github.user/weather", true),
        ("com.example/my_server-2", true),
        ("weather", false),
        ("a/b/c", false),
        ("io.github.user/", false),
    ] {
        let mut v = mcp();
        v["name"] = json!(name);
        assert_eq!(parse(CardKind::Mcp, &v).is_ok(), ok, "{name}");
    }
    for version in ["^1.2.3", "latest", "1.x", ">=1.0"] {
        let mut v = mcp();
        v["version"] = json!(version);
        assert_eq!(
            parse(CardKind::Mcp, &v).unwrap_err().field,
            "card.version",
            "{version}"
        );
    }
    let mut v = mcp();
    v["description"] = json!("x".repeat(101));
    assert_eq!(
        parse(CardKind::Mcp, &v).unwrap_err().field,
        "card.description"
    );
}

#[test]
fn unknown_members_are_kept_and_part_of_the_digest() {
    let mut v = a2a_v1();
    let plain = parse(CardKind::A2a, &v).unwrap();
    v["x-vendor"]["tier"] = json!("silver");
    let changed = parse(CardKind::A2a, &v).unwrap();
    assert_ne!(plain.digest, changed.digest);
    assert!(String::from_utf8_lossy(&changed.bytes).contains("silver"));
}

/// The summary points into the card's text where a string is spelled plainly and keeps a
/// decoded copy where it has escapes; both read back as the same strings, and a card read
/// back from the store reads exactly as it did when it arrived.
#[test]
fn strings_with_escapes_read_as_their_values_and_stored_cards_read_alike() {
    let mut v = a2a_v1();
    v["name"] = json!("Caf\u{e9} \"planner\"");
    v["skills"][0]["tags"] = json!(["tab\there", "plain"]);
    let text = v
        .to_string()
        .replace("Caf\u{e9}", "Caf\\u00e9")
        .replace("Plans trips", "Plans\\u0020trips");
    let card = Card::parse(CardKind::A2a, text.as_bytes(), DEFAULT_MAX_CARD_BYTES).unwrap();
    let s = &card.summary;
    assert_eq!(s.name(), "Caf\u{e9} \"planner\"");
    assert_eq!(s.description(), "Plans trips: flights, hotels and trains.");
    let first = s.skills().next().unwrap();
    assert_eq!(first.tags().collect::<Vec<_>>(), ["tab\there", "plain"]);
    assert_eq!(
        first.examples().collect::<Vec<_>>(),
        ["Plan a week in Lisbon"]
    );
    assert_eq!(
        s.default_output_modes().collect::<Vec<_>>(),
        ["text/plain", "application/json"]
    );
    let stored = Card::from_stored(
        CardKind::A2a,
        text.clone().into_bytes(),
        card.digest.clone(),
    )
    .unwrap();
    assert_eq!(stored, card);
    assert_eq!(&*stored.bytes, text.as_bytes());
}
