//! The backup file: a hub's event log exactly as stored, for `openguild backup` and
//! `openguild restore` (docs/OPERATIONS.md, "Back up and restore").
//!
//! Layout: the magic `OGBACKUP`, then frames, each a big-endian `u32` length and one
//! MessagePack [`Frame`]: the [`Manifest`], the [`Keys`], one frame per event in position
//! order, and the [`End`], which counts the events and carries a BLAKE3 hash of every byte
//! before it. Events keep their stored bytes (core, body or none once erased, signatures),
//! so a restored log is byte-identical. The reader refuses a damaged or cut-short file and
//! names the last good position; what an event's bytes say is checked by the restore
//! ([`crate::verify::Chains`] and the signature check).

use std::io::{self, Read, Write};

use openguild_domain::EventId;
use openguild_domain::event::RawEvent;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::StoredEvent;

pub const MAGIC: &[u8; 8] = b"OGBACKUP";
/// The format this build writes and reads.
pub const FORMAT: u32 = 1;
/// No frame is larger: a length beyond it is damage, not an allocation to attempt.
const MAX_FRAME: u32 = 64 * 1024 * 1024;

/// What the backup is of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The hub's server name.
    pub hub: String,
    /// When it was taken, ms since the epoch.
    pub created_ms: u64,
    /// Events after this position are in it (0: all of them).
    pub since: u64,
    /// The store's head when it was taken: the last position in it.
    pub head: u64,
}

/// What verifying the events needs, and the hub's own key when it was not left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// The hub's own public keys, current and retired.
    pub own: Vec<OwnKey>,
    /// Peers' key documents as this hub kept them (JSON), by server name.
    pub peers: Vec<(String, String)>,
    /// The hub's secret key files, sealed with a passphrase (opaque here).
    pub sealed: Option<ByteBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnKey {
    pub key_id: String,
    pub public_key: ByteBuf,
    pub valid_from_ms: u64,
    pub valid_until_ms: Option<u64>,
}

/// One stored event, as its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub position: u64,
    pub id: String,
    pub core: ByteBuf,
    pub body: Option<ByteBuf>,
    pub signatures: ByteBuf,
}

impl Event {
    pub fn raw(&self) -> Result<RawEvent, String> {
        let id: EventId = self.id.parse().map_err(|e| format!("its id {:?} is not an event id: {e}", self.id))?;
        Ok(RawEvent {
            id,
            core: self.core.to_vec(),
            body: self.body.as_ref().map(|b| b.to_vec()),
            signatures: self.signatures.to_vec(),
        })
    }
}

/// The last frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub events: u64,
    pub hash: ByteBuf,
}

#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    Manifest(Manifest),
    Keys(Keys),
    Event(Event),
    End(End),
}

/// Why a backup file is refused.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("this is not an OpenGuild backup (it does not start with OGBACKUP)")]
    NotABackup,
    #[error(
        "the backup is of format {0}; this build reads format {FORMAT}: restore it with the version that wrote it, or a newer one"
    )]
    Format(u32),
    #[error("the backup is damaged at byte {offset}, after the event at position {after}: {reason}")]
    Damaged { offset: u64, after: u64, reason: String },
    #[error("the backup is cut short at byte {offset}, after the event at position {after}; it has no end record")]
    Truncated { offset: u64, after: u64 },
}

/// Writes a backup: [`Writer::new`], then each event in position order, then
/// [`Writer::finish`].
pub struct Writer<W: Write> {
    out: W,
    hash: blake3::Hasher,
    events: u64,
    last: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, manifest: &Manifest, keys: &Keys) -> io::Result<Self> {
        let mut writer = Self { out, hash: blake3::Hasher::new(), events: 0, last: manifest.since };
        writer.put(MAGIC)?;
        writer.frame(&Frame::Manifest(manifest.clone()))?;
        writer.frame(&Frame::Keys(keys.clone()))?;
        Ok(writer)
    }

    pub fn event(&mut self, e: &StoredEvent) -> io::Result<()> {
        debug_assert!(e.position > self.last, "events are written in position order");
        let event = Event {
            position: e.position,
            id: e.raw.id.to_string(),
            core: ByteBuf::from(e.raw.core.clone()),
            body: e.raw.body.clone().map(ByteBuf::from),
            signatures: ByteBuf::from(e.raw.signatures.clone()),
        };
        self.frame(&Frame::Event(event))?;
        self.events += 1;
        self.last = e.position;
        Ok(())
    }

    /// Writes the end record and flushes: the count and the hash.
    pub fn finish(mut self) -> io::Result<(W, End)> {
        let end = End { events: self.events, hash: ByteBuf::from(self.hash.finalize().as_bytes().to_vec()) };
        let bytes = rmp_serde::to_vec(&Frame::End(end.clone())).map_err(io::Error::other)?;
        self.out.write_all(&(bytes.len() as u32).to_be_bytes())?;
        self.out.write_all(&bytes)?;
        self.out.flush()?;
        Ok((self.out, end))
    }

    fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        let bytes = rmp_serde::to_vec(frame).map_err(io::Error::other)?;
        let len = u32::try_from(bytes.len()).ok().filter(|l| *l <= MAX_FRAME).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {} bytes is too large", bytes.len()))
        })?;
        self.put(&len.to_be_bytes())?;
        self.put(&bytes)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }
}

