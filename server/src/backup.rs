//! `openguild backup` and `openguild restore`: the event log to a file and back
//! (docs/OPERATIONS.md, "Back up and restore"; the file's layout is `openguild_store::backup`).
//!
//! A backup reads the store up to the head it found when it began, so writes that continue
//! beside it are simply not in it. The hub's secret key travels sealed with a passphrase
//! (Argon2id, then XChaCha20-Poly1305), or is left out on request. A restore checks the whole
//! file first (every event's hash and signature, every stream's `prev` chain, the file's
//! count and hash) and writes nothing unless all of it holds; then it appends the events
//! exactly as they were, puts the key back, and rebuilds the read models.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use openguild_domain::event::{self, KeyRing, PublishedKey, SignedEvent};
use openguild_domain::{KeyId, ServerKey, ServerName, StreamId, Timestamp};
use openguild_projections::ReadDb;
use openguild_store::backup::{self, Keys, Manifest, OwnKey, Reader, Writer};
use openguild_store::verify::Chains;
use openguild_store::{Direction, EventStore, ExpectedVersion, Options};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::Settings as Place;
use crate::cli::{add_peer_keys, bar, rebuild};
use crate::keys;

/// Events appended per transaction by a restore.
const RESTORE_BATCH: usize = 500;

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The file to write. It must not exist; it appears only once complete.
    file: PathBuf,
    /// Only the events after this position: an incremental backup, restored on top of the
    /// backup that reached it.
    #[arg(long, default_value_t = 0)]
    since: u64,
    /// Leave the hub's secret key out. A restore then needs `server.key` put back by hand.
    #[arg(long)]
    no_keys: bool,
    /// The passphrase that seals the hub's secret key in the file.
    #[arg(long, env = "OPENGUILD_BACKUP_PASSPHRASE", hide_env_values = true)]
    passphrase: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup file.
    file: PathBuf,
    /// The passphrase the hub's key was sealed with.
    #[arg(long, env = "OPENGUILD_BACKUP_PASSPHRASE", hide_env_values = true)]
    passphrase: Option<String>,
    /// Only check the file (hashes, signatures, chains, count); write nothing.
    #[arg(long)]
    check: bool,
}

/// The hub's secret key files, as sealed into a backup.
#[derive(Serialize, Deserialize)]
struct Secret {
    seed: ByteBuf,
    key_id: String,
    /// `server.keys.old.json`, if the key was ever rotated.
    old: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    salt: ByteBuf,
    nonce: ByteBuf,
    ciphertext: ByteBuf,
}

