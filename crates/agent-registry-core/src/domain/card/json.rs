//! A card's JSON read strictly — one object, no duplicate member names, no number a double
//! cannot hold exactly — and its digest: `sha256:<hex>` of its RFC 8785 (JCS) canonical form,
//! so formatting alone never makes a new version.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use super::super::validate::ValidationError;

/// The largest integer every JSON implementation reads exactly (2^53 − 1): RFC 8785 formats
/// numbers as doubles, so a larger one would not survive canonicalization unchanged.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Parses `bytes` as one JSON object, refusing what canonicalization could not keep: a member
/// name given twice, an integer beyond ±(2^53 − 1). Errors name the JSON path under `root`.
pub fn parse_object(root: &str, bytes: &[u8]) -> Result<Map<String, Value>, ValidationError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict { at: At::Root(root) }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| syntax(root, e))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ValidationError {
            field: root.into(),
            message: "must be a JSON object".into(),
        }),
    }
}

/// A parse error: the path it carries (our checks) or the position serde_json reports.
fn syntax(root: &str, e: serde_json::Error) -> ValidationError {
    let text = e.to_string();
    // Our own checks travel as custom errors "PATH\u{0}message at line … column …".
    if let Some((path, rest)) = text.split_once('\u{0}') {
        let message = rest.split(" at line ").next().unwrap_or(rest);
        return ValidationError {
            field: path.into(),
            message: message.into(),
        };
    }
    ValidationError {
        field: root.into(),
        message: format!("is not valid JSON: {text}"),
    }
}

/// `sha256:<hex>` of the value's RFC 8785 canonical form.
pub fn digest(value: &Map<String, Value>) -> String {
    let canonical =
        serde_json_canonicalizer::to_vec(value).expect("a parsed JSON value always canonicalizes");
    let hash = Sha256::digest(&canonical);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Whether `s` has the form of a digest this registry hands out.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Where a value sits: a chain of member names and indexes back to the root, spelled out as
/// a path only when something there is refused (a card has hundreds of values).
#[derive(Clone, Copy)]
enum At<'p> {
    Root(&'p str),
    Member(&'p At<'p>, &'p str),
    Item(&'p At<'p>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            At::Root(root) => f.write_str(root),
            At::Member(parent, name) => write!(f, "{parent}.{name}"),
            At::Item(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Deserializes a `Value` while tracking the JSON path, refusing duplicate member names and
/// integers a double cannot hold.
struct Strict<'p> {
    at: At<'p>,
}

fn refuse<E: de::Error>(at: &At, message: &str) -> E {
    E::custom(format!("{at}\u{0}{message}"))
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(refuse(
                &self.at,
                "integers beyond ±(2^53 − 1) cannot be canonicalized exactly (RFC 8785)",
            ));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(refuse(
                &self.at,
                "integers beyond ±(2^53 − 1) cannot be canonicalized exactly (RFC 8785)",
            ));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| refuse(&self.at, "is not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            at: At::Item(&self.at, out.len()),
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(refuse(&At::Member(&self.at, &key), "is given twice"));
            }
            let value = map.next_value_seed(Strict {
                at: At::Member(&self.at, &key),
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_alone_never_changes_the_digest() {
        let a = parse_object(
            "card",
            br#"{"b": 1, "a": [1.0, "x"], "c": {"z": null, "y": true}}"#,
        )
        .unwrap();
        let b = parse_object(
            "card",
            b"{\"c\":{\"y\":true,\"z\":null},\"a\":[1,\"x\"],\"b\":1.0}",
        )
        .unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert!(is_digest(&digest(&a)));
        let c = parse_object(
            "card",
            br#"{"b": 2, "a": [1, "x"], "c": {"z": null, "y": true}}"#,
        )
        .unwrap();
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    fn what_canonicalization_cannot_keep_is_refused_by_path() {
        let dup = parse_object("card", br#"{"skills": [{"id": "a", "id": "b"}]}"#).unwrap_err();
        assert_eq!(dup.field, "card.skills[0].id");
        assert!(dup.message.contains("twice"), "{dup}");
        let big = parse_object("card", br#"{"n": 9007199254740993}"#).unwrap_err();
        assert_eq!(big.field, "card.n");
        let not_object = parse_object("card", b"[1, 2]").unwrap_err();
        assert_eq!(not_object.field, "card");
        let broken = parse_object("card", b"{\"a\": ").unwrap_err();
        assert_eq!(broken.field, "card");
        assert!(broken.message.contains("not valid JSON"), "{broken}");
        let trailing = parse_object("card", b"{} {}").unwrap_err();
        assert_eq!(trailing.field, "card");
        assert!(
            parse_object("card", &[b'{', 0xff, b'}']).is_err(),
            "not UTF-8"
        );
    }

    /// RFC 8785's own example (appendix: numbers and escapes), canonicalized here and hashed.
    #[test]
    fn the_canonical_form_follows_rfc_8785() {
        let v = parse_object(
            "card",
            br#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                 "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                 "literals": [null, true, false]}"#,
        )
        .unwrap();
        let canonical = String::from_utf8(serde_json_canonicalizer::to_vec(&v).unwrap()).unwrap();
        assert_eq!(
            canonical,
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }
}
