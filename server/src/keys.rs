//! The server's Ed25519 signing key: made once from the OS's secure random source and kept
//! in `<data dir>/server.key` (mode 0600), never printed.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use openguild_domain::{KeyId, ServerKey, ServerName};

const FILE: &str = "server.key";

/// Loads the key, or makes and saves one on first start.
pub fn load_or_create(data_dir: &Path, server: ServerName) -> anyhow::Result<ServerKey> {
    let path = data_dir.join(FILE);
    let key_id: KeyId = "ed25519:a1".parse()?;
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
