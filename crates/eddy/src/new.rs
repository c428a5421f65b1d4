//! `eddy new <name>`: a crate for a kind of one's own, outside this
//! repository, that builds against the same eddy and the same dependency
//! versions as this `eddy` binary.
//!
//! It writes `Cargo.toml` (eddy-core and eddy-node by path from the checkout
//! this binary was built from), `src/main.rs` (the compiled and tested
//! `examples/new_kind.rs` with the kind renamed) and this workspace's
//! `Cargo.lock`, so cargo resolves every shared dependency to the version
//! eddy is tested with instead of the newest. The manifest also carries the
//! workspace's dev profile, so building with `CARGO_TARGET_DIR` pointing at
//! the checkout's `target/` reuses its compiled dependencies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

/// Options of `eddy new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Name of the crate and of its kind (`a-z`, `0-9`, `_`, `-`; starts
    /// with a letter); `-` becomes `_` in the kind.
    name: String,
    /// Directory to create the crate in.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The eddy checkout to depend on [default: the one this binary was
    /// built from].
    #[arg(long)]
    eddy_path: Option<PathBuf>,
}

const TEMPLATE_MAIN: &str = include_str!("../examples/new_kind.rs");
const WORKSPACE_LOCK: &str = include_str!("../../../Cargo.lock");

/// Runs `eddy new`.
pub fn run(args: NewArgs) -> ExitCode {
    match create(&args) {
        Ok(root) => {
            println!("created {}", root.display());
            println!(
                "  cd {} && cargo test && cargo run -- --http-addr 127.0.0.1:8080",
                root.display()
            );
            println!(
                "  (CARGO_TARGET_DIR={}/target reuses the dependencies that checkout compiled)",
                eddy_path(&args).display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn eddy_path(args: &NewArgs) -> PathBuf {
    args.eddy_path.clone().unwrap_or_else(|| {
        let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        built_from.canonicalize().unwrap_or(built_from)
    })
}

/// Writes the crate; returns its directory.
fn create(args: &NewArgs) -> Result<PathBuf, String> {
    let name = &args.name;
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        return Err(format!(
            "`{name}` is not a crate name: use a-z, 0-9, _ and -, starting with a letter"
        ));
    }
    let eddy = eddy_path(args);
    if !eddy.join("crates/eddy-node/Cargo.toml").is_file() {
        return Err(format!(
            "{} is not an eddy checkout (no crates/eddy-node); pass --eddy-path",
            eddy.display()
        ));
    }
    let root = args.dir.join(name);
    if root.exists() {
        return Err(format!("{} exists already", root.display()));
    }
    let kind = name.replace('-', "_");
    let main = TEMPLATE_MAIN.replace("\"new_kind\"", &format!("\"{kind}\""));
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|err| format!("cannot write {}: {err}", path.display()))
    };
    std::fs::create_dir_all(root.join("src"))
        .map_err(|err| format!("cannot create {}: {err}", root.display()))?;
    write(root.join("Cargo.toml"), &manifest(name, &eddy))?;
    write(root.join("src/main.rs"), &main)?;
    write(root.join("Cargo.lock"), WORKSPACE_LOCK)?;
    write(root.join(".gitignore"), "/target\n")?;
    Ok(root)
}

/// The version of `package` in this workspace's lock file.
fn locked_version(package: &str) -> Option<&'static str> {
    let entry = format!("name = \"{package}\"\nversion = \"");
    let start = WORKSPACE_LOCK.find(&entry)? + entry.len();
    let len = WORKSPACE_LOCK[start..].find('"')?;
    Some(&WORKSPACE_LOCK[start..start + len])
}

fn manifest(name: &str, eddy: &Path) -> String {
    let serde = locked_version("serde").unwrap_or("1");
    let eddy = eddy.display();
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
# The eddy this crate was created from. For another checkout change the
# paths, or use git = "https://…" with rev = "<the commit>".
eddy-core = {{ path = "{eddy}/crates/eddy-core" }}
eddy-node = {{ path = "{eddy}/crates/eddy-node" }}
serde = {{ version = "{serde}", features = ["derive"] }}

# Cargo.lock came from eddy: every dependency shared with eddy stays at the
# version eddy is tested with. Keep it; `cargo update` moves them.

# As in eddy's workspace: dependencies optimised, so tests that push many
# events are fast, and a shared CARGO_TARGET_DIR reuses eddy's builds.
[profile.dev.package."*"]
opt-level = 2

# A workspace of its own, not a member of an enclosing one.
[workspace]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_names_the_kind_once_and_the_lock_has_serde() {
        assert_eq!(TEMPLATE_MAIN.matches("\"new_kind\"").count(), 2);
        let version = locked_version("serde").expect("serde in Cargo.lock");
        assert!(version.starts_with("1."), "{version}");
    }
}
