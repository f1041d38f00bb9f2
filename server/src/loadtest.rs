//! `openguild loadtest`: many websocket subscribers and a few writers on one channel of a running
//! server, reporting throughput, delivery latency, and messages lost or duplicated.
//!
//! The run: register users (the first creates a guild, a text channel and an invite; the others
//! join), open the subscriptions, warm up until every subscriber has seen a probe message (the
//! protocol does not acknowledge a subscribe), send for `--duration` seconds, wait up to `--grace`
//! seconds for the last deliveries, report. Each body carries its writer, sequence number and send
//! time, so a subscriber knows what it got, twice or late, with no coordination.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::gqlws::{self, HttpError, Subscription};

/// Load-test a running server: websocket subscribers, paced writers, delivery latency.
#[derive(clap::Args, Debug)]
#[command(after_help = NOTES)]
pub struct Args {
    /// The server's base URL (plain http).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Websocket subscribers, all on the one channel.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    subscribers: u32,
    /// Writers, each a user sending one message at a time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    writers: u32,
    /// Messages per second, all writers together. Keep rate / writers under the server's
    /// per-user mutation limit (about 10/s by default).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Websocket connections per subscribing user (the server caps connections per user).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    per_user: u32,
    /// The password of every user the load test registers (at least 8 characters).
    #[arg(long, default_value = "loadtest-password", env = "OPENGUILD_LOADTEST_PASSWORD")]
    password: String,
    /// Seconds to wait after sending for deliveries still under way.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// Print the final report as one JSON object too, after the text.
    #[arg(long)]
    json: bool,
}

const NOTES: &str = "\
Each writer sends rate / writers messages per second, evenly paced, one at a time. Keep that under \
the server's per-user mutation limit (a token bucket of about 10/s, burst 20, by default): a \
RATE_LIMITED answer counts as an error and the writer waits the retryAfter it was given.

Latency is from a writer's send to a subscriber's receipt. Both times come from this process's \
wall clock (the send time travels in the body), so the server's clock plays no part; only a clock \
step during the run would distort it. Run beside the server to leave the network out; writers and \
subscribers on different machines would need synchronised clocks.

Each socket needs a file descriptor: the open-files limit is raised to subscribers + writers + 100 \
if the hard limit allows; otherwise raise it with `ulimit -n`.

Exits non-zero if any acknowledged message was lost or delivered twice, or none was acknowledged.";

/// Handshakes in flight at once, so that opening thousands of sockets does not flood the server.
const CONNECT_CONCURRENCY: usize = 64;
/// Registrations in flight at once (argon2 makes each cost tens of milliseconds of server CPU).
const REGISTER_CONCURRENCY: usize = 8;
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Setup calls answered RATE_LIMITED are retried after `retryAfter`, this many times.
const SETUP_RETRIES: u32 = 5;
/// Subscribers record latencies into this many histograms, each behind its own lock: one per
/// subscriber would cost ~180 KB each (10,000 subscribers: 1.8 GB), one for all would contend.
const LATENCY_SHARDS: usize = 16;
/// Latencies are recorded in microseconds, up to an hour, to 3 significant figures.
const LATENCY_MAX_MICROS: u64 = 3_600_000_000;

const REGISTER: &str =
    "mutation($h: String!, $p: String!) { register(handle: $h, password: $p) { token user { id handle } } }";
const CREATE_GUILD: &str = "mutation($n: String!) { createGuild(input: {name: $n}) { id } }";
const CREATE_CHANNEL: &str =
    "mutation($g: ID!, $n: String!) { createChannel(input: {guildId: $g, name: $n, kind: TEXT}) { id } }";
const CREATE_INVITE: &str = "mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }";
const JOIN_GUILD: &str = "mutation($c: String!) { joinGuild(code: $c) { id } }";
const SEND_MESSAGE: &str = "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
const CHANNEL_EVENTS: &str =
    "subscription($c: ID!) { channelEvents(channelId: $c) { cursor kind message { id body } } }";

pub async fn run(args: Args) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    raise_open_files_limit(plan.subscribers as u64 + plan.writers as u64 + 100)?;
    let ws_url = websocket_url(&plan.url)?;
    let client = gqlws::Client::new(&plan.url).context("building the HTTP client")?;
    let fixture = set_up(&client, &args.password, &plan).await?;
    let shared = Arc::new(Shared { plan, ws_url, channel: fixture.channel.clone(), stats: Stats::new()? });

    let subscribers = open_subscribers(&shared, &fixture.subscriber_tokens).await;
    warm_up(&client, &fixture.writer_tokens[0], &shared, &subscribers.inboxes).await?;
    let sending = send_messages(&client, &fixture.writer_tokens, &shared).await?;
    await_deliveries(&sending.acked, &subscribers.inboxes, shared.plan.grace).await;
    let inboxes = subscribers.stop().await;

    let mut latencies = latency_histogram()?;
    for shard in &shared.stats.latencies {
        latencies.add(&*lock(shard)).context("merging latency histograms")?;
    }
    let guards: Vec<_> = inboxes.iter().map(|inbox| lock(inbox)).collect();
    let report = Report::new(Outcome {
        plan: &shared.plan,
        sent: shared.stats.sent.load(Relaxed),
        acked: &sending.acked,
        inboxes: &guards.iter().map(|guard| &**guard).collect::<Vec<_>>(),
        latencies: &latencies,
        negative_latencies: shared.stats.negative_latencies.load(Relaxed),
        errors: lock(&shared.stats.errors).clone(),
        send_started_nanos: sending.started_nanos,
        send_elapsed: sending.elapsed,
    });
    print!("{report}");
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    report.verdict()
}

