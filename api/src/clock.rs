//! The server's clock: the one place the API reads the time, as the domain's `Timestamp`
//! (the domain itself never reads a clock).

use openguild_domain::Timestamp;

/// Now, as the domain's time.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Timestamp::from_millis(ms).unwrap_or_default()
}