/// Reads a backup frame by frame, checking its order, count and hash as it goes.
pub struct Reader<R: Read> {
    input: R,
    hash: blake3::Hasher,
    offset: u64,
    last: u64,
    events: u64,
    ended: bool,
}

impl<R: Read> Reader<R> {
    /// Opens a backup: the reader, positioned at its first event, its manifest and keys.
    pub fn open(mut input: R) -> Result<(Self, Manifest, Keys), BackupError> {
        let mut magic = [0u8; 8];
        match input.read_exact(&mut magic) {
            Ok(()) if &magic == MAGIC => {}
            Ok(()) => return Err(BackupError::NotABackup),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(BackupError::NotABackup),
            Err(e) => return Err(e.into()),
        }
        let mut hash = blake3::Hasher::new();
        hash.update(&magic);
        let mut reader = Self { input, hash, offset: 8, last: 0, events: 0, ended: false };
        let manifest = match reader.frame()? {
            Frame::Manifest(m) if m.format == FORMAT => m,
            Frame::Manifest(m) => return Err(BackupError::Format(m.format)),
            _ => return Err(reader.damaged("the manifest is not where it belongs")),
        };
        reader.last = manifest.since;
        let keys = match reader.frame()? {
            Frame::Keys(k) => k,
            _ => return Err(reader.damaged("the keys are not where they belong")),
        };
        Ok((reader, manifest, keys))
    }

    /// The next event; `None` once the end record has checked out.
    pub fn next_event(&mut self) -> Result<Option<Event>, BackupError> {
        if self.ended {
            return Ok(None);
        }
        match self.frame()? {
            Frame::Event(e) => {
                if e.position <= self.last {
                    return Err(self.damaged(format!("position {} does not follow {}", e.position, self.last)));
                }
                self.last = e.position;
                self.events += 1;
                Ok(Some(e))
            }
            Frame::End(end) => {
                if end.events != self.events {
                    return Err(
                        self.damaged(format!("it ends saying {} events, and holds {}", end.events, self.events))
                    );
                }
                if end.hash.as_slice() != self.hash.finalize().as_bytes() {
                    return Err(self.damaged("its bytes do not hash to what its end record says"));
                }
                let mut rest = [0u8; 1];
                if self.input.read(&mut rest)? != 0 {
                    return Err(self.damaged("there are bytes after its end record"));
                }
                self.ended = true;
                Ok(None)
            }
            _ => Err(self.damaged("a manifest or keys frame among the events")),
        }
    }

    /// The position of the last event read.
    pub fn last_position(&self) -> u64 {
        self.last
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn damaged(&self, reason: impl Into<String>) -> BackupError {
        BackupError::Damaged { offset: self.offset, after: self.last, reason: reason.into() }
    }

    /// The next frame, hashed unless it is the end record. A backup ends with its end
    /// record, so running out of input before one is a cut-short file.
    fn frame(&mut self) -> Result<Frame, BackupError> {
        let mut len = [0u8; 4];
        if !self.fill(&mut len)? {
            return Err(BackupError::Truncated { offset: self.offset, after: self.last });
        }
        let n = u32::from_be_bytes(len);
        if n > MAX_FRAME {
            return Err(self.damaged(format!("a frame claims {n} bytes")));
        }
        let mut bytes = vec![0u8; n as usize];
        if !self.fill(&mut bytes)? {
            return Err(BackupError::Truncated { offset: self.offset, after: self.last });
        }
        let frame: Frame =
            rmp_serde::from_slice(&bytes).map_err(|e| self.damaged(format!("a frame does not decode: {e}")))?;
        if !matches!(frame, Frame::End(_)) {
            self.hash.update(&len);
            self.hash.update(&bytes);
        }
        self.offset += 4 + u64::from(n);
        Ok(frame)
    }

    /// Fills `buf`: false if the input ended first.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, BackupError> {
        match self.input.read_exact(buf) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
