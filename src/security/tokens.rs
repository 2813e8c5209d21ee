//! The tokens file: bearer tokens stored as SHA-256 digests, each with a name, a role and its
//! namespaces; parsed strictly and swapped whole on reload.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use super::policy::{Grant, Namespaces, Role};
use agent_registry_core::domain::normalize_namespace;

/// Why a tokens file was refused; the server keeps the tokens it had.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tokens: Vec<Entry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    role: Role,
    namespaces: Vec<String>,
    /// Hex SHA-256 of the secret; the secret itself is never stored.
    sha256: String,
}

/// The SHA-256 of a presented secret.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Every token of one version of the file, by digest.
#[derive(Debug, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Arc<Grant>>,
}

impl Tokens {
    pub fn parse(path: &Path, text: &str) -> Result<Tokens, TokensError> {
        let invalid = |message: String| TokensError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut by_digest = HashMap::new();
        let mut names = HashSet::new();
        for (n, e) in file.tokens.into_iter().enumerate() {
            let at = |what: &str| invalid(format!("tokens[{n}] ({:?}): {what}", e.name));
            if e.name.is_empty() || e.name.len() > 128 {
                return Err(at("name must be 1 to 128 characters"));
            }
            if !names.insert(e.name.clone()) {
                return Err(at("name is used twice"));
            }
            let digest = unhex(&e.sha256.to_ascii_lowercase())
                .ok_or_else(|| at("sha256 must be 64 hexadecimal digits"))?;
            let namespaces = if e.namespaces.iter().any(|ns| ns == "*") {
                Namespaces::All
            } else if e.namespaces.is_empty() {
                return Err(at("namespaces must name at least one namespace, or \"*\""));
            } else {
                let mut set = BTreeSet::new();
                for ns in &e.namespaces {
                    let ns =
                        normalize_namespace("namespaces", ns).map_err(|v| at(&format!("{v}")))?;
                    set.insert(ns);
                }
                Namespaces::Only(set)
            };
            let grant = Grant {
                name: e.name.clone(),
                role: e.role,
                namespaces,
            };
            if by_digest.insert(digest, Arc::new(grant)).is_some() {
                return Err(at("the same secret is listed twice"));
            }
        }
        Ok(Tokens { by_digest })
    }

    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The grant of a presented secret. Looked up by digest, so no comparison runs over the
    /// secret itself.
    pub fn lookup(&self, secret: &str) -> Option<Arc<Grant>> {
        self.grant(&digest(secret))
    }

    fn grant(&self, digest: &[u8; 32]) -> Option<Arc<Grant>> {
        self.by_digest.get(digest).cloned()
    }
}

/// The tokens in force; replaced whole when the file changes.
#[derive(Clone)]
pub struct TokenTable {
    path: PathBuf,
    current: Arc<RwLock<Arc<Tokens>>>,
    /// Bumped on every reload, so long-lived calls can check their token again.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Ends a long-lived call (a Heartbeat or Watch stream) once the token it was opened with is
/// removed or its grant changes: revoking a token must not leave its streams running.
pub struct Revocation {
    digest: [u8; 32],
    grant: Arc<Grant>,
    table: TokenTable,
    seen: tokio::sync::watch::Receiver<u64>,
}

impl Clone for Revocation {
    fn clone(&self) -> Self {
        Revocation {
            digest: self.digest,
            grant: self.grant.clone(),
            table: self.table.clone(),
            seen: self.seen.clone(),
        }
    }
}

impl Revocation {
    fn valid(&self) -> bool {
        let now = self.table.current().grant(&self.digest);
        now.is_some_and(|g| *g == *self.grant)
    }

