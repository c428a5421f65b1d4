//! API tokens and their roles: who may read, write or administer a node.
//!
//! Tokens live in their own file (`tokens_file`), one per line as
//! `role:name:secret`, so the secrets stay out of the main config, out of
//! `--set` flags (visible in `ps`) and out of logs: only a token's *name*
//! is ever logged or echoed. Roles are ordered, `admin` ⊇ `write` ⊇
//! `read`. With no tokens configured a node serves anyone, as before
//! tokens existed; [`crate::config`] allows that only on loopback or with
//! `insecure = true`.
//!
//! A presented secret is compared with every configured one in constant
//! time (`subtle`), and the loop does not stop at a match, so the answer's
//! timing says nothing about how much of a secret was guessed right or
//! which line matched. Lengths may differ in time, which reveals at most
//! a secret's length (and [`MIN_SECRET_BYTES`] keeps every one long).
//!
//! Sans-io: [`Tokens::parse`] takes the file's text; the HTTP middleware
//! ([`crate::http_auth`]) and the binary protocol ([`crate::tcp_ingress`])
//! ask [`Tokens::authenticate`]. A [`TokenStore`] holds the tokens in
//! force and swaps in the file's new contents when the node is told to
//! read it again (SIGHUP), so tokens rotate without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use subtle::ConstantTimeEq;
use thiserror::Error;

/// Shortest secret accepted: 16 bytes (e.g. 32 hex digits from
/// `openssl rand -hex 16`) cannot be guessed over the network.
pub const MIN_SECRET_BYTES: usize = 16;

/// Most tokens in one file: each request compares against all of them
/// (about 1 µs per token in a debug build, 3 µs for three tokens).
pub const MAX_TOKENS: usize = 256;

/// What a token may do. Ordered: a higher role may do all a lower one may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// GETs, alert streams, metrics, state reads, the routing table.
    Read = 1,
    /// Read, and submit events.
    Write = 2,
    /// Write, and `/v1/admin/*` (leave, forget-down, faults).
    Admin = 3,
}

impl Role {
    /// The role's name as written in the tokens file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role whose number (`role as u8`, kept in an atomic) is `level`.
    pub fn from_level(level: u8) -> Option<Role> {
        match level {
            1 => Some(Role::Read),
            2 => Some(Role::Write),
            3 => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a presented secret turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (safe to log).
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// One configured token.
struct Token {
    name: String,
    role: Role,
    secret: Vec<u8>,
}

/// The tokens file could not be used; the node does not start.
#[derive(Debug, Error)]
pub enum TokensError {
    /// The file could not be read.
    #[error("tokens_file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a valid token. The message names the line, never the
    /// secret.
    #[error("tokens_file {path} line {line}: {problem}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The file holds no token: a node with an empty file would lock
    /// everyone out (or, worse, be taken for one without tokens).
    #[error("tokens_file {0}: no tokens (lines are role:name:secret)")]
    Empty(String),
    /// More than [`MAX_TOKENS`].
    #[error("tokens_file {path} line {line}: more than {MAX_TOKENS} tokens")]
    TooMany {
        /// The file.
        path: String,
        /// The line of the first token beyond the limit.
        line: usize,
    },
}

/// The configured tokens. Its `Debug` shows names and roles only.
pub struct Tokens {
    tokens: Vec<Token>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.tokens.iter().map(|t| (t.role, &t.name)))
            .finish()
    }
}

impl Tokens {
    /// Reads and parses a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: shown.clone(),
            source,
        })?;
        Tokens::parse(&text, &shown)
    }

    /// Parses a tokens file's text: `role:name:secret` per line; blank
    /// lines and lines starting with `#` are skipped. Names and secrets are
    /// unique; secrets are at least [`MIN_SECRET_BYTES`] long.
    pub fn parse(text: &str, path: &str) -> Result<Tokens, TokensError> {
        let mut tokens: Vec<Token> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |problem: String| TokensError::Line {
                path: path.to_owned(),
                line: index + 1,
                problem,
            };
            let mut parts = line.splitn(3, ':');
            let (Some(role), Some(name), Some(secret)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected role:name:secret".into()));
            };
            let role = Role::parse(role.trim()).ok_or_else(|| {
                bad(format!(
                    "role `{}` is not read, write or admin",
                    role.trim()
                ))
            })?;
            let name = name.trim();
            if name.is_empty() {
                return Err(bad("the token needs a name (role:name:secret)".into()));
            }
            let secret = secret.trim().as_bytes();
            if secret.len() < MIN_SECRET_BYTES {
                return Err(bad(format!(
                    "the secret of `{name}` is shorter than {MIN_SECRET_BYTES} bytes (try `openssl rand -hex 16`)"
                )));
            }
            if tokens.iter().any(|t| t.name == name) {
                return Err(bad(format!("a second token named `{name}`")));
            }
            if tokens.iter().any(|t| bool::from(t.secret.ct_eq(secret))) {
                return Err(bad(format!(
                    "the secret of `{name}` is also another token's"
                )));
            }
            // Checked before the push, so the duplicate checks above stay
            // bounded however long the file is.
            if tokens.len() == MAX_TOKENS {
                return Err(TokensError::TooMany {
                    path: path.to_owned(),
                    line: index + 1,
                });
            }
            tokens.push(Token {
                name: name.to_owned(),
                role,
                secret: secret.to_vec(),
            });
        }
        if tokens.is_empty() {
            return Err(TokensError::Empty(path.to_owned()));
        }
        Ok(Tokens { tokens })
    }

    /// The token whose secret is `presented`, if any. Compares with every
    /// token in constant time and without stopping at a match.
    pub fn authenticate(&self, presented: &[u8]) -> Option<Caller> {
        let mut found: Option<&Token> = None;
        for token in &self.tokens {
            let equal = bool::from(token.secret.ct_eq(presented));
            // Secrets are unique (checked at parse), so at most one matches;
            // `found` is set without branching on earlier results.
            found = if equal { Some(token) } else { found };
        }
        found.map(|token| Caller {
            name: token.name.clone(),
            role: token.role,
        })
    }

    /// How many tokens of each role, for the start log line.
    pub fn summary(&self) -> String {
        let count = |role| self.tokens.iter().filter(|t| t.role == role).count();
        format!(
            "{} admin, {} write, {} read",
            count(Role::Admin),
            count(Role::Write),
            count(Role::Read)
        )
    }
}

