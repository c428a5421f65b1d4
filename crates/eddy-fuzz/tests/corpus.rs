//! The committed corpus (`fuzz/corpus/`), on stable and without libFuzzer:
//! every seed the encoders make is in `fuzz/corpus/<target>/`
//! (`EDDY_FUZZ_WRITE_SEEDS=1` writes them), and every file there runs
//! through its target without a panic — the inputs of fixed crashes
//! included; and a short seeded mutation fuzz of that corpus per target.
//! CI runs this; the libFuzzer runs are docs/FUZZING.md.

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

/// Mutations per target in [`every_target_survives_mutations_of_its_corpus`]
/// (`EDDY_FUZZ_MUTATIONS` overrides): a short fuzz run per target on
/// stable, in every CI run, where a libFuzzer build does not fit.
const MUTATIONS_PER_TARGET: usize = 20_000;

/// A seeded xorshift generator: the same inputs on every run, so a
/// failure here reproduces from the seed in its message.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four libFuzzer-style mutations of `input`: bit flips, boundary
/// bytes, inserted, erased and repeated runs, truncation, and splices with
/// another input of the same target.
fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)];
            }
            2 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            3 if !out.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(64)).min(out.len());
                let run = out[start..end].to_vec();
                out.splice(at..at, run);
            }
            5 => out.truncate(at),
            _ => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}

#[test]
fn every_target_survives_mutations_of_its_corpus() {
    let per_target = std::env::var("EDDY_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MUTATIONS_PER_TARGET);
    for (index, (target, run)) in TARGETS.into_iter().enumerate() {
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(corpus().join(target))
            .unwrap()
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
            .collect();
        inputs.sort();
        for i in 0..per_target {
            let seed = 0x9E37_79B9_7F4A_7C15 ^ ((index as u64) << 32 | i as u64);
            let mut rng = Rng(seed);
            let input = &inputs[rng.below(inputs.len())];
            let mutated = mutate(&mut rng, input, &inputs);
            let outcome = std::panic::catch_unwind(|| run(&mutated));
            assert!(
                outcome.is_ok(),
                "{target} panicked on a mutation (seed {seed:#x}); input: {mutated:?}"
            );
        }
    }
}
