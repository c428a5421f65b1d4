//! Snapshot streams: a copy arrives as chunks on one peer connection at
//! one epoch, and is installed only whole.

use eddy_core::{Epoch, Partition, SnapshotReader};

/// A snapshot stream being received: its chunks come on one peer
/// connection at one epoch. Chunks of another stream (a deposed owner's, or
/// an older one of the same owner still arriving on a connection it gave
/// up) never mix into it: only their first chunk starts a stream of their own.
pub struct Receiving {
    /// The peer connection the stream's first chunk came on.
    link: u64,
    /// The sender's epoch.
    epoch: Epoch,
    reader: SnapshotReader,
}

/// What one chunk of a snapshot stream did.
pub enum Received {
    /// Taken; more chunks to come.
    More,
    /// The stream is complete: the copy it carries (not installed yet).
    Complete(Box<Partition>),
    /// Not a chunk of the stream in progress (another connection or
    /// epoch, or no stream started): refused, the stream untouched.
    Foreign,
    /// The chunk or the stream is damaged or incomplete: the stream is
    /// dropped.
    Broken(String),
}

/// Feeds one chunk that came on peer connection `link` at the sender's
/// `epoch` to the stream in progress, if any; a first chunk starts a new
/// stream with `reader`.
pub(crate) fn receive(
    receiving: &mut Option<Receiving>,
    (link, epoch): (u64, Epoch),
    chunk: &[u8],
    last: bool,
    reader: impl FnOnce() -> SnapshotReader,
) -> Received {
    if eddy_core::chunk_index(chunk) == Some(0) {
        *receiving = Some(Receiving {
            link,
            epoch,
            reader: reader(),
        });
    }
    let Some(stream) = receiving
        .as_mut()
        .filter(|s| s.link == link && s.epoch == epoch)
    else {
        return Received::Foreign;
    };
    if let Err(err) = stream.reader.push(chunk) {
        *receiving = None;
        return Received::Broken(format!("bad snapshot chunk: {err}"));
    }
    if !last {
        return Received::More;
    }
    let Some(stream) = receiving.take() else {
        // Filtered as `Some` above, and nothing took it since.
        return Received::Foreign;
    };
    match stream.reader.finish() {
        Ok(restored) => Received::Complete(Box::new(restored)),
        Err(err) => Received::Broken(format!("incomplete snapshot stream: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{chunks, copy_at, reader};

    fn feed(
        receiving: &mut Option<Receiving>,
        stream: (u64, Epoch),
        chunks: &[Vec<u8>],
        at: usize,
    ) -> Received {
        receive(
            receiving,
            stream,
            &chunks[at],
            at + 1 == chunks.len(),
            reader,
        )
    }

    #[test]
    fn chunks_of_another_connection_or_epoch_never_mix_into_a_stream() {
        let ours = chunks(&copy_at(3));
        let other = chunks(&copy_at(2));
        let mut receiving = None;
        assert!(matches!(
            feed(&mut receiving, (1, Epoch(3)), &ours, 0),
            Received::More
        ));
        // The rest of an older stream, on a connection its owner gave up,
        // and a chunk at another epoch on the stream's own connection.
        assert!(matches!(
            feed(&mut receiving, (7, Epoch(3)), &ours, 1),
            Received::Foreign
        ));
        assert!(matches!(
            feed(&mut receiving, (1, Epoch(2)), &other, 1),
            Received::Foreign
        ));
        for at in 1..ours.len() - 1 {
            assert!(matches!(
                feed(&mut receiving, (1, Epoch(3)), &ours, at),
                Received::More
            ));
        }
        match feed(&mut receiving, (1, Epoch(3)), &ours, ours.len() - 1) {
            Received::Complete(copy) => assert_eq!(copy.epoch(), Epoch(3)),
            _ => panic!("the stream completes"),
        }
    }

    #[test]
    fn a_new_first_chunk_starts_over_and_the_old_streams_rest_is_refused() {
        let first = chunks(&copy_at(3));
        let second = chunks(&copy_at(4));
        let mut receiving = None;
        assert!(matches!(
            feed(&mut receiving, (1, Epoch(3)), &first, 0),
            Received::More
        ));
        assert!(matches!(
            feed(&mut receiving, (2, Epoch(4)), &second, 0),
            Received::More
        ));
        assert!(matches!(
            feed(&mut receiving, (1, Epoch(3)), &first, 1),
            Received::Foreign
        ));
        for at in 1..second.len() - 1 {
            assert!(matches!(
                feed(&mut receiving, (2, Epoch(4)), &second, at),
                Received::More
            ));
        }
        assert!(matches!(
            feed(&mut receiving, (2, Epoch(4)), &second, second.len() - 1),
            Received::Complete(_)
        ));
        // Nothing in progress: a stray chunk is refused, not started.
        assert!(matches!(
            feed(&mut receiving, (1, Epoch(3)), &first, 2),
            Received::Foreign
        ));
    }

    #[test]
    fn a_chunk_out_of_order_breaks_the_stream() {
        let ours = chunks(&copy_at(3));
        let mut receiving = None;
        assert!(matches!(
            feed(&mut receiving, (1, Epoch(3)), &ours, 0),
            Received::More
        ));
        assert!(matches!(
            feed(&mut receiving, (1, Epoch(3)), &ours, 2),
            Received::Broken(_)
        ));
        assert!(matches!(
            feed(&mut receiving, (1, Epoch(3)), &ours, 1),
            Received::Foreign
        ));
    }
}
