//! Hub-to-hub federation: the peer allowlist, each hub's published keys, and signed
//! server-to-server requests (`docs/PROTOCOL.md`). Pure: no I/O and no clock, like the
//! domain — the API serves and checks, and passes the time in.
//!
//! - `peers`: who a hub talks to: the configuration's peers (`name=base-url`), overridden by
//!   the hub stream's `hub.peer_allowed` and `hub.peer_denied` events.
//! - `keys`: the self-signed key document a hub publishes, and reading a peer's into a
//!   `KeyRing` (old keys with the time they stopped being valid).
//! - `request`: signing a request (method, target, origin, destination, body digest, time)
//!   and checking one, refusal by refusal in the order the protocol fixes.

pub mod keys;
pub mod peers;
pub mod request;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;

/// Unpadded standard base64, as every byte string of the protocol is written.
pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Bytes from unpadded (or padded) standard base64.
pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    B64.decode(text.trim_end_matches('=')).ok()
}