/// The arguments, checked, and what follows from them.
#[derive(Debug, Clone)]
struct Plan {
    url: String,
    subscribers: usize,
    writers: usize,
    per_user: usize,
    /// Users the subscribers' sockets are spread over, `per_user` each.
    subscriber_users: usize,
    rate: f64,
    duration: Duration,
    /// Between two messages of one writer.
    period: Duration,
    grace: Duration,
    /// No writer can send more than this: a larger sequence number in a body is not ours.
    max_messages_per_writer: u64,
}

impl Plan {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let seconds = |name: &str, value: f64| {
            Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("--{name} must be a number of seconds ≥ 0"))
        };
        if !(args.rate.is_finite() && args.rate > 0.0) {
            bail!("--rate must be a positive number of messages per second");
        }
        let duration = seconds("duration", args.duration)?;
        if duration.is_zero() {
            bail!("--duration must be more than 0 seconds");
        }
        if args.password.len() < 8 {
            bail!("--password must be at least 8 characters");
        }
        let (subscribers, writers, per_user) =
            (args.subscribers as usize, args.writers as usize, args.per_user as usize);
        let period = Duration::from_secs_f64(writers as f64 / args.rate);
        if period < Duration::from_micros(1) {
            bail!("--rate {} is more than a million messages per second per writer: add --writers", args.rate);
        }
        Ok(Plan {
            url: args.url.trim_end_matches('/').to_owned(),
            subscribers,
            writers,
            per_user,
            subscriber_users: subscribers.div_ceil(per_user),
            rate: args.rate,
            duration,
            period,
            grace: seconds("grace", args.grace)?,
            max_messages_per_writer: (duration.as_secs_f64() / period.as_secs_f64()).ceil() as u64 + 1,
        })
    }
}

/// The server's websocket endpoint for GraphQL subscriptions.
fn websocket_url(base: &str) -> anyhow::Result<String> {
    match base.strip_prefix("http://") {
        Some(rest) => Ok(format!("ws://{}/graphql/ws", rest.trim_end_matches('/'))),
        None => bail!("--url must start with http:// (this load test speaks plain http and ws), not {base:?}"),
    }
}

fn raise_open_files_limit(needed: u64) -> anyhow::Result<()> {
    let limit = rlimit::increase_nofile_limit(needed).context("raising the open-files limit")?;
    if limit < needed {
        bail!(
            "this load test needs {needed} open files (one per socket and some to spare) but the hard limit is \
             {limit}: raise it (`ulimit -n {needed}` as root, or `nofile` in /etc/security/limits.conf) or \
             use fewer --subscribers"
        );
    }
    Ok(())
}

/// The users, guild and channel of one run.
struct Fixture {
    channel: String,
    subscriber_tokens: Vec<String>,
    writer_tokens: Vec<String>,
}

async fn set_up(client: &gqlws::Client, password: &str, plan: &Plan) -> anyhow::Result<Fixture> {
    let mut run = [0u8; 3];
    getrandom::fill(&mut run).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let run: String = run.iter().map(|b| format!("{b:02x}")).collect();
    let handles: Vec<String> = (0..plan.subscriber_users)
        .map(|i| format!("lt{run}s{i}"))
        .chain((0..plan.writers).map(|i| format!("lt{run}w{i}")))
        .collect();
    let bar = counter(handles.len() as u64, "registering");

    let owner = register(client, &handles[0], password).await?;
    let guild = call(client, Some(&owner), CREATE_GUILD, json!({ "n": format!("loadtest {run}") }), "/createGuild/id")
        .await
        .context("creating the guild")?;
    let channel =
        call(client, Some(&owner), CREATE_CHANNEL, json!({ "g": guild, "n": "loadtest" }), "/createChannel/id")
            .await
            .context("creating the channel")?;
    let invite = call(client, Some(&owner), CREATE_INVITE, json!({ "g": guild }), "/createInvite/code")
        .await
        .context("creating the invite")?;
    bar.inc(1);

    let (invite, bar) = (&invite, &bar);
    let others: Vec<String> = stream::iter(&handles[1..])
        .map(|handle| async move {
            let token = register(client, handle, password).await?;
            call(client, Some(&token), JOIN_GUILD, json!({ "c": invite }), "/joinGuild/id")
                .await
                .with_context(|| format!("joining the guild as {handle}"))?;
            bar.inc(1);
            anyhow::Ok(token)
        })
        .buffered(REGISTER_CONCURRENCY)
        .try_collect()
        .await?;
    bar.finish_and_clear();

    let mut tokens = std::iter::once(owner).chain(others);
    let subscriber_tokens = tokens.by_ref().take(plan.subscriber_users).collect();
    let writer_tokens = tokens.collect();
    Ok(Fixture { channel, subscriber_tokens, writer_tokens })
}