pub async fn backup(place: Place, args: BackupArgs) -> anyhow::Result<()> {
    let passphrase = match (args.no_keys, &args.passphrase) {
        (true, _) => None,
        (false, Some(p)) if p.chars().count() >= 12 => Some(p.clone()),
        (false, Some(_)) => bail!("the passphrase is shorter than 12 characters; choose a longer one"),
        (false, None) => bail!(
            "a backup seals the hub's secret key with a passphrase: set OPENGUILD_BACKUP_PASSPHRASE \
             (or --passphrase), or pass --no-keys to leave the key out"
        ),
    };
    let server: ServerName = place.server_name.parse()?;
    let key_path = place.data_dir.join("server.key");
    if !key_path.exists() {
        bail!("no hub key at {}: point OPENGUILD_DATA_DIR at the hub's data directory", key_path.display());
    }
    let key = keys::load_or_create(&place.data_dir, server.clone())?;
    let mut keys_section = Keys {
        own: keys::own_keys(&place.data_dir, &key)?
            .into_iter()
            .map(|(id, k)| OwnKey {
                key_id: id.to_string(),
                public_key: ByteBuf::from(k.public_key.to_vec()),
                valid_from_ms: k.valid_from.as_millis(),
                valid_until_ms: k.valid_until.map(|t| t.as_millis()),
            })
            .collect(),
        peers: match ReadDb::open(&place.read_db_url()).await {
            Ok(db) => openguild_projections::queries::peer_keys(&db).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        },
        sealed: None,
    };
    if let Some(passphrase) = passphrase {
        let secret = Secret {
            seed: ByteBuf::from(std::fs::read(&key_path)?),
            key_id: key.key_id().to_string(),
            old: std::fs::read_to_string(place.data_dir.join("server.keys.old.json")).ok(),
        };
        keys_section.sealed = Some(ByteBuf::from(seal(&passphrase, &rmp_serde::to_vec(&secret)?)?));
    }

    let store = openguild_store::open(&place.store_url(), Options { read_only: true, ..Options::default() }).await?;
    let head = store.head_position().await?;
    if args.since > head {
        bail!("--since {} is past the store's head ({head}): nothing was written after it", args.since);
    }
    let manifest =
        Manifest { format: backup::FORMAT, hub: server.to_string(), created_ms: now_ms(), since: args.since, head };
    if args.file.exists() {
        bail!("{} exists; name a new file (a backup never overwrites one)", args.file.display());
    }
    let partial = partial_path(&args.file);
    let out = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut writer = Writer::new(BufWriter::with_capacity(1 << 20, out), &manifest, &keys_section)?;
    let bar = bar(head - args.since, "backing up");
    let mut after = args.since;
    while after < head {
        let page = store.read_all(after, 1000).await?;
        let Some(last) = page.last().map(|e| e.position) else { break };
        for e in page.iter().take_while(|e| e.position <= head) {
            writer.event(e)?;
        }
        after = last;
        bar.set_position(after.min(head) - args.since);
    }
    let (out, end) = writer.finish()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, &args.file)?;
    bar.finish_and_clear();
    store.close().await;
    let size = std::fs::metadata(&args.file)?.len();
    println!(
        "backed up {} events (positions {}..={head}) of {server} to {} ({size} bytes, hash {}); the hub's key is {}",
        end.events,
        args.since + 1,
        args.file.display(),
        hex(&end.hash),
        if keys_section.sealed.is_some() { "in it, sealed" } else { "left out" },
    );
    Ok(())
}

pub async fn restore(place: Place, args: RestoreArgs) -> anyhow::Result<()> {
    let (_, manifest, keys_section) = open(&args.file)?;
    // A check reads the file alone; a restore makes this hub the backup's.
    if !args.check && manifest.hub != place.server_name {
        bail!(
            "the backup is of the hub {}, and this one is configured as {}: set OPENGUILD_SERVER_NAME={} to restore it",
            manifest.hub,
            place.server_name,
            manifest.hub
        );
    }
    let server: ServerName = manifest.hub.parse()?;
    let secret = match (&keys_section.sealed, &args.passphrase) {
        (Some(sealed), Some(passphrase)) => Some(unseal(passphrase, sealed)?),
        (Some(_), None) if !args.check => bail!(
            "the backup holds the hub's key, sealed: give its passphrase in OPENGUILD_BACKUP_PASSPHRASE (or --passphrase)"
        ),
        _ => None,
    };
    let ring = ring_of(&server, &keys_section)?;
    if let Some(secret) = &secret {
        let key = secret_key(&server, secret)?;
        let current = keys_section.own.iter().find(|k| k.valid_until_ms.is_none());
        if current.is_none_or(|k| k.public_key.as_slice() != key.public_key()) {
            bail!("the sealed key is not the hub's current key named in the backup; the backup is not consistent");
        }
    }

    let store = if args.check {
        None
    } else {
        std::fs::create_dir_all(&place.data_dir)
            .with_context(|| format!("creating the data directory {}", place.data_dir.display()))?;
        let store = openguild_store::open(&place.store_url(), Options::default()).await?;
        let head = store.head_position().await?;
        if head != manifest.since {
            match manifest.since {
                0 => bail!(
                    "the store at {} already holds {head} events; restore into an empty one (a new data directory or database)",
                    place.store_url()
                ),
                since => bail!(
                    "this backup continues the log from position {since}, and the store is at {head}: restore the backups in order"
                ),
            }
        }
        Some(store)
    };

    // First the whole file is checked; nothing is written unless all of it holds.
    let count = replay(&args.file, &manifest, &ring, store.as_ref(), Step::Check).await?;
    let Some(store) = store else {
        println!(
            "ok: {count} events (positions {}..={}) of {} check out (hashes, signatures, prev chains, count, file hash)",
            manifest.since + 1,
            manifest.head,
            manifest.hub
        );
        return Ok(());
    };
    if let Some(secret) = &secret {
        put_key_back(&place.data_dir, secret)?;
    }
    let appended = replay(&args.file, &manifest, &ring, Some(&store), Step::Append).await?;

    let db = ReadDb::open(&place.read_db_url()).await.context("opening the read model database")?;
    for (peer, document) in &keys_section.peers {
        openguild_projections::queries::save_peer_keys(&db, peer, document).await?;
    }
    let position = rebuild(&db, &store, &openguild_projections::all(&place.server_name)).await?;
    store.close().await;
    println!(
        "restored {appended} events of {} (positions {}..={}), read models rebuilt to position {position}; the hub's key {}",
        manifest.hub,
        manifest.since + 1,
        manifest.head,
        if secret.is_some() {
            "is back in the data directory"
        } else {
            "was not in the backup: put server.key back in the data directory before serving"
        }
    );
    Ok(())
}

