//! Kill -9 mid-flight: a child process appends as fast as it can and reports each ack; it
//! is killed with SIGKILL at a random moment; after reopening, every acknowledged event is
//! present and intact, and nothing half-written is visible.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openguild_domain::EventId;
use openguild_store::{Direction, Options};
use rand::Rng;

use crate::support::Backend;

async fn kill_mid_flight(backend: Backend) {
    let url = backend.url();
    backend.store.close().await;
    for round in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
            .args([url.as_str(), "8", &round.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the crash writer starts");
        let acks = Arc::new(Mutex::new(Vec::<(EventId, u64)>::new()));
        let reader = {
            let acks = acks.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut parts = line.split(' ').skip(1);
                    let id: EventId = parts.next().unwrap().parse().unwrap();
                    let position: u64 = parts.next().unwrap().parse().unwrap();
                    acks.lock().unwrap().push((id, position));
                }
            })
        };
        // Wait for the first acks, then kill at a random moment.
        for _ in 0..200 {
            if !acks.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let wait = rand::rng().random_range(50..700);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acks = acks.lock().unwrap().clone();
        assert!(!acks.is_empty(), "round {round}: the writer acknowledged nothing");

        let store = openguild_store::open(&url, Options::default()).await.unwrap();
        for (id, position) in &acks {
            let found = store.get(id).await.unwrap().unwrap_or_else(|| panic!("acknowledged event {id} is lost"));
            assert_eq!(found.position, *position);
            assert!(found.event.body.is_some(), "intact");
        }
        // Everything visible decodes (the read check runs on every row) and chains.
        let mut streams: HashMap<String, u64> = HashMap::new();
        let mut after = 0;
        loop {
            let page = store.read_all(after, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            for e in &page {
                let seq = streams.entry(e.event.core.stream.to_string()).or_insert(0);
                assert_eq!(e.event.core.seq, *seq + 1, "streams have no holes");
                *seq += 1;
            }
        }
        for (stream, version) in &streams {
            let tail = store.read_stream(&stream.parse().unwrap(), u64::MAX, 1, Direction::Backward).await.unwrap();
            assert_eq!(tail[0].event.core.seq, *version);
        }
        eprintln!(
            "round {round}: {} acked events survived SIGKILL after {wait} ms; {} events stored",
            acks.len(),
            after
        );
        store.close().await;
    }
    backend.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_event_through_sigkill() {
    kill_mid_flight(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_event_through_sigkill() {
    kill_mid_flight(Backend::postgres().await).await;
}
