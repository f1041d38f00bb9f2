//! A TCP proxy that misbehaves on the test's orders, to put between two hubs: it adds
//! latency, drops or resets a fraction of the requests, and partitions the hubs for a while.
//! It works on bytes, not HTTP, and knows only where a request starts (the first bytes a
//! client sends after the last answer), so it breaks connections the way a network does.
//!
//! One [`Faults`] can drive several proxies (each direction between two hubs), and counts
//! what it did, so a test can show that the faults really happened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How a total partition looks to the hubs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    /// Connections are taken and then nothing: no byte passes and nothing answers, so the
    /// client waits for its own timeout. Connections open before keep hanging.
    BlackHole,
    /// Every new connection is reset at once, as a host that refuses it.
    Refuse,
}

/// What the proxies do now. The fractions are per request and add up to at most 1.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Each chunk of bytes waits a random time in this range before it is passed on.
    pub latency: (Duration, Duration),
    /// Closed without passing the request on and without an answer.
    pub drop: f64,
    /// Passed on, and the connection closed instead of passing the answer back: the
    /// receiver did the work, and the sender does not know.
    pub lose_answer: f64,
    /// Reset (RST, `SO_LINGER` 0) as the request starts.
    pub reset: f64,
    /// A total partition, while it is set.
    pub partition: Option<Partition>,
}

/// What the proxies did, in all.
#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    requests: AtomicU64,
    dropped: AtomicU64,
    answers_lost: AtomicU64,
    reset: AtomicU64,
    black_holed: AtomicU64,
    refused: AtomicU64,
}

/// [`Counts`] read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub connections: u64,
    pub requests: u64,
    pub dropped: u64,
    pub answers_lost: u64,
    pub reset: u64,
    pub black_holed: u64,
    pub refused: u64,
}

/// The control of one or more proxies.
pub struct Faults {
    plan: watch::Sender<Plan>,
    counts: Counts,
}

impl Faults {
    /// Passing everything, at once.
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults { plan: watch::Sender::new(Plan::default()), counts: Counts::default() })
    }

    /// Does what `plan` says from now on.
    pub fn set(&self, plan: Plan) {
        self.plan.send_replace(plan);
    }

    /// What the proxies did so far.
    pub fn tally(&self) -> Tally {
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Tally {
            connections: n(&c.connections),
            requests: n(&c.requests),
            dropped: n(&c.dropped),
            answers_lost: n(&c.answers_lost),
            reset: n(&c.reset),
            black_holed: n(&c.black_holed),
            refused: n(&c.refused),
        }
    }

    fn plan(&self) -> Plan {
        self.plan.borrow().clone()
    }

    /// Waits until no partition is set.
    async fn healed(&self) {
        let mut rx = self.plan.subscribe();
        let _ = rx.wait_for(|p| p.partition.is_none()).await;
    }
}

/// One proxy: connections to `addr` go on to its upstream, as the [`Faults`] allow.
pub struct Proxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`, which need not be
    /// up yet (a connection to it that fails is reset).
    pub async fn start(upstream: SocketAddr, faults: Arc<Faults>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                faults.counts.connections.fetch_add(1, Ordering::Relaxed);
                connections.spawn(relay(client, upstream, faults.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
        Proxy { addr, task }
    }
}

/// Closes `stream` with a reset instead of a clean close.
fn reset(stream: TcpStream) {
    // A zero linger (SO_LINGER 0) makes close() send RST and drop what is unsent.
    let _ = stream.set_zero_linger();
    drop(stream);
}

enum Fate {
    Pass,
    Drop,
    LoseAnswer,
    Reset,
}

fn roll(plan: &Plan) -> Fate {
    let r: f64 = rand::random();
    if r < plan.drop {
        Fate::Drop
    } else if r < plan.drop + plan.lose_answer {
        Fate::LoseAnswer
    } else if r < plan.drop + plan.lose_answer + plan.reset {
        Fate::Reset
    } else {
        Fate::Pass
    }
}

async fn delay(plan: &Plan) {
    let (low, high) = plan.latency;
    if high > Duration::ZERO {
        let span = high.saturating_sub(low).as_millis() as u64;
        let extra = if span == 0 { 0 } else { rand::random::<u64>() % span };
        tokio::time::sleep(low + Duration::from_millis(extra)).await;
    }
}

/// Holds the connection(s) without a byte passing until the partition ends, then closes.
async fn black_hole(faults: &Faults) {
    faults.counts.black_holed.fetch_add(1, Ordering::Relaxed);
    faults.healed().await;
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, faults: Arc<Faults>) {
    let counts = &faults.counts;
    match faults.plan().partition {
        Some(Partition::Refuse) => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            return reset(client);
        }
        Some(Partition::BlackHole) => return black_hole(&faults).await,
        None => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else { return reset(client) };
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    // Whether the next bytes from the client start a request, and whether this request's
    // answer is to be lost.
    let (mut starts, mut lose) = (true, false);
    loop {
        tokio::select! {
            read = client.read(&mut up) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                let plan = faults.plan();
                if plan.partition.is_some() {
                    return black_hole(&faults).await;
                }
                if starts {
                    starts = false;
                    counts.requests.fetch_add(1, Ordering::Relaxed);
                    match roll(&plan) {
                        Fate::Pass => {}
                        Fate::Drop => {
                            counts.dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Fate::LoseAnswer => lose = true,
                        Fate::Reset => {
                            counts.reset.fetch_add(1, Ordering::Relaxed);
                            return reset(client);
                        }
                    }
                }
                delay(&plan).await;
                if server.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            read = server.read(&mut down) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                let plan = faults.plan();
                if plan.partition.is_some() {
                    return black_hole(&faults).await;
                }
                starts = true;
                if lose {
                    counts.answers_lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                delay(&plan).await;
                if client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