fn open(path: &Path) -> anyhow::Result<(Reader<BufReader<File>>, Manifest, Keys)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Reader::open(BufReader::with_capacity(1 << 20, file))?)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Check,
    Append,
}

/// Reads every event of the file and verifies it (hash, signature, its stream's chain, from
/// the store's copy of the stream when it continues one); appends it too at `Step::Append`,
/// a stream's consecutive events together. The events read, once the file's end record has
/// checked out.
async fn replay(
    path: &Path,
    manifest: &Manifest,
    ring: &KeyRing,
    store: Option<&Arc<dyn EventStore>>,
    step: Step,
) -> anyhow::Result<u64> {
    let (mut reader, _, _) = open(path)?;
    let mut chains = Chains::default();
    let bar = bar(manifest.head - manifest.since, if step == Step::Check { "checking" } else { "restoring" });
    let mut batch: Vec<SignedEvent> = Vec::new();
    let mut count = 0u64;
    while let Some(e) = reader.next_event()? {
        let broken = |reason: String| anyhow::anyhow!("the event at position {} is refused: {reason}", e.position);
        let raw = e.raw().map_err(broken)?;
        let event = event::verify(&raw, ring).map_err(|r| broken(r.to_string()))?;
        let stream = event.core.stream.clone();
        if let Some(store) = store
            && manifest.since > 0
            && !chains.knows(&stream)
            && let Some(last) = store.read_stream(&stream, u64::MAX, 1, Direction::Backward).await?.pop()
        {
            chains.start_from(stream.clone(), last.event.core.seq, last.event.id);
        }
        chains.follow(&event).map_err(broken)?;
        if let (Step::Append, Some(store)) = (step, store) {
            if batch.last().is_some_and(|l| l.event.core.stream != stream) || batch.len() >= RESTORE_BATCH {
                append(&**store, std::mem::take(&mut batch)).await?;
            }
            batch.push(SignedEvent { event, raw });
        }
        count += 1;
        bar.set_position(e.position - manifest.since);
    }
    if let Some(store) = store {
        append(&**store, batch).await?;
    }
    bar.finish_and_clear();
    Ok(count)
}

