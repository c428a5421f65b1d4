//! Copies and logs for the unit tests: one kind, `sum`, whose keys add up
//! the numbers they are sent.

use std::sync::Arc;

use eddy_core::{
    Behaviour, Ctx, EventRef, Outputs, Partition, PartitionId, Registry, SnapshotReader, Timestamp,
    encode_event,
};

/// Adds its events up.
pub struct Sum;

impl Behaviour for Sum {
    const KIND: &'static str = "sum";
    type Event = u32;
    type State = u64;
    type Alert = ();

    fn on_event(state: &mut u64, event: u32, _ctx: &mut Ctx<'_, Self>) {
        *state += u64::from(event);
    }
}

pub fn registry() -> Arc<Registry> {
    #[allow(clippy::expect_used)]
    Arc::new(Registry::builder().kind::<Sum>().build().expect("one kind"))
}

/// An empty copy of partition 7 at `epoch`.
pub fn copy_at(epoch: u64) -> Partition {
    let mut copy = Partition::new(registry(), PartitionId(7), Default::default());
    copy.set_epoch(eddy_core::Epoch(epoch));
    copy
}

/// Logs `events` events on `owner` (key `k{n % 3}`, value `n`); their
/// entries, back to back.
pub fn append(owner: &mut Partition, events: u32) -> Vec<u8> {
    let mut out = Outputs::default();
    for _ in 0..events {
        let n = owner.last_seq().0 as u32;
        let mut payload = Vec::new();
        #[allow(clippy::expect_used)]
        encode_event::<Sum>(&n, &mut payload).expect("encodes");
        let key = format!("k{}", n % 3);
        let event = EventRef {
            kind: eddy_core::KindId(0),
            key: &key,
            payload: &payload,
            producer: None,
        };
        #[allow(clippy::expect_used)]
        owner
            .submit(Timestamp(1_000 + u64::from(n)), event, &mut out)
            .expect("applies");
    }
    out.log.as_bytes().to_vec()
}

/// An owner at `epoch` with `events` entries, and each entry's bytes.
pub fn owner(epoch: u64, events: u32) -> (Partition, Vec<Vec<u8>>) {
    let mut owner = copy_at(epoch);
    let batches = (0..events).map(|_| append(&mut owner, 1)).collect();
    (owner, batches)
}

/// A copy at `epoch` holding `events` entries of that epoch.
pub fn with_entries(epoch: u64, events: u32) -> Partition {
    owner(epoch, events).0
}

/// A snapshot of `copy` cut into one chunk per record (header, lineage,
/// stores, end): several chunks, so streams can be interleaved.
pub fn chunks(copy: &Partition) -> Vec<Vec<u8>> {
    #[allow(clippy::expect_used)]
    let chunks = copy.snapshot_chunks(1).expect("encodes");
    assert!(chunks.len() >= 3, "several chunks");
    chunks
}

pub fn reader() -> SnapshotReader {
    SnapshotReader::new(registry(), Default::default())
}