async fn register(client: &gqlws::Client, handle: &str, password: &str) -> anyhow::Result<String> {
    call(client, None, REGISTER, json!({ "h": handle, "p": password }), "/register/token")
        .await
        .with_context(|| format!("registering {handle}"))
}

/// One setup call, retried when rate limited; returns the string at `field` of the data.
async fn call(
    client: &gqlws::Client,
    token: Option<&str>,
    query: &str,
    variables: Value,
    field: &str,
) -> anyhow::Result<String> {
    let mut tries = 0;
    loop {
        match client.execute(token, query, variables.clone()).await {
            Ok(data) => {
                return data
                    .pointer(field)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .with_context(|| format!("the response has no {field}: {data}"));
            }
            Err(e) => match e.retry_after() {
                Some(wait) if tries < SETUP_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(e.into()),
            },
        }
    }
}

/// What every task of a run shares.
struct Shared {
    plan: Plan,
    ws_url: String,
    channel: String,
    stats: Stats,
}

/// Counters the tasks add to as they go.
struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    /// First deliveries of our messages, acknowledged or not (for the progress bars).
    delivered: AtomicU64,
    /// Deliveries received before their send time: the clocks disagree.
    negative_latencies: AtomicU64,
    error_count: AtomicU64,
    latencies: Vec<Mutex<Histogram<u64>>>,
    errors: Mutex<BTreeMap<String, ErrorTally>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct ErrorTally {
    count: u64,
    /// The first error of this kind, in full.
    example: String,
}

impl Stats {
    fn new() -> anyhow::Result<Self> {
        Ok(Stats {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            negative_latencies: AtomicU64::new(0),
            error_count: AtomicU64::new(0),
            latencies: (0..LATENCY_SHARDS).map(|_| latency_histogram().map(Mutex::new)).collect::<Result<_, _>>()?,
            errors: Mutex::new(BTreeMap::new()),
        })
    }

    fn error(&self, kind: String, detail: impl fmt::Display) {
        self.error_count.fetch_add(1, Relaxed);
        let mut errors = lock(&self.errors);
        let tally = errors.entry(kind).or_insert_with(|| ErrorTally { count: 0, example: detail.to_string() });
        tally.count += 1;
    }

    /// The errors so far, for a message that ends the run early.
    fn error_summary(&self) -> String {
        lock(&self.errors)
            .iter()
            .map(|(kind, tally)| format!("\n  {} × {kind}: {}", tally.count, tally.example))
            .collect()
    }
}

fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3).context("creating a latency histogram")
}

/// The subscribers' tasks and what they record.
struct Subscribers {
    inboxes: Vec<Arc<Mutex<Inbox>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Subscribers {
    /// Closes every subscription (politely for 5 s, then by force) and returns what they got.
    async fn stop(self) -> Vec<Arc<Mutex<Inbox>>> {
        let _ = self.stop.send(true);
        let aborts: Vec<_> = self.tasks.iter().map(|task| task.abort_handle()).collect();
        if tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(self.tasks)).await.is_err() {
            aborts.iter().for_each(|task| task.abort());
        }
        self.inboxes
    }
}

async fn open_subscribers(shared: &Arc<Shared>, tokens: &[String]) -> Subscribers {
    let n = shared.plan.subscribers;
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (stop, stopped) = watch::channel(false);
    let (ready, mut readies) = mpsc::channel(n);
    let mut inboxes = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for index in 0..n {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let token = tokens[index / shared.plan.per_user].clone();
        let task =
            subscriber(shared.clone(), index, token, inbox.clone(), permits.clone(), ready.clone(), stopped.clone());
        tasks.push(tokio::spawn(task));
        inboxes.push(inbox);
    }
    drop(ready);

    let bar = counter(n as u64, "subscribing");
    let mut failed = 0;
    while let Some(subscribed) = readies.recv().await {
        bar.inc(1);
        if !subscribed {
            failed += 1;
            bar.set_message(format!("{failed} failed"));
        }
    }
    bar.finish_and_clear();
    Subscribers { inboxes, tasks, stop }
}

async fn subscriber(
    shared: Arc<Shared>,
    index: usize,
    token: String,
    inbox: Arc<Mutex<Inbox>>,
    permits: Arc<Semaphore>,
    ready: mpsc::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let started = {
        let _permit = permits.acquire().await;
        let variables = json!({ "c": shared.channel });
        Subscription::start(&shared.ws_url, &token, CHANNEL_EVENTS, variables, ACK_TIMEOUT).await
    };
    let mut subscription = match started {
        Ok(subscription) => subscription,
        Err(e) => {
            shared.stats.error(format!("subscribe {}", e.kind()), &e);
            let _ = ready.send(false).await;
            return;
        }
    };
    lock(&inbox).subscribed = true;
    let _ = ready.send(true).await;
    drop(ready);

    let shard = index % LATENCY_SHARDS;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                subscription.close().await;
                return;
            }
            next = subscription.next() => match next {
                Ok(payload) => shared.receive(&inbox, shard, &payload),
                Err(e) => {
                    shared.stats.error(format!("subscription {}", e.kind()), &e);
                    lock(&inbox).ended = true;
                    return;
                }
            }
        }
    }
}

