//! The backup file's reader: what the writer wrote reads back event for event, and a file
//! cut short anywhere, or with any one byte changed, is refused, never half-read as whole.

use openguild_store::StoredEvent;
use openguild_store::backup::{BackupError, FORMAT, Keys, Manifest, Reader, Writer};
use proptest::prelude::*;

use crate::support::Chain;

fn stored(n: usize) -> Vec<StoredEvent> {
    let mut chains = [Chain::new(1), Chain::new(2)];
    (0..n)
        .map(|i| {
            let e = chains[i % 2].next(1).remove(0);
            StoredEvent { position: i as u64 + 1, event: e.event, raw: e.raw }
        })
        .collect()
}

fn manifest(head: u64) -> Manifest {
    Manifest { format: FORMAT, hub: "hub.test".into(), created_ms: 1, since: 0, head }
}

fn written(events: &[StoredEvent]) -> Vec<u8> {
    let keys = Keys { peers: vec![("peer.test".into(), "{}".into())], ..Keys::default() };
    let mut writer = Writer::new(Vec::new(), &manifest(events.len() as u64), &keys).unwrap();
    for e in events {
        writer.event(e).unwrap();
    }
    writer.finish().unwrap().0
}

/// Every event of `bytes`, or why the file is refused.
fn read(bytes: &[u8]) -> Result<Vec<openguild_store::backup::Event>, BackupError> {
    let (mut reader, _, _) = Reader::open(bytes)?;
    let mut events = Vec::new();
    while let Some(e) = reader.next_event()? {
        events.push(e);
    }
    Ok(events)
}

#[test]
fn a_backup_reads_back_byte_for_byte() {
    let events = stored(7);
    let bytes = written(&events);
    let (_, m, keys) = Reader::open(&bytes[..]).unwrap();
    assert_eq!(m, manifest(7));
    assert_eq!(keys.peers, vec![("peer.test".to_owned(), "{}".to_owned())]);
    let back = read(&bytes).unwrap();
    assert_eq!(back.len(), 7);
    for (b, e) in back.iter().zip(&events) {
        assert_eq!(b.position, e.position);
        assert_eq!(b.raw().unwrap(), e.raw, "the bytes as stored");
    }
}

#[test]
fn a_cut_names_the_last_position_read_and_another_file_is_not_a_backup() {
    let bytes = written(&stored(5));
    // Without its end record: all five events read, and then the cut.
    let err = read(&bytes[..bytes.len() - 10]).unwrap_err();
    assert!(matches!(err, BackupError::Truncated { after: 5, .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("cut short") && message.contains("after the event at position 5"), "{message}");
    assert!(matches!(read(b"SQLite format 3\0"), Err(BackupError::NotABackup)));
    assert!(matches!(read(b""), Err(BackupError::NotABackup)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_cut_is_refused(cut in 0usize..10_000) {
        let bytes = written(&stored(4));
        let cut = cut % bytes.len();
        prop_assert!(read(&bytes[..cut]).is_err(), "a file cut at byte {cut} of {} read as whole", bytes.len());
    }

    #[test]
    fn any_changed_byte_is_refused(at in 0usize..10_000, flip in 1u8..=255) {
        let mut bytes = written(&stored(4));
        let at = at % bytes.len();
        bytes[at] ^= flip;
        prop_assert!(read(&bytes).is_err(), "byte {at} changed and the file still read as whole");
    }

    #[test]
    fn any_bytes_are_refused_or_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut input = b"OGBACKUP".to_vec();
        input.extend(bytes);
        let _ = read(&input);
    }
}