    /// Resolves when the token no longer grants what it granted at the start of the call.
    pub async fn revoked(&mut self) {
        loop {
            if self.seen.changed().await.is_err() {
                return std::future::pending().await;
            }
            if !self.valid() {
                return;
            }
        }
    }
}

/// Waits for `r` to be revoked; never resolves without one (an open server).
pub async fn revoked(r: &mut Option<Revocation>) {
    match r {
        Some(r) => r.revoked().await,
        None => std::future::pending().await,
    }
}

impl TokenTable {
    pub fn open(path: &Path) -> Result<TokenTable, TokensError> {
        let tokens = Tokens::load(path)?;
        Ok(TokenTable {
            path: path.to_path_buf(),
            current: Arc::new(RwLock::new(Arc::new(tokens))),
            generation: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn current(&self) -> Arc<Tokens> {
        agent_registry_core::common::read(&self.current).clone()
    }

    /// Reads the file again; a bad file leaves the tokens in force untouched.
    pub fn reload(&self) -> Result<usize, TokensError> {
        let tokens = Tokens::load(&self.path)?;
        let n = tokens.len();
        *agent_registry_core::common::write(&self.current) = Arc::new(tokens);
        self.generation.send_modify(|g| *g += 1);
        Ok(n)
    }

    /// The grant of a presented secret, and the handle that notices its revocation.
    pub fn authenticate(&self, secret: &str) -> Option<(Arc<Grant>, Revocation)> {
        let digest = digest(secret);
        let grant = self.current().grant(&digest)?;
        let revocation = Revocation {
            digest,
            grant: grant.clone(),
            table: self.clone(),
            seen: self.generation.subscribe(),
        };
        Some((grant, revocation))
    }
}

/// A fresh random secret and the file entry that grants it (`agent-registry token`).
pub fn new_token(name: &str, role: Role, namespaces: &[String]) -> (String, String) {
    use base64::Engine;
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let list = namespaces
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let entry = format!(
        "[[tokens]]\nname = {name:?}\nrole = \"{role}\"\nnamespaces = [{list}]\nsha256 = \"{}\"\n",
        hex(&digest(&secret))
    );
    (secret, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Tokens, TokensError> {
        Tokens::parse(Path::new("tokens.toml"), text)
    }

    #[test]
    fn a_generated_entry_parses_and_grants_its_secret() {
        let (secret, entry) = new_token("ci", Role::Reader, &["payments".into()]);
        let tokens = parse(&entry).unwrap();
        let grant = tokens.lookup(&secret).expect("granted");
        assert_eq!(grant.name, "ci");
        assert_eq!(grant.role, Role::Reader);
        assert!(grant.namespaces.contains("payments"));
        assert!(!grant.namespaces.contains("billing"));
        assert!(tokens.lookup("not-the-secret").is_none());
        // The secret is not in the entry, only its digest.
        assert!(!entry.contains(&secret));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let h = hex(&digest("s"));
        let cases = [
            (
                "[[tokens]]\nname = \"a\"\nrole = \"root\"\nnamespaces = [\"*\"]\nsha256 = \"{h}\"",
                "root",
            ),
            (
                "[[tokens]]\nname = \"a\"\nrole = \"agent\"\nnamespaces = []\nsha256 = \"{h}\"",
                "at least one",
            ),
            (
                "[[tokens]]\nname = \"a\"\nrole = \"agent\"\nnamespaces = [\"*\"]\nsha256 = \"abc\"",
                "64 hex",
            ),
            (
                "[[tokens]]\nname = \"a\"\nrole = \"agent\"\nnamespaces = [\"Bad_NS\"]\nsha256 = \"{h}\"",
                "namespaces",
            ),
            (
                "[[tokens]]\nname = \"a\"\nrole = \"agent\"\nnamespaces = [\"*\"]\nsha256 = \"{h}\"\nsecret = \"x\"",
                "unknown field",
            ),
            (
                "[[tokens]]\nname = \"a\"\nrole = \"agent\"\nnamespaces = [\"*\"]\nsha256 = \"{h}\"\n[[tokens]]\nname = \"a\"\nrole = \"agent\"\nnamespaces = [\"*\"]\nsha256 = \"{h}\"",
                "twice",
            ),
        ];
        for (text, why) in cases {
            let text = text.replace("{h}", &h);
            let err = parse(&text).expect_err(why).to_string();
            assert!(err.contains(why), "{err} should mention {why}");
        }
    }
}
