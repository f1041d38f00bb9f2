//! The API's limits, and the token buckets behind its rate limits: in this process by
//! default, in Redis when a Redis URL is configured so a limit holds across every node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Every limit of the client API (the `[api]` section of the configuration).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiLimits {
    /// Deepest nesting of fields in one query.
    pub max_depth: usize,
    /// Highest complexity (fields, with connections weighted by page size) of one query.
    pub max_complexity: usize,
    /// Most field selections (aliases included) in one document, counted before validation.
    pub max_fields: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most operations in one batched request.
    pub max_batch: usize,
    /// Mutations per second per user (token bucket refill), and the bucket's size.
    pub mutations_per_second: f64,
    pub mutation_burst: f64,
    /// Failed logins allowed per account and per address before they wait, and how many
    /// seconds it takes to earn one more try.
    pub login_failures: f64,
    pub login_failure_refill_seconds: f64,
    /// New accounts per address before registering waits, and seconds to earn one more;
    /// and hub-wide, a burst and a steady rate per second.
    pub registrations_per_address: f64,
    pub registration_refill_seconds: f64,
    pub registration_burst: f64,
    pub registrations_per_second: f64,
    /// Open HTTP connections in all and per client address (websockets included), and the
    /// seconds a client has to send a request's headers.
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub header_read_timeout_seconds: u64,
    /// Requests per second a peer hub may make (transactions, backfill, pulls), and the burst.
    pub federation_requests_per_second: f64,
    pub federation_request_burst: f64,
    /// Websocket connections per user, and subscriptions per connection.
    pub max_connections_per_user: usize,
    pub max_subscriptions_per_connection: usize,
    /// Seconds a websocket may take to send `connection_init`.
    pub handshake_timeout_seconds: u64,
    /// Seconds a websocket without subscriptions may stay silent before it is closed.
    pub idle_timeout_seconds: u64,
    /// How long a read waits for the projections to reach the reader's last write.
    pub read_your_writes_ms: u64,
    /// Days a session stays valid.
    pub session_days: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 5_000,
            max_fields: 500,
            max_body_bytes: 256 * 1024,
            max_batch: 10,
            mutations_per_second: 10.0,
            mutation_burst: 30.0,
            login_failures: 5.0,
            login_failure_refill_seconds: 60.0,
            registrations_per_address: 10.0,
            registration_refill_seconds: 60.0,
            registration_burst: 60.0,
            registrations_per_second: 1.0,
            max_connections: 10_000,
            max_connections_per_address: 512,
            header_read_timeout_seconds: 10,
            federation_requests_per_second: 50.0,
            federation_request_burst: 200.0,
            max_connections_per_user: 16,
            max_subscriptions_per_connection: 100,
            handshake_timeout_seconds: 10,
            idle_timeout_seconds: 300,
            read_your_writes_ms: 2_000,
            session_days: 30,
        }
    }
}

/// A token bucket's shape: `burst` tokens, refilled at `per_second`.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// Takes tokens from named buckets. Refusals say how long to wait.
pub enum Limiter {
    Local(Mutex<HashMap<String, (f64, Instant)>>),
    Redis { conn: redis::aio::ConnectionManager, script: redis::Script },
}

/// A bucket is empty: try again after this long.
#[derive(Debug, Clone, Copy)]
pub struct Exhausted {
    pub retry_after: Duration,
}

/// Token bucket in Redis: KEYS[1] the bucket; ARGV rate per ms, burst, cost, peek (1 = look
/// without taking). Stores tokens and the time they were counted; the clock is Redis's own,
/// so nodes with skewed clocks agree. Returns 0 when taken, else the milliseconds to wait.
const BUCKET_LUA: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local rate, burst, cost, peek = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate)
if tokens < cost then
  return math.ceil((cost - tokens) / rate)
end
if peek == 0 then
  redis.call('HSET', KEYS[1], 'tokens', tokens - cost, 'at', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
end
return 0
";

impl Limiter {
    pub fn local() -> Self {
        Self::Local(Mutex::default())
    }

    /// Buckets shared by every node through the Redis at `url`.
    pub async fn redis(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let conn = redis::aio::ConnectionManager::new(client).await?;
        Ok(Self::Redis { conn, script: redis::Script::new(BUCKET_LUA) })
    }

    /// Takes one token from `key`'s bucket.
    pub async fn take(&self, key: &str, rate: Rate) -> Result<(), Exhausted> {
        self.spend(key, rate, false).await
    }

    /// Whether `key`'s bucket has a token, without taking it.
    pub async fn peek(&self, key: &str, rate: Rate) -> Result<(), Exhausted> {
        self.spend(key, rate, true).await
    }

    async fn spend(&self, key: &str, rate: Rate, peek: bool) -> Result<(), Exhausted> {
        match self {
            Self::Local(buckets) => {
                let now = Instant::now();
                let mut buckets = buckets.lock().unwrap_or_else(|p| p.into_inner());
                if buckets.len() > 100_000 {
                    // Forget full buckets so the map cannot grow without bound.
                    buckets.retain(|_, (tokens, at)| {
                        *tokens + now.duration_since(*at).as_secs_f64() * rate.per_second < rate.burst
                    });
                }
                let (tokens, at) = buckets.entry(key.to_owned()).or_insert((rate.burst, now));
                let available = (*tokens + now.duration_since(*at).as_secs_f64() * rate.per_second).min(rate.burst);
                if available < 1.0 {
                    return Err(Exhausted {
                        retry_after: Duration::from_secs_f64((1.0 - available) / rate.per_second),
                    });
                }
                if !peek {
                    *tokens = available - 1.0;
                    *at = now;
                }
                Ok(())
            }
            Self::Redis { conn, script } => {
                let mut conn = conn.clone();
                let wait: Result<u64, _> = script
                    .key(format!("openguild:bucket:{key}"))
                    .arg(rate.per_second / 1000.0)
                    .arg(rate.burst)
                    .arg(1)
                    .arg(i32::from(peek))
                    .invoke_async(&mut conn)
                    .await;
                match wait {
                    Ok(0) => Ok(()),
                    Ok(ms) => Err(Exhausted { retry_after: Duration::from_millis(ms) }),
                    Err(e) => {
                        // A limiter that is down must not take the API down with it.
                        tracing::warn!(error = %e, "rate limiter: Redis unreachable; letting the request through");
                        Ok(())
                    }
                }
            }
        }
    }
}
