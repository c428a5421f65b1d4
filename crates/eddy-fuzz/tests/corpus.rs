//! The committed corpus (`fuzz/corpus/`), on stable and without libFuzzer:
//! every seed the encoders make is in `fuzz/corpus/<target>/`
//! (`EDDY_FUZZ_WRITE_SEEDS=1` writes them), and every file there runs
//! through its target without a panic — the inputs of fixed crashes
//! included. CI runs this; the libFuzzer runs are docs/FUZZING.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 9] = [
    ("wire_frame", eddy_fuzz::wire_frame),
    ("peer_message", eddy_fuzz::peer_message),
    ("gossip_datagram", eddy_fuzz::gossip_datagram),
    ("gossip_sealed", eddy_fuzz::gossip_sealed),
    ("control_frame", eddy_fuzz::control_frame),
    ("http_events", eddy_fuzz::http_events),
    ("snapshot_chunks", eddy_fuzz::snapshot_chunks),
    ("wal_records", eddy_fuzz::wal_records),
    ("config", eddy_fuzz::config),
];

fn corpus() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus"))
}

#[test]
fn every_seed_is_committed() {
    let write = std::env::var_os("EDDY_FUZZ_WRITE_SEEDS").is_some();
    for (target, name, bytes) in eddy_fuzz::seeds::seeds() {
        let path = corpus().join(target).join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|err| {
            panic!(
                "{}: {err} (EDDY_FUZZ_WRITE_SEEDS=1 writes it)",
                path.display()
            )
        });
        assert_eq!(
            committed,
            bytes,
            "{} is stale (EDDY_FUZZ_WRITE_SEEDS=1)",
            path.display()
        );
    }
}

#[test]
fn every_corpus_file_passes_its_target() {
    for (target, run) in TARGETS {
        let dir = corpus().join(target);
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            files += 1;
        }
        assert!(files > 0, "{} has no seeds", dir.display());
    }
}
