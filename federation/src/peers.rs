//! The allowlist: who a hub talks to. It starts from the configuration — peers as
//! `name=base-url` (`hub-b.test=http://127.0.0.1:18102`), or a bare `name` for a peer that
//! only pulls — and operators change it at run time with signed events on the hub stream
//! (`hub.peer_allowed`, `hub.peer_denied`). The latest hub event about a name wins over the
//! configuration; a name no hub event mentions is as configured. A hub refuses everyone
//! else before doing any expensive work.

use std::collections::BTreeMap;

use openguild_domain::hub::PeerRule;
use openguild_domain::{DomainError, ServerName, validate};

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

/// Reads `entries` (`name=url` or `name`); a name listed twice is refused. URLs follow the
/// rule `hub.peer_allowed` events follow (`validate::peer_url`).
pub fn parse(entries: &[String]) -> Result<BTreeMap<ServerName, Peer>, PeerError> {
    let mut peers = BTreeMap::new();
    for entry in entries {
        let invalid = |why: String| PeerError::Invalid { entry: entry.clone(), why };
        let (name, url) = match entry.split_once('=') {
            Some((name, url)) => (name.trim(), Some(url)),
            None => (entry.trim(), None),
        };
        let name: ServerName = name.parse().map_err(|e| invalid(format!("{e}")))?;
        let url = url
            .map(|url| {
                validate::peer_url("url", url).map_err(|e| match e {
                    DomainError::InvalidInput { reason, .. } => invalid(reason),
                    other => invalid(other.to_string()),
                })
            })
            .transpose()?;
        if peers.insert(name.clone(), Peer { name, url }).is_some() {
            return Err(invalid("the same peer is listed twice".into()));
        }
    }
    Ok(peers)
}

/// Where a peer's entry in the allowlist comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `[federation] peers` or `OPENGUILD_FEDERATION_PEERS`.
    Config,
    /// A `hub.peer_allowed` or `hub.peer_denied` event, which overrides the configuration.
    HubEvent,
}

/// One name on the allowlist, allowed or not, and what decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The peer; for a denied one, the URL it would have (from the configuration, if any).
    pub peer: Peer,
    pub source: Source,
    pub allowed: bool,
}

/// The allowlist in force: the configuration's peers overridden by the hub stream's word on
/// each name. This hub is never its own peer, whatever either says.
#[derive(Clone, Copy, Debug)]
pub struct Allowlist<'a> {
    pub us: &'a ServerName,
    pub config: &'a BTreeMap<ServerName, Peer>,
    /// What the hub stream last said about each name (`Hub::peers`).
    pub hub: &'a BTreeMap<ServerName, PeerRule>,
}

impl Allowlist<'_> {
    /// `name`, if it is an allowed peer, with the URL it is reached at.
    pub fn peer(&self, name: &ServerName) -> Option<Peer> {
        if name == self.us {
            return None;
        }
        match self.hub.get(name) {
            Some(PeerRule::Allowed { url }) => Some(Peer { name: name.clone(), url: Some(url.clone()) }),
            Some(PeerRule::Denied) => None,
            None => self.config.get(name).cloned(),
        }
    }

    /// Every name the configuration or the hub stream mentions, in name order.
    pub fn list(&self) -> Vec<Listed> {
        let mut names: Vec<&ServerName> = self.config.keys().chain(self.hub.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter(|name| *name != self.us)
            .map(|name| match self.hub.get(name) {
                Some(rule) => {
                    let url = match rule {
                        PeerRule::Allowed { url } => Some(url.clone()),
                        PeerRule::Denied => self.config.get(name).and_then(|p| p.url.clone()),
                    };
                    let allowed = matches!(rule, PeerRule::Allowed { .. });
                    Listed { peer: Peer { name: name.clone(), url }, source: Source::HubEvent, allowed }
                }
                None => Listed {
                    peer: Peer { name: name.clone(), url: self.config.get(name).and_then(|p| p.url.clone()) },
                    source: Source::Config,
                    allowed: true,
                },
            })
            .collect()
    }

    /// The allowed peers, in name order.
    pub fn allowed(&self) -> Vec<Peer> {
        self.list().into_iter().filter(|l| l.allowed).map(|l| l.peer).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServerName {
        s.parse().unwrap()
    }

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

    #[test]
    fn a_configured_peer_with_a_bad_url_is_refused_in_the_words_the_hub_stream_uses() {
        let said = parse(&["hub-b.test=http://localhost@evil.example".into()]).unwrap_err().to_string();
        assert_eq!(
            said,
            "peer \"hub-b.test=http://localhost@evil.example\": the URL \"http://localhost@evil.example\" carries a \
             user name or password; a peer URL is https://HOST[:PORT][/PATH]; http:// is accepted only to loopback \
             (127.0.0.1, localhost, [::1]); write it as NAME=URL, e.g. hub-b.test=https://hub-b.example"
        );
    }

    #[test]
    fn the_latest_hub_event_about_a_name_wins_over_the_configuration() {
        let us = name("hub-a.test");
        let config = parse(&[
            "hub-b.test=https://b.example".into(),
            "hub-c.test=https://c.example".into(),
            "hub-d.test".into(),
            "hub-a.test=https://a.example".into(),
        ])
        .unwrap();
        let hub: BTreeMap<ServerName, PeerRule> = [
            (name("hub-c.test"), PeerRule::Denied),
            (name("hub-d.test"), PeerRule::Allowed { url: "https://d.example".into() }),
            (name("hub-e.test"), PeerRule::Allowed { url: "https://e.example".into() }),
            (name("hub-f.test"), PeerRule::Denied),
        ]
        .into();
        let list = Allowlist { us: &us, config: &config, hub: &hub };
        let shown: Vec<String> = list
            .list()
            .iter()
            .map(|l| format!("{} {:?} {:?} {}", l.peer.name, l.peer.url, l.source, l.allowed))
            .collect();
        assert_eq!(
            shown,
            [
                "hub-b.test Some(\"https://b.example\") Config true",
                "hub-c.test Some(\"https://c.example\") HubEvent false",
                "hub-d.test Some(\"https://d.example\") HubEvent true",
                "hub-e.test Some(\"https://e.example\") HubEvent true",
                "hub-f.test None HubEvent false",
            ]
        );
        assert_eq!(list.peer(&name("hub-b.test")).and_then(|p| p.url).as_deref(), Some("https://b.example"));
        assert_eq!(list.peer(&name("hub-c.test")), None, "denied over the configuration");
        assert_eq!(list.peer(&name("hub-d.test")).and_then(|p| p.url).as_deref(), Some("https://d.example"));
        assert_eq!(list.peer(&name("hub-a.test")), None, "never its own peer");
        assert_eq!(list.peer(&name("hub-g.test")), None, "never mentioned");
        let allowed: Vec<String> = list.allowed().iter().map(|p| p.name.to_string()).collect();
        assert_eq!(allowed, ["hub-b.test", "hub-d.test", "hub-e.test"]);
    }
}
