//! The allowlist from the configuration: peers as `name=base-url` (`hub-b.test=http://127.0.0.1:18102`),
//! or a bare `name` for a peer that only pulls. A hub talks to these and refuses everyone else
//! before doing any expensive work.

use std::collections::BTreeMap;

use openguild_domain::ServerName;

/// A peer hub: its name and where to reach it (none for a peer that only pulls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: ServerName,
    pub url: Option<String>,
}

/// Why a configured peer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerError {
    #[error("peer {entry:?}: {why}; write it as NAME=URL, e.g. hub-b.test=https://hub-b.example")]
    Invalid { entry: String, why: String },
}

/// Reads `entries` (`name=url` or `name`); a name listed twice is refused.
pub fn parse(entries: &[String]) -> Result<BTreeMap<ServerName, Peer>, PeerError> {
    let mut peers = BTreeMap::new();
    for entry in entries {
        let invalid = |why: String| PeerError::Invalid { entry: entry.clone(), why };
        let (name, url) = match entry.split_once('=') {
            Some((name, url)) => (name.trim(), Some(url.trim().trim_end_matches('/').to_owned())),
            None => (entry.trim(), None),
        };
        let name: ServerName = name.parse().map_err(|e| invalid(format!("{e}")))?;
        if let Some(url) = &url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(format!("the URL {url:?} must start with https://")));
            }
            // Plain HTTP would let anyone on the path swap the peer's keys: loopback only.
            if let Some(rest) = url.strip_prefix("http://") {
                let host = rest.split(['/', '?']).next().unwrap_or_default();
                let host = host.rsplit_once(':').filter(|(h, _)| !h.ends_with('[')).map_or(host, |(h, _)| h);
                if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                    return Err(invalid(format!(
                        "the URL {url:?} is plain HTTP to another machine; use https:// (http:// is for loopback only)"
                    )));
                }
            }
        }
        if peers.insert(name.clone(), Peer { name, url }).is_some() {
            return Err(invalid("the same peer is listed twice".into()));
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_read_with_and_without_urls() {
        let peers = parse(&["hub-b.test=http://127.0.0.1:18102/".into(), "hub-c.test".into()]).unwrap();
        let b = &peers[&"hub-b.test".parse().unwrap()];
        assert_eq!(b.url.as_deref(), Some("http://127.0.0.1:18102"));
        assert_eq!(peers[&"hub-c.test".parse().unwrap()].url, None);
        assert!(parse(&["hub-b.test=ftp://x".into()]).unwrap_err().to_string().contains("https://"));
        let plain = parse(&["hub-b.test=http://hub-b.example:8080".into()]).unwrap_err().to_string();
        assert!(plain.contains("loopback only"), "{plain}");
        assert!(parse(&["hub-b.test=https://hub-b.example".into(), "c.test=http://[::1]:9".into()]).is_ok());
        let twice = parse(&["a.test".into(), "a.test=http://127.0.0.1:1".into()]).unwrap_err().to_string();
        assert!(twice.contains("twice"), "{twice}");
        assert!(parse(&["not a name=http://x".into()]).is_err());
    }
}
