//! `config`: a node's configuration file and `--set` overrides
//! (`eddy_node::NodeConfig::load_text`).

use eddy_node::NodeConfig;

/// The input up to its first NUL is the file's text; each line after it is
/// a `--set key=value` override. Not UTF-8: skipped (the node reads the
/// file as a string and refuses it before parsing).
pub fn config(data: &[u8]) {
    let (file, overrides) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(text), Ok(overrides)) = (std::str::from_utf8(file), std::str::from_utf8(overrides))
    else {
        return;
    };
    let overrides: Vec<String> = overrides.lines().map(str::to_owned).collect();
    if let Ok((config, _)) = NodeConfig::load_text(Some(("node.toml", text)), [], &overrides) {
        assert!(config.partitions > 0 && config.replication_factor > 0);
    }
}