/// Why a caller is not served: the two cases HTTP tells apart (401/403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one the node does not know.
    Unauthenticated {
        /// The role the request needs.
        needs: Role,
        /// Whether a token was presented (and is unknown).
        presented: bool,
    },
    /// A known token whose role is too low.
    Forbidden {
        /// The role the request needs.
        needs: Role,
        /// The token's name.
        name: String,
        /// Its role.
        has: Role,
    },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Unauthenticated {
                needs,
                presented: false,
            } => write!(
                f,
                "this node requires an API token with role `{needs}`; send `Authorization: Bearer <token>` (eddy: --token or EDDY_TOKEN)"
            ),
            Denied::Unauthenticated {
                needs,
                presented: true,
            } => write!(
                f,
                "unknown API token; this request needs a token with role `{needs}`"
            ),
            Denied::Forbidden { needs, name, has } => write!(
                f,
                "token `{name}` has role `{has}`; this request needs role `{needs}`"
            ),
        }
    }
}

/// The tokens in force, and the file they came from. [`TokenStore::reload`]
/// swaps in the file's current contents; a file that does not load leaves
/// the tokens in force untouched (a typo never locks everyone out).
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    /// (generation, tokens): the generation rises with every reload, so a
    /// binary-protocol connection knows to check its token again.
    current: RwLock<(u64, Arc<Tokens>)>,
}

impl TokenStore {
    /// Loads the tokens file.
    pub fn load(path: &Path) -> Result<TokenStore, TokensError> {
        Ok(TokenStore::new(path, Tokens::load(path)?))
    }

    /// A store of `tokens`, read from `path`.
    pub fn new(path: &Path, tokens: Tokens) -> TokenStore {
        TokenStore {
            path: path.to_owned(),
            current: RwLock::new((0, Arc::new(tokens))),
        }
    }

    /// The tokens in force and their generation.
    pub fn current(&self) -> (u64, Arc<Tokens>) {
        // A poisoned lock means a reload panicked between two plain
        // assignments; the pair is still whole.
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        (current.0, current.1.clone())
    }

    /// Reads the file again and puts its tokens in force.
    pub fn reload(&self) -> Result<Arc<Tokens>, TokensError> {
        let tokens = Arc::new(Tokens::load(&self.path)?);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = (current.0 + 1, tokens.clone());
        Ok(tokens)
    }