/// Appends one stream's consecutive events as they were signed: the count.
async fn append(store: &dyn EventStore, events: Vec<SignedEvent>) -> anyhow::Result<u64> {
    let Some(first) = events.first() else { return Ok(0) };
    let stream: StreamId = first.event.core.stream.clone();
    let expected = match first.event.core.seq {
        1 => ExpectedVersion::NoStream,
        seq => ExpectedVersion::Exact(seq - 1),
    };
    let n = events.len() as u64;
    store.append(&stream, expected, events).await.with_context(|| format!("appending to {stream}"))?;
    Ok(n)
}

/// The keys the backup's events verify with: the hub's own and its peers'.
fn ring_of(server: &ServerName, keys_section: &Keys) -> anyhow::Result<KeyRing> {
    let mut ring = KeyRing::default();
    for k in &keys_section.own {
        let public_key: [u8; 32] = k
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("the backup's key {} is not 32 bytes", k.key_id))?;
        let published = PublishedKey {
            public_key,
            valid_from: Timestamp::from_millis(k.valid_from_ms)?,
            valid_until: k.valid_until_ms.map(Timestamp::from_millis).transpose()?,
        };
        ring.insert(server.clone(), k.key_id.parse::<KeyId>()?, published);
    }
    add_peer_keys(&mut ring, &keys_section.peers)?;
    Ok(ring)
}

fn secret_key(server: &ServerName, secret: &Secret) -> anyhow::Result<ServerKey> {
    let seed: [u8; 32] =
        secret.seed.as_slice().try_into().map_err(|_| anyhow::anyhow!("the sealed key is not 32 bytes"))?;
    Ok(ServerKey::from_seed(server.clone(), secret.key_id.parse()?, seed))
}

/// Writes the hub's key files into `data_dir`; an existing, different key is never replaced.
fn put_key_back(data_dir: &Path, secret: &Secret) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("server.key");
    match std::fs::read(&path) {
        Ok(existing) if existing == secret.seed.as_slice() => return Ok(()),
        Ok(_) => bail!(
            "{} holds another key; restore into an empty data directory (the backup's key would replace it)",
            path.display()
        ),
        Err(_) => {}
    }
    keys::write_atomically(&path, &secret.seed)?;
    keys::write_atomically(&data_dir.join("server.key.id"), secret.key_id.as_bytes())?;
    if let Some(old) = &secret.old {
        keys::write_atomically(&data_dir.join("server.keys.old.json"), old.as_bytes())?;
    }
    Ok(())
}

/// The key a passphrase makes for `salt`: Argon2id at the OWASP setting (19 MiB, 2 passes).
fn key_of(passphrase: &str, salt: &[u8]) -> anyhow::Result<[u8; 32]> {
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon.hash_password_into(passphrase.as_bytes(), salt, &mut key).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(key)
}

fn seal(passphrase: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut salt).and_then(|()| getrandom::fill(&mut nonce)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(&key_of(passphrase, &salt)?.into());
    let ciphertext =
        cipher.encrypt(&nonce.into(), plain).map_err(|_| anyhow::anyhow!("sealing the hub's key failed"))?;
    let sealed = Sealed {
        salt: ByteBuf::from(salt.to_vec()),
        nonce: ByteBuf::from(nonce.to_vec()),
        ciphertext: ciphertext.into(),
    };
    Ok(rmp_serde::to_vec(&sealed)?)
}

fn unseal(passphrase: &str, sealed: &[u8]) -> anyhow::Result<Secret> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let sealed: Sealed = rmp_serde::from_slice(sealed).context("the sealed key is damaged")?;
    let nonce: [u8; 24] =
        sealed.nonce.as_slice().try_into().map_err(|_| anyhow::anyhow!("the sealed key is damaged"))?;
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(&key_of(passphrase, &sealed.salt)?.into());
    let plain = cipher
        .decrypt(&nonce.into(), sealed.ciphertext.as_slice())
        .map_err(|_| anyhow::anyhow!("the passphrase does not open the backup's sealed key"))?;
    rmp_serde::from_slice(&plain).context("the sealed key is damaged")
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
