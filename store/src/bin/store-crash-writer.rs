//! A test helper for the crash test: appends signed events as fast as it can from several
//! tasks and prints `ack <event id> <position>` for each acknowledged event, until killed.
//!
//! Usage: `store-crash-writer URL WRITERS ROUND` (each round writes its own streams)

use std::io::Write;

use openguild_domain::event::{self, ServerKey, UnsignedEvent};
use openguild_domain::{ChannelId, EventBody, EventId, StreamId, Timestamp};
use openguild_store::{ExpectedVersion, Options};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(writers), Some(round)) =
        (args.next(), args.next().and_then(|w| w.parse::<u8>().ok()), args.next().and_then(|r| r.parse::<u8>().ok()))
    else {
        eprintln!("usage: store-crash-writer URL WRITERS ROUND");
        std::process::exit(2);
    };
    let store = match openguild_store::open(&url, Options::default()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = ServerKey::from_seed(
                    "hub.test".parse().unwrap_or_else(|_| unreachable!()),
                    "ed25519:k1".parse().unwrap_or_else(|_| unreachable!()),
                    [42; 32],
                );
                let mut id = [w; 16];
                id[0] = round;
                let stream = StreamId::Channel(ChannelId::from_bytes(id));
                let (mut seq, mut head): (u64, Option<EventId>) = (0, None);
                loop {
                    let n = 1 + (seq % 3) as usize;
                    let mut batch = Vec::with_capacity(n);
                    for i in 0..n as u64 {
                        let body = EventBody::MessagePosted {
                            mention_roles: Default::default(),
                            attachments: Vec::new(),
                            extra: None,
                            text: format!("writer {w} message {}", seq + 1 + i),
                            reply_to: None,
                            mentions: Default::default(),
                            mentions_everyone: false,
                        };
                        let unsigned = UnsignedEvent {
                            stream: stream.clone(),
                            seq: seq + 1 + i,
                            prev: batch.last().map(|e: &event::SignedEvent| e.event.id).or(head).into_iter().collect(),
                            auth: vec![],
                            sender: "@crash:hub.test".parse().unwrap_or_else(|_| unreachable!()),
                            ts: Timestamp::from_millis(seq + 1 + i).unwrap_or_default(),
                            body,
                        };
                        match event::sign(unsigned, &key) {
                            Ok(e) => batch.push(e),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    let expected = if seq == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(seq) };
                    let ids: Vec<EventId> = batch.iter().map(|e| e.event.id).collect();
                    match store.append(&stream, expected, batch).await {
                        Ok(result) => {
                            let mut out = std::io::stdout().lock();
                            for (id, position) in ids.iter().zip(result.positions) {
                                let _ = writeln!(out, "ack {id} {position}");
                            }
                            let _ = out.flush();
                            seq += n as u64;
                            head = ids.last().copied();
                        }
                        Err(e) => {
                            eprintln!("append failed: {e}");
                            std::process::exit(1);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}