impl Shared {
    /// Takes one `next` payload of a subscriber.
    fn receive(&self, inbox: &Mutex<Inbox>, shard: usize, payload: &Value) {
        let received_nanos = unix_nanos();
        if let Some(errors) = payload.get("errors").filter(|errors| !errors.is_null()) {
            self.stats.error("subscription errors in next".into(), errors);
        }
        let Some(body) = posted_body(payload) else { return };
        let receipt = lock(inbox).take(body, received_nanos, &self.plan);
        if let Receipt::Fresh(latency) = receipt {
            self.stats.delivered.fetch_add(1, Relaxed);
            match latency {
                Some(latency) => {
                    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                    lock(&self.stats.latencies[shard]).saturating_record(micros);
                }
                None => {
                    self.stats.negative_latencies.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// The body of a `MESSAGE_POSTED` channel event; other events are not ours to count.
fn posted_body(payload: &Value) -> Option<&str> {
    let event = payload.pointer("/data/channelEvents")?;
    if event.get("kind")?.as_str()? != "MESSAGE_POSTED" {
        return None;
    }
    event.pointer("/message/body")?.as_str()
}

/// Sends warm-up probes until every live subscriber has received one: only then are all the
/// subscriptions known to be live on the server, so the measured messages can all be expected.
async fn warm_up(
    client: &gqlws::Client,
    token: &str,
    shared: &Shared,
    inboxes: &[Arc<Mutex<Inbox>>],
) -> anyhow::Result<()> {
    let bar = spinner("warming up");
    let deadline = Instant::now() + WARM_UP_TIMEOUT;
    let mut probe = 0;
    loop {
        let body = format!("{PROBE} {probe}");
        call(client, Some(token), SEND_MESSAGE, json!({ "c": shared.channel, "b": body }), "/sendMessage/id")
            .await
            .context("sending a warm-up message")?;
        probe += 1;
        let next_probe = Instant::now() + Duration::from_secs(1);
        while Instant::now() < next_probe {
            let (live, warm) = inboxes.iter().fold((0, 0), |(live, warm), inbox| {
                let inbox = lock(inbox);
                let is_live = inbox.is_live();
                (live + usize::from(is_live), warm + usize::from(is_live && inbox.warmed))
            });
            bar.set_message(format!("{warm}/{live} subscribers have seen a probe"));
            if live == 0 {
                bail!("no subscriber is connected:{}", shared.stats.error_summary());
            }
            if warm == live {
                bar.finish_and_clear();
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} of {live} subscribers received no message within {} s: are channelEvents live?{}",
                    live - warm,
                    WARM_UP_TIMEOUT.as_secs(),
                    shared.stats.error_summary()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Sending {
    /// Per writer, the sequence numbers the server acknowledged.
    acked: Vec<SeqSet>,
    started_nanos: u64,
    elapsed: Duration,
}

async fn send_messages(client: &gqlws::Client, tokens: &[String], shared: &Arc<Shared>) -> anyhow::Result<Sending> {
    let plan = &shared.plan;
    let started_nanos = unix_nanos();
    let start = Instant::now();
    let deadline = start + plan.duration;
    let writers = tokens.iter().enumerate().map(|(w, token)| {
        // Writers start a fraction of a period apart, so that together they send evenly.
        let first = start + plan.period.mul_f64(w as f64 / plan.writers as f64);
        let task = writer(shared.clone(), client.clone(), token.clone(), w as u32, first, deadline);
        tokio::spawn(task)
    });
    let all = futures::future::join_all(writers);
    tokio::pin!(all);

    let bar = ProgressBar::new(plan.duration.as_millis() as u64);
    bar.set_style(style("{prefix:>12} [{bar:40}] {elapsed:>4} {msg}"));
    bar.set_prefix("sending");
    let mut redraw = tokio::time::interval(Duration::from_millis(200));
    let done = loop {
        tokio::select! {
            done = &mut all => break done,
            _ = redraw.tick() => {
                let stats = &shared.stats;
                bar.set_position(start.elapsed().as_millis() as u64);
                bar.set_message(format!(
                    "sent {} acked {} delivered {} errors {}",
                    stats.sent.load(Relaxed),
                    stats.acked.load(Relaxed),
                    stats.delivered.load(Relaxed),
                    stats.error_count.load(Relaxed),
                ));
            }
        }
    };
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let acked = done.into_iter().collect::<Result<_, _>>().context("a writer failed")?;
    Ok(Sending { acked, started_nanos, elapsed })
}

/// One writer: a message every `period` until `deadline`.
///
/// Pacing uses `MissedTickBehavior::Delay`: after a slow reply the next message goes at once and
/// the one after a full period later, so a writer never sends two messages within one period and
/// never outruns the server's per-user token bucket by catching up (as `Burst` would). A slow
/// server therefore shows as fewer messages sent than planned, not as a burst.
async fn writer(
    shared: Arc<Shared>,
    client: gqlws::Client,
    token: String,
    writer: u32,
    first: Instant,
    deadline: Instant,
) -> SeqSet {
    let stats = &shared.stats;
    let mut ticks = tokio::time::interval_at(first, shared.plan.period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut acked = SeqSet::default();
    let mut seq = 0;
    loop {
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline) => return acked,
            _ = ticks.tick() => {}
        }
        let body = format_body(writer, seq, unix_nanos());
        stats.sent.fetch_add(1, Relaxed);
        let sent = client.execute(Some(&token), SEND_MESSAGE, json!({ "c": shared.channel, "b": body })).await;
        let sent = sent.and_then(|data| match data.pointer("/sendMessage/id") {
            Some(_) => Ok(()),
            None => Err(HttpError::Response(format!("no sendMessage.id in {data}"))),
        });
        match sent {
            Ok(()) => {
                acked.insert(seq);
                stats.acked.fetch_add(1, Relaxed);
            }
            Err(e) => {
                stats.error(format!("send {}", e.kind()), &e);
                if let Some(wait) = e.retry_after() {
                    tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
                }
            }
        }
        seq += 1;
    }
}

/// Waits until every live subscriber has every acknowledged message, or `grace` has passed.
async fn await_deliveries(acked: &[SeqSet], inboxes: &[Arc<Mutex<Inbox>>], grace: Duration) {
    let bar = spinner("delivering");
    let deadline = Instant::now() + grace;
    loop {
        let missing: u64 = inboxes
            .iter()
            .map(|inbox| lock(inbox))
            .filter(|inbox| inbox.is_live())
            .map(|inbox| inbox.missing(acked))
            .sum();
        bar.set_message(format!("{missing} deliveries missing"));
        if missing == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bar.finish_and_clear();
}

/// The body of a warm-up message is this, a space and a number.
const PROBE: &str = "lt probe";

/// What a load test message body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Probe,
    Message { writer: u32, seq: u64, sent_nanos: u64 },
}

/// `lt <writer> <seq> <send time in unix nanoseconds>`.
fn format_body(writer: u32, seq: u64, sent_nanos: u64) -> String {
    format!("lt {writer} {seq} {sent_nanos}")
}

fn parse_body(body: &str) -> Option<Body> {
    let mut words = body.strip_prefix("lt ")?.split(' ');
    let first = words.next()?;
    let parsed = if first == "probe" {
        words.next()?.parse::<u64>().ok()?;
        Body::Probe
    } else {
        Body::Message {
            writer: first.parse().ok()?,
            seq: words.next()?.parse().ok()?,
            sent_nanos: words.next()?.parse().ok()?,
        }
    };
    words.next().is_none().then_some(parsed)
}

/// A set of sequence numbers (from 0, dense), one bit each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SeqSet {
    words: Vec<u64>,
    len: u64,
}

impl SeqSet {
    /// Adds `seq`; false if it was there already.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        self.len += u64::from(fresh);
        fresh
    }

    fn len(&self) -> u64 {
        self.len
    }

    /// How many numbers are in both sets.
    fn common(&self, other: &SeqSet) -> u64 {
        self.words.iter().zip(&other.words).map(|(a, b)| u64::from((a & b).count_ones())).sum()
    }
}

/// What one subscriber received.
#[derive(Debug, Default)]
struct Inbox {
    /// Per writer, the sequence numbers received.
    seen: Vec<SeqSet>,
    duplicates: u64,
    /// The latest receive time of a first delivery, in unix nanoseconds.
    last_received_nanos: u64,
    /// It has seen a warm-up probe.
    warmed: bool,
    subscribed: bool,
    /// Its subscription ended before the run stopped it.
    ended: bool,
}

/// What became of one received body.
#[derive(Debug, PartialEq, Eq)]
enum Receipt {
    /// A first delivery, with its latency (none if it arrived before it was sent: clock skew).
    Fresh(Option<Duration>),
    Duplicate,
    Probe,
    /// Not a message of this run.
    Foreign,
}

impl Inbox {
    fn is_live(&self) -> bool {
        self.subscribed && !self.ended
    }

    fn take(&mut self, body: &str, received_nanos: u64, plan: &Plan) -> Receipt {
        let (writer, seq, sent_nanos) = match parse_body(body) {
            Some(Body::Message { writer, seq, sent_nanos })
                if (writer as usize) < plan.writers && seq < plan.max_messages_per_writer =>
            {
                (writer as usize, seq, sent_nanos)
            }
            Some(Body::Probe) => {
                self.warmed = true;
                return Receipt::Probe;
            }
            _ => return Receipt::Foreign,
        };
        if self.seen.len() <= writer {
            self.seen.resize_with(writer + 1, SeqSet::default);
        }
        if !self.seen[writer].insert(seq) {
            self.duplicates += 1;
            return Receipt::Duplicate;
        }
        self.last_received_nanos = self.last_received_nanos.max(received_nanos);
        Receipt::Fresh(received_nanos.checked_sub(sent_nanos).map(Duration::from_nanos))
    }

    /// Acknowledged messages this subscriber has not received.
    fn missing(&self, acked: &[SeqSet]) -> u64 {
        acked
            .iter()
            .enumerate()
            .map(|(w, acked)| acked.len() - self.seen.get(w).map_or(0, |seen| acked.common(seen)))
            .sum()
    }
}

/// Deliveries, counted against the acknowledged messages.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
struct Tally {
    /// Acknowledged messages × subscribers (connected or not).
    deliveries_expected: u64,
    /// First deliveries of acknowledged messages.
    deliveries_received: u64,
    lost: u64,
    duplicated: u64,
    /// First deliveries of messages whose send failed (a timeout, say) but which the server posted.
    unacked_received: u64,
}

fn tally(acked: &[SeqSet], inboxes: &[&Inbox]) -> Tally {
    let acked_total: u64 = acked.iter().map(SeqSet::len).sum();
    let mut tally = Tally { deliveries_expected: acked_total * inboxes.len() as u64, ..Tally::default() };
    for inbox in inboxes {
        let seen_total: u64 = inbox.seen.iter().map(SeqSet::len).sum();
        let missing = inbox.missing(acked);
        tally.deliveries_received += acked_total - missing;
        tally.unacked_received += seen_total - (acked_total - missing);
        tally.duplicated += inbox.duplicates;
    }
    tally.lost = tally.deliveries_expected - tally.deliveries_received;
    tally
}

/// Delivery latency in milliseconds.
#[derive(Debug, Default, PartialEq, Serialize)]
struct Latency {
    samples: u64,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    fn new(micros: &Histogram<u64>) -> Self {
        if micros.is_empty() {
            return Latency::default();
        }
        let ms = |quantile: f64| micros.value_at_quantile(quantile) as f64 / 1000.0;
        Latency {
            samples: micros.len(),
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
            max: micros.max() as f64 / 1000.0,
            mean: micros.mean() / 1000.0,
        }
    }
}

/// Everything a run measured, for the report.
struct Outcome<'a> {
    plan: &'a Plan,
    sent: u64,
    acked: &'a [SeqSet],
    /// One per subscriber, connected or not.
    inboxes: &'a [&'a Inbox],
    latencies: &'a Histogram<u64>,
    negative_latencies: u64,
    errors: BTreeMap<String, ErrorTally>,
    send_started_nanos: u64,
    send_elapsed: Duration,
}

#[derive(Debug, Serialize)]
struct Report {
    url: String,
    subscribers: usize,
    subscribers_connected: usize,
    /// Subscriptions that ended (closed, failed) before the run stopped them.
    subscribers_dropped: usize,
    writers: usize,
    target_rate: f64,
    duration_s: f64,
    messages_sent: u64,
    messages_acked: u64,
    #[serde(flatten)]
    tally: Tally,
    /// Acknowledged messages per second of sending.
    messages_per_s: f64,
    /// Deliveries per second, from the first send to the last delivery.
    deliveries_per_s: f64,
    latency_ms: Latency,
    negative_latencies: u64,
    errors: BTreeMap<String, ErrorTally>,
}

impl Report {
    fn new(outcome: Outcome<'_>) -> Self {
        let Outcome {
            plan,
            sent,
            acked,
            inboxes,
            latencies,
            negative_latencies,
            errors,
            send_started_nanos,
            send_elapsed,
        } = outcome;
        let tally = tally(acked, inboxes);
        let messages_acked = acked.iter().map(SeqSet::len).sum();
        let sending = send_elapsed.as_secs_f64();
        let last_delivery = inboxes.iter().map(|inbox| inbox.last_received_nanos).max().unwrap_or(0);
        let delivering = (last_delivery.saturating_sub(send_started_nanos) as f64 / 1e9).max(sending);
        let per_second = |count: u64, seconds: f64| if seconds > 0.0 { count as f64 / seconds } else { 0.0 };
        Report {
            url: plan.url.clone(),
            subscribers: plan.subscribers,
            subscribers_connected: inboxes.iter().filter(|inbox| inbox.subscribed).count(),
            subscribers_dropped: inboxes.iter().filter(|inbox| inbox.ended).count(),
            writers: plan.writers,
            target_rate: plan.rate,
            duration_s: plan.duration.as_secs_f64(),
            messages_sent: sent,
            messages_acked,
            messages_per_s: per_second(messages_acked, sending),
            deliveries_per_s: per_second(tally.deliveries_received, delivering),
            tally,
            latency_ms: Latency::new(latencies),
            negative_latencies,
            errors,
        }
    }

    /// Fails the run if anything acknowledged went missing or came twice.
    fn verdict(&self) -> anyhow::Result<()> {
        let Tally { lost, duplicated, .. } = self.tally;
        if self.messages_acked == 0 {
            bail!("the server acknowledged no message");
        }
        if lost > 0 || duplicated > 0 {
            bail!("{lost} deliveries lost and {duplicated} duplicated");
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tally;
        let l = &self.latency_ms;
        writeln!(
            f,
            "load test of {}: {} subscribers ({} connected, {} dropped), {} writers, {} messages/s for {} s",
            self.url,
            self.subscribers,
            self.subscribers_connected,
            self.subscribers_dropped,
            self.writers,
            self.target_rate,
            self.duration_s
        )?;
        writeln!(
            f,
            "messages    {} sent, {} acknowledged: {:.1}/s",
            self.messages_sent, self.messages_acked, self.messages_per_s
        )?;
        writeln!(
            f,
            "deliveries  {} expected, {} received: {:.1}/s; {} lost, {} duplicated, {} unacknowledged but received",
            t.deliveries_expected,
            t.deliveries_received,
            self.deliveries_per_s,
            t.lost,
            t.duplicated,
            t.unacked_received
        )?;
        writeln!(
            f,
            "latency     p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms ({} deliveries)",
            l.p50, l.p95, l.p99, l.max, l.mean, l.samples
        )?;
        if self.negative_latencies > 0 {
            writeln!(
                f,
                "clock       {} deliveries arrived before their send time: the clocks disagree",
                self.negative_latencies
            )?;
        }
        if self.errors.is_empty() {
            writeln!(f, "errors      none")?;
        }
        for (i, (kind, tally)) in self.errors.iter().enumerate() {
            let label = if i == 0 { "errors" } else { "" };
            writeln!(f, "{label:<11} {} × {kind} (first: {})", tally.count, tally.example)?;
        }
        Ok(())
    }
}

fn unix_nanos() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

/// A lock whose holder never panics midway in a way that matters: take the data regardless.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

fn counter(len: u64, prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(style("{prefix:>12} [{bar:40}] {pos}/{len} {msg}"));
    bar.set_prefix(prefix);
    bar
}

fn spinner(prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(style("{prefix:>12} {spinner} {elapsed} {msg}"));
    bar.set_prefix(prefix);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))?;
        Plan::new(&cli.args)
    }

    fn seqs(numbers: &[u64]) -> SeqSet {
        let mut set = SeqSet::default();
        numbers.iter().for_each(|&n| {
            set.insert(n);
        });
        set
    }

    /// An inbox that received these sequence numbers, per writer, in this order.
    fn inbox(received: &[&[u64]]) -> Inbox {
        let plan = plan(&["--writers", "4", "--rate", "4", "--duration", "1000"]).unwrap();
        let mut inbox = Inbox { subscribed: true, ..Inbox::default() };
        for (writer, seqs) in received.iter().enumerate() {
            for &seq in *seqs {
                inbox.take(&format_body(writer as u32, seq, 1), 2, &plan);
            }
        }
        inbox
    }

    #[test]
    fn loadtest_body_round_trips() {
        let body = format_body(3, 41, 1_750_000_000_123_456_789);
        assert_eq!(body, "lt 3 41 1750000000123456789");
        assert_eq!(
            parse_body(&body),
            Some(Body::Message { writer: 3, seq: 41, sent_nanos: 1_750_000_000_123_456_789 })
        );
        assert_eq!(parse_body("lt probe 7"), Some(Body::Probe));
    }

    #[test]
    fn loadtest_body_rejects_what_it_did_not_write() {
        for body in [
            "",
            "lt",
            "lt 1 2",
            "lt 1 2 3 4",
            "lt -1 2 3",
            "lt a 2 3",
            "LT 1 2 3",
            "x lt 1 2 3",
            "lt probe",
            "lt 1  2 3",
        ] {
            assert_eq!(parse_body(body), None, "{body:?}");
        }
    }

    #[test]
    fn loadtest_posted_body_reads_message_posted_events_only() {
        let event = |kind: &str| json!({ "data": { "channelEvents": { "cursor": "12", "kind": kind, "message": { "id": "$x", "body": "lt 0 1 2" } } } });
        assert_eq!(posted_body(&event("MESSAGE_POSTED")), Some("lt 0 1 2"));
        assert_eq!(posted_body(&event("MESSAGE_EDITED")), None);
        assert_eq!(posted_body(&json!({ "data": null, "errors": [{ "message": "no" }] })), None);
    }

    #[test]
    fn loadtest_seq_set_counts_and_intersects() {
        let mut set = SeqSet::default();
        assert!(set.insert(0));
        assert!(set.insert(64));
        assert!(set.insert(130));
        assert!(!set.insert(64));
        assert_eq!(set.len(), 3);
        assert_eq!(set.common(&seqs(&[0, 1, 130, 500])), 2);
        assert_eq!(seqs(&[500]).common(&set), 0);
    }

    #[test]
    fn loadtest_inbox_tells_fresh_from_duplicate_probe_and_foreign() {
        let plan = plan(&["--writers", "2", "--rate", "2", "--duration", "10"]).unwrap();
        assert_eq!(plan.max_messages_per_writer, 11);
        let mut inbox = Inbox::default();
        assert_eq!(inbox.take("lt 1 5 1000", 3500, &plan), Receipt::Fresh(Some(Duration::from_nanos(2500))));
        assert_eq!(inbox.take("lt 1 5 1000", 9000, &plan), Receipt::Duplicate);
        assert_eq!(inbox.take("lt 0 0 5000", 4000, &plan), Receipt::Fresh(None));
        assert_eq!(inbox.take("lt probe 0", 1, &plan), Receipt::Probe);
        assert_eq!(inbox.take("lt 2 0 1", 1, &plan), Receipt::Foreign, "writer out of range");
        assert_eq!(inbox.take("lt 0 11 1", 1, &plan), Receipt::Foreign, "more messages than a writer can send");
        assert_eq!(inbox.take("hello", 1, &plan), Receipt::Foreign);
        assert!(inbox.warmed);
        assert_eq!(inbox.duplicates, 1);
        assert_eq!(inbox.last_received_nanos, 4000);
    }

    #[test]
    fn loadtest_tally_counts_lost_duplicated_and_unacked() {
        // Writer 0 had 0, 1, 2 acknowledged (3 failed but was posted); writer 1 had 0.
        let acked = [seqs(&[0, 1, 2]), seqs(&[0])];
        let all = inbox(&[&[0, 1, 2, 3], &[0]]);
        let lossy = inbox(&[&[0, 2, 2, 0], &[]]);
        let never_connected = Inbox::default();
        let tally = tally(&acked, &[&all, &lossy, &never_connected]);
        assert_eq!(
            tally,
            Tally { deliveries_expected: 12, deliveries_received: 6, lost: 6, duplicated: 2, unacked_received: 1 }
        );
        assert_eq!(all.missing(&acked), 0);
        assert_eq!(lossy.missing(&acked), 2);
        assert_eq!(never_connected.missing(&acked), 4);
    }

    #[test]
    fn loadtest_latency_percentiles_in_milliseconds() {
        let mut micros = latency_histogram().unwrap();
        for ms in 1..=1000 {
            micros.record(ms * 1000).unwrap();
        }
        let latency = Latency::new(&micros);
        let close = |actual: f64, expected: f64| (actual - expected).abs() <= expected * 0.001;
        assert_eq!(latency.samples, 1000);
        assert!(close(latency.p50, 500.0), "{latency:?}");
        assert!(close(latency.p95, 950.0), "{latency:?}");
        assert!(close(latency.p99, 990.0), "{latency:?}");
        assert!(close(latency.max, 1000.0), "{latency:?}");
        assert!(close(latency.mean, 500.5), "{latency:?}");
        assert_eq!(Latency::new(&latency_histogram().unwrap()), Latency::default());
    }

    #[test]
    fn loadtest_report_rates_and_verdict() {
        let plan = plan(&["--subscribers", "2", "--writers", "2", "--rate", "4", "--duration", "10"]).unwrap();
        let acked = [seqs(&(0..20).collect::<Vec<_>>()), seqs(&(0..20).collect::<Vec<_>>())];
        let whole = inbox(&[&(0..20).collect::<Vec<_>>(), &(0..20).collect::<Vec<_>>()]);
        let mut late = inbox(&[&(0..20).collect::<Vec<_>>(), &(0..20).collect::<Vec<_>>()]);
        late.last_received_nanos = 1_000 + 20_000_000_000;
        let latencies = latency_histogram().unwrap();
        let report = |inboxes: &[&Inbox]| {
            Report::new(Outcome {
                plan: &plan,
                sent: 41,
                acked: &acked,
                inboxes,
                latencies: &latencies,
                negative_latencies: 0,
                errors: BTreeMap::new(),
                send_started_nanos: 1_000,
                send_elapsed: Duration::from_secs(10),
            })
        };

        let good = report(&[&whole, &late]);
        assert_eq!(good.messages_acked, 40);
        assert_eq!(good.tally.deliveries_expected, 80);
        assert_eq!(good.tally.lost, 0);
        assert_eq!(good.messages_per_s, 4.0);
        // 80 deliveries from the first send to the last delivery, 20 s later.
        assert_eq!(good.deliveries_per_s, 4.0);
        assert!(good.verdict().is_ok());

        let short = inbox(&[&(0..19).collect::<Vec<_>>(), &(0..20).collect::<Vec<_>>()]);
        let bad = report(&[&whole, &short]);
        assert_eq!(bad.tally.lost, 1);
        // The last delivery came before sending ended: the rate is over the sending time.
        assert_eq!(bad.deliveries_per_s, 7.9);
        assert_eq!(bad.verdict().unwrap_err().to_string(), "1 deliveries lost and 0 duplicated");
        let json = serde_json::to_value(&bad).unwrap();
        assert_eq!(json["lost"], 1);
        assert_eq!(json["deliveries_expected"], 80);
        assert_eq!(json["latency_ms"]["samples"], 0);
    }

    #[test]
    fn loadtest_plan_spreads_sockets_over_users_and_paces_writers() {
        let plan = plan(&["--subscribers", "25", "--per-user", "10", "--writers", "4", "--rate", "20"]).unwrap();
        assert_eq!(plan.subscriber_users, 3);
        assert_eq!(plan.period, Duration::from_millis(200));
        assert_eq!(plan.max_messages_per_writer, 51);
        assert!(self::plan(&["--rate", "0"]).is_err());
        assert!(self::plan(&["--duration", "0"]).is_err());
        assert!(self::plan(&["--grace", "-1"]).is_err());
        assert!(self::plan(&["--password", "short"]).is_err());
        assert!(self::plan(&["--subscribers", "0"]).is_err());
    }

    #[test]
    fn loadtest_websocket_url_follows_the_http_one() {
        assert_eq!(websocket_url("http://127.0.0.1:8080").unwrap(), "ws://127.0.0.1:8080/graphql/ws");
        assert_eq!(websocket_url("http://hub.example/og/").unwrap(), "ws://hub.example/og/graphql/ws");
        assert!(websocket_url("https://hub.example").is_err());
    }

    #[test]
    fn loadtest_help_warns_about_the_rate_limit() {
        let mut command = <crate::Cli as clap::CommandFactory>::command();
        let help = command.find_subcommand_mut("loadtest").expect("a loadtest subcommand").render_long_help();
        let help = help.to_string();
        assert!(help.contains("per-user mutation limit"), "{help}");
        assert!(help.contains("--per-user"), "{help}");
    }
}
