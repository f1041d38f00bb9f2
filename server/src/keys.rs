//! The server's Ed25519 signing key: made once from the OS's secure random source and kept
//! in `<data dir>/server.key` (mode 0600), never printed. `openguild keys rotate` retires it:
//! its public half goes to `<data dir>/server.keys.old.json` with the time it stopped being
//! valid (still published, so old events keep verifying), and a new key with a new id
//! (`server.key.id`) signs from then on.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use openguild_domain::{KeyId, ServerKey, ServerName};

const FILE: &str = "server.key";

const ID_FILE: &str = "server.key.id";
const OLD_FILE: &str = "server.keys.old.json";

/// The hub's retired keys, as its key document publishes them.
pub fn old_keys(
    data_dir: &Path,
) -> anyhow::Result<std::collections::BTreeMap<KeyId, openguild_federation::keys::OldVerifyKey>> {
    let path = data_dir.join(OLD_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Since when the current key signs: when the last retired key stopped (0 if none was).
pub fn current_since(data_dir: &Path) -> anyhow::Result<openguild_domain::Timestamp> {
    let last = old_keys(data_dir)?.values().map(|k| k.expired_ts).max().unwrap_or(0);
    Ok(openguild_domain::Timestamp::from_millis(last)?)
}

/// The key ring of this hub's own keys, current and retired: what `events verify` checks
/// its own events with.
pub fn own_ring(data_dir: &Path, key: &ServerKey) -> anyhow::Result<openguild_domain::KeyRing> {
    let mut ring = openguild_domain::KeyRing::default();
    for (id, published) in own_keys(data_dir, key)? {
        ring.insert(key.server().clone(), id, published);
    }
    Ok(ring)
}

/// This hub's own public keys, current and retired, with when each was valid.
pub fn own_keys(
    data_dir: &Path,
    key: &ServerKey,
) -> anyhow::Result<Vec<(KeyId, openguild_domain::event::PublishedKey)>> {
    use base64::Engine;
    let current = openguild_domain::event::PublishedKey {
        public_key: key.public_key(),
        valid_from: current_since(data_dir)?,
        valid_until: None,
    };
    let mut keys = vec![(key.key_id().clone(), current)];
    for (id, old) in old_keys(data_dir)? {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(old.key.trim_end_matches('='))?;
        let public_key: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("retired key {id} is not 32 bytes"))?;
        let published = openguild_domain::event::PublishedKey {
            public_key,
            valid_from: openguild_domain::Timestamp::from_millis(old.valid_from_ts)?,
            valid_until: Some(openguild_domain::Timestamp::from_millis(old.expired_ts)?),
        };
        keys.push((id, published));
    }
    Ok(keys)
}

/// Retires the current key at `now` and makes a new one (the server must be restarted to
/// sign with it). The new key's id.
pub fn rotate(data_dir: &Path, server: ServerName, now: openguild_domain::Timestamp) -> anyhow::Result<KeyId> {
    use base64::Engine;
    let current = load_or_create(data_dir, server.clone())?;
    let mut old = old_keys(data_dir)?;
    let since = current_since(data_dir)?;
    old.insert(
        current.key_id().clone(),
        openguild_federation::keys::OldVerifyKey {
            key: base64::engine::general_purpose::STANDARD_NO_PAD.encode(current.public_key()),
            valid_from_ts: since.as_millis(),
            expired_ts: now.as_millis(),
        },
    );
    let next: KeyId = (1..)
        .map(|n| format!("ed25519:a{n}"))
        .find_map(|id| {
            let id: KeyId = id.parse().ok()?;
            (!old.contains_key(&id) && id != *current.key_id()).then_some(id)
        })
        .ok_or_else(|| anyhow::anyhow!("no key id left"))?;
    // The retired key first: if the rest fails, it is still published.
    write_atomically(&data_dir.join(OLD_FILE), serde_json::to_string_pretty(&old)?.as_bytes())?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no secure random source: {e}"))?;
    write_atomically(&data_dir.join(FILE), &seed)?;
    write_atomically(&data_dir.join(ID_FILE), next.to_string().as_bytes())?;
    Ok(next)
}

/// Writes `bytes` to a temporary file (mode 0600), syncs it and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode_0600()
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Loads the key, or makes and saves one on first start.
pub fn load_or_create(data_dir: &Path, server: ServerName) -> anyhow::Result<ServerKey> {
    let path = data_dir.join(FILE);
    let key_id: KeyId = match std::fs::read_to_string(data_dir.join(ID_FILE)) {
        Ok(id) => id.trim().parse().with_context(|| format!("{} names no key id", data_dir.join(ID_FILE).display()))?,
        Err(_) => "ed25519:a1".parse()?,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!("{} is not a server key (expected 32 bytes, found {})", path.display(), bytes.len())
            })?;
            Ok(ServerKey::from_seed(server, key_id, seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no secure random source: {e}"))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_0600()
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(&seed)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(ServerKey::from_seed(server, key_id, seed))
        }
        Err(e) => bail!("reading {}: {e}", path.display()),
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    #[cfg(unix)]
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
    #[cfg(not(unix))]
    fn mode_0600(&mut self) -> &mut Self {
        self
    }
}