    /// The file the tokens come from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The decision for a request needing `needs`, given the node's tokens
/// (`None`: the node has none and serves anyone) and the presented secret.
pub fn authorize(
    tokens: Option<&Tokens>,
    presented: Option<&[u8]>,
    needs: Role,
) -> Result<Option<Caller>, Denied> {
    let Some(tokens) = tokens else {
        return Ok(None);
    };
    let Some(presented) = presented else {
        return Err(Denied::Unauthenticated {
            needs,
            presented: false,
        });
    };
    match tokens.authenticate(presented) {
        None => Err(Denied::Unauthenticated {
            needs,
            presented: true,
        }),
        Some(caller) if caller.role < needs => Err(Denied::Forbidden {
            needs,
            name: caller.name,
            has: caller.role,
        }),
        Some(caller) => Ok(Some(caller)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# role:name:secret\n\nadmin:ops:aaaaaaaaaaaaaaaaaaaa\nwrite:ingest:wwwwwwwwwwwwwwwwwwww\nread:grafana:rrrrrrrrrrrrrrrrrrrr\n";

    #[test]
    fn roles_are_ordered_and_checked() {
        let tokens = Tokens::parse(FILE, "t").expect("valid");
        let ask = |secret: Option<&str>, needs| {
            authorize(Some(&tokens), secret.map(str::as_bytes), needs)
        };
        assert_eq!(
            ask(Some("wwwwwwwwwwwwwwwwwwww"), Role::Write).map(|c| c.map(|c| c.name)),
            Ok(Some("ingest".to_owned()))
        );
        assert!(ask(Some("aaaaaaaaaaaaaaaaaaaa"), Role::Admin).is_ok());
        assert!(ask(Some("aaaaaaaaaaaaaaaaaaaa"), Role::Read).is_ok());
        assert_eq!(
            ask(Some("rrrrrrrrrrrrrrrrrrrr"), Role::Write),
            Err(Denied::Forbidden {
                needs: Role::Write,
                name: "grafana".into(),
                has: Role::Read
            })
        );
        assert!(matches!(
            ask(Some("wwwwwwwwwwwwwwwwwwww"), Role::Admin),
            Err(Denied::Forbidden { .. })
        ));
        assert!(matches!(
            ask(None, Role::Read),
            Err(Denied::Unauthenticated {
                presented: false,
                ..
            })
        ));
        // A prefix, a longer string and an empty one are all unknown.
        for wrong in ["wwwwwwwwwwwwwwwwwww", "wwwwwwwwwwwwwwwwwwwww", ""] {
            assert!(
                matches!(
                    ask(Some(wrong), Role::Read),
                    Err(Denied::Unauthenticated {
                        presented: true,
                        ..
                    })
                ),
                "{wrong}"
            );
        }
        assert_eq!(
            authorize(None, None, Role::Admin),
            Ok(None),
            "no tokens: open"
        );
    }

    #[test]
    fn bad_files_name_the_line_and_never_the_secret() {
        let cases = [
            ("admin:ops", "role:name:secret"),
            ("root:ops:aaaaaaaaaaaaaaaaaaaa", "`root`"),
            ("read::aaaaaaaaaaaaaaaaaaaa", "name"),
            ("read:short:abc", "shorter than 16"),
            (
                "read:a:aaaaaaaaaaaaaaaaaaaa\nwrite:a:bbbbbbbbbbbbbbbbbbbb",
                "second token named `a`",
            ),
            (
                "read:a:aaaaaaaaaaaaaaaaaaaa\nwrite:b:aaaaaaaaaaaaaaaaaaaa",
                "also another token's",
            ),
        ];
        for (text, expected) in cases {
            let err = Tokens::parse(text, "t.tokens").expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("t.tokens line"), "{err}");
            assert!(!err.contains("aaaaaaaaaaaaaaaa"), "secret in `{err}`");
        }
        assert!(matches!(
            Tokens::parse("# only a comment\n", "t"),
            Err(TokensError::Empty(_))
        ));
        let many: String = (0..=MAX_TOKENS)
            .map(|i| format!("read:t{i}:secret-number-{i:08}\n"))
            .collect();
        assert!(matches!(
            Tokens::parse(&many, "t"),
            Err(TokensError::TooMany { line, .. }) if line == MAX_TOKENS + 1
        ));
        assert!(Tokens::parse(&many[..many.rfind("read:").unwrap_or(0)], "t").is_ok());
        let tokens = Tokens::parse(FILE, "t").expect("valid");
        let shown = format!("{tokens:?} {}", tokens.summary());
        assert!(!shown.contains("aaaa"), "{shown}");
        assert!(
            shown.contains("ops") && shown.contains("1 admin"),
            "{shown}"
        );
    }

    #[test]
    fn a_secret_may_contain_colons() {
        let tokens = Tokens::parse("write:ci:abc:def:ghi:jkl:mnop:qr", "t").expect("valid");
        assert!(tokens.authenticate(b"abc:def:ghi:jkl:mnop:qr").is_some());
    }

    #[test]
    fn a_reload_swaps_the_tokens_and_a_broken_file_keeps_the_old_ones() {
        let dir = std::env::temp_dir().join(format!("eddy-token-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, FILE).unwrap();
        let store = TokenStore::load(&path).unwrap();
        let (generation, tokens) = store.current();
        assert!(tokens.authenticate(b"aaaaaaaaaaaaaaaaaaaa").is_some());
        std::fs::write(&path, "write:new:nnnnnnnnnnnnnnnnnnnn\n").unwrap();
        store.reload().unwrap();
        let (after, tokens) = store.current();
        assert!(after > generation);
        assert!(tokens.authenticate(b"aaaaaaaaaaaaaaaaaaaa").is_none());
        assert!(tokens.authenticate(b"nnnnnnnnnnnnnnnnnnnn").is_some());
        std::fs::write(&path, "write:short:abc\n").unwrap();
        assert!(store.reload().is_err());
        let (kept, tokens) = store.current();
        assert_eq!(kept, after);
        assert!(tokens.authenticate(b"nnnnnnnnnnnnnnnnnnnn").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
