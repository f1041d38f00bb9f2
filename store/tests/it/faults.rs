//! Bad input and faults: files that are not ours, corrupt or newer; a second writer; an
//! unreachable PostgreSQL; events from outside that do not verify; erasure that must leave
//! no trace.

use openguild_domain::event::{KeyRing, RawEvent};
use openguild_store::{ExpectedVersion, Options, StoreError};
use sqlx::Connection;

use crate::support::{Backend, Chain, key};

fn open_error(result: Result<std::sync::Arc<dyn openguild_store::EventStore>, StoreError>) -> String {
    match result {
        Ok(_) => panic!("the store opened"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let text = b"these are my notes, not a database at all, please keep them";
    std::fs::write(&path, text).unwrap();
    let err = open_error(openguild_store::open(&path.display().to_string(), Options::default()).await);
    assert!(err.contains(&path.display().to_string()), "names the file: {err}");
    assert!(err.contains("not a SQLite database"), "{err}");
    assert!(std::fs::read(&path).unwrap() == text, "nothing was changed");
}

#[tokio::test]
async fn another_applications_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE users (name TEXT)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = open_error(openguild_store::open(&path.display().to_string(), Options::default()).await);
    assert!(err.contains("another application") && err.contains("users"), "{err}");
    assert!(std::fs::read(&path).unwrap() == before, "nothing was changed");
}

#[tokio::test]
async fn a_store_of_a_newer_schema_is_refused() {
    let backend = Backend::sqlite().await;
    let path = backend.url();
    backend.store.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = open_error(openguild_store::open(&path, Options::default()).await);
    assert!(err.contains("newer") && err.contains(&path), "{err}");
}

#[tokio::test]
async fn a_corrupt_store_is_refused_at_start_naming_the_file() {
    let backend = Backend::sqlite().await;
    let path = backend.url();
    let mut chain = Chain::new(1);
    let events = chain.next(50);
    backend.store.append(&chain.stream, ExpectedVersion::NoStream, events).await.unwrap();
    backend.store.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    // Scribble over the schema on page 1 (the 100-byte header stays intact).
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(100).take(3000) {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = open_error(openguild_store::open(&path, Options::default()).await);
    assert!(err.contains(&path), "names the file: {err}");
    assert!(err.contains("corrupt") || err.contains("malformed"), "{err}");
}

#[tokio::test]
async fn a_second_process_cannot_write_to_the_same_file() {
    let backend = Backend::sqlite().await;
    let err = open_error(openguild_store::open(&backend.url(), Options::default()).await);
    assert!(err.contains("another openguild process"), "{err}");
    backend.finish().await;
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error() {
    let err = open_error(openguild_store::open("postgres://postgres@127.0.0.1:9/test", Options::default()).await);
    assert!(err.contains("cannot open the PostgreSQL event store") && err.contains("PostgreSQL running"), "{err}");
}

async fn imports_verify_before_writing(backend: Backend) {
    let mut chain = Chain::new(2);
    let good = chain.next(2);
    let mut tampered: Vec<RawEvent> = good.iter().map(|e| e.raw.clone()).collect();
    let body = tampered[1].body.as_mut().unwrap();
    let last = body.len() - 1;
    body[last] ^= 1;
    let keys = KeyRing::default().with_own(&key());
    let err = openguild_store::import(&*backend.store, &chain.stream, ExpectedVersion::NoStream, tampered, &keys)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains(&good[1].event.id.to_string()), "names the event: {err}");
    assert_eq!(backend.store.head_position().await.unwrap(), 0, "nothing was written");
    let strangers = KeyRing::default();
    let raws: Vec<RawEvent> = good.iter().map(|e| e.raw.clone()).collect();
    let err =
        openguild_store::import(&*backend.store, &chain.stream, ExpectedVersion::NoStream, raws.clone(), &strangers)
            .await
            .unwrap_err();
    assert!(err.to_string().contains("unknown key"), "{err}");
    openguild_store::import(&*backend.store, &chain.stream, ExpectedVersion::NoStream, raws, &keys).await.unwrap();
    assert_eq!(backend.store.head_position().await.unwrap(), 2);
    backend.finish().await;
}

#[tokio::test]
async fn sqlite_imports_verify_before_writing() {
    imports_verify_before_writing(Backend::sqlite().await).await;
}

#[tokio::test]
async fn postgres_imports_verify_before_writing() {
    imports_verify_before_writing(Backend::postgres().await).await;
}

const SECRET: &str = "erase-me-7f3a9c-this-text-must-not-survive-erasure";

/// After erasure the text is in neither the database file nor its WAL.
#[tokio::test]
async fn sqlite_erasure_leaves_no_trace_in_the_files() {
    let backend = Backend::sqlite().await;
    let path = backend.url();
    let mut chain = Chain::new(3);
    let mut events = chain.next(20);
    let victim = chain.next_with_text(SECRET);
    events.push(victim.clone());
    events.extend(chain.next(20));
    backend.store.append(&chain.stream, ExpectedVersion::NoStream, events).await.unwrap();
    let files = || {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| std::fs::read(format!("{path}{suffix}")).ok())
            .any(|bytes| contains(&bytes, SECRET.as_bytes()))
    };
    assert!(files(), "the text is on disk before erasure (the test can see it)");
    assert!(backend.store.erase_body(&victim.event.id).await.unwrap());
    assert!(!files(), "the text is still somewhere in the database files");
    backend.store.close().await;
    let reopened = openguild_store::open(&path, Options::default()).await.unwrap();
    assert_eq!(reopened.get(&victim.event.id).await.unwrap().unwrap().event.body, None);
    reopened.close().await;
    drop(backend);
}

/// After erasure no row of any table holds the text.
#[tokio::test]
async fn postgres_erasure_leaves_no_trace_in_the_tables() {
    let backend = Backend::postgres().await;
    let mut chain = Chain::new(3);
    let victim = chain.next_with_text(SECRET);
    backend.store.append(&chain.stream, ExpectedVersion::NoStream, vec![victim.clone()]).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&backend.url()).await.unwrap();
    assert_eq!(rows_holding(&mut conn, SECRET).await, 1, "the text is there before erasure");
    assert!(backend.store.erase_body(&victim.event.id).await.unwrap());
    assert_eq!(rows_holding(&mut conn, SECRET).await, 0);
    conn.close().await.unwrap();
    backend.finish().await;
}

async fn rows_holding(conn: &mut sqlx::PgConnection, text: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE position($1 IN core) > 0 OR position($1 IN COALESCE(body, '')) > 0 \
         OR position($1 IN signatures) > 0",
    )
    .bind(text.as_bytes())
    .fetch_one(conn)
    .await
    .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `events verify` finds an event whose bytes were altered directly in the database, and
/// names it; an attacker who also fixes up the id is caught by the signature.
#[tokio::test]
async fn verify_names_an_event_altered_in_the_database() {
    use openguild_store::verify::{Broken, verify_all};
    let backend = Backend::sqlite().await;
    let path = backend.url();
    let mut chain = Chain::new(5);
    let events = chain.next(30);
    backend.store.append(&chain.stream, ExpectedVersion::NoStream, events.clone()).await.unwrap();
    let keys = KeyRing::default().with_own(&key());
    let ok = verify_all(&*backend.store, &keys, None, |_| {}).await.unwrap();
    assert_eq!((ok.events, ok.streams), (30, 1));
    backend.store.close().await;

    // Flip a byte of the 12th event's body.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await.unwrap();
    let mut body = events[11].raw.body.clone().unwrap();
    body[5] ^= 0x20;
    sqlx::query("UPDATE events SET body = ? WHERE position = 12").bind(&body).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let store = openguild_store::open(&path, Options::default()).await.unwrap();
    let err = verify_all(&*store, &keys, None, |_| {}).await.unwrap_err();
    assert!(matches!(err, Broken::Unreadable { position: 12, .. }), "{err}");
    assert!(err.to_string().contains("content hash"), "{err}");
    store.close().await;

    // Rewrite the 20th event's core and give it the matching id: the signature catches it.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await.unwrap();
    sqlx::query("UPDATE events SET body = ? WHERE position = 12")
        .bind(events[11].raw.body.clone().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    let forged = chain.sign(20, Some(events[18].event.id), "forged by someone without the key");
    let core = forged.raw.core.clone();
    let id = openguild_domain::event::hash(openguild_domain::event::context::EVENT_ID, &core);
    sqlx::query("UPDATE events SET core = ?, id = ?, body = ? WHERE position = 20")
        .bind(&core)
        .bind(&id[..])
        .bind(forged.raw.body.clone().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let store = openguild_store::open(&path, Options::default()).await.unwrap();
    let err = verify_all(&*store, &keys, None, |_| {}).await.unwrap_err();
    // The stored signature was made for the original bytes.
    assert!(matches!(err, Broken::Event { position: 20, .. }), "{err}");
    assert!(err.to_string().contains("bad signature"), "{err}");
    store.close().await;
    drop(backend);
}

/// A TCP proxy to PostgreSQL that can be cut (every connection dropped, new ones refused)
/// and restored: the network failing between a node and its database.
struct Proxy {
    addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    async fn start(target: &'static str) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (up2, gen2) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !up2.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let (up3, gen3) = (up2.clone(), gen2.clone());
                let born = gen3.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let cut = async {
                        while up3.load(Ordering::SeqCst) && gen3.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, () = cut => {} }
                });
            }
        });
        Proxy { addr, up, generation }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The live subscription of a node whose database link fails keeps retrying, and when the
/// link is back it delivers every event written meanwhile, once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_survives_losing_postgres_and_misses_nothing() {
    use futures::StreamExt;
    let database = crate::support::fresh_database().await;
    let direct = openguild_store::open(&crate::support::database_url(&database), Options::default()).await.unwrap();
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let via_proxy = format!("postgres://postgres@{}/{database}", proxy.addr);
    let node = openguild_store::open(&via_proxy, Options::default()).await.unwrap();
    let mut feed = openguild_store::subscribe_all(node.clone(), 0);

    let mut chain = Chain::new(60);
    let first = chain.next(5);
    direct.append(&chain.stream, ExpectedVersion::NoStream, first).await.unwrap();
    for _ in 0..5 {
        feed.next().await.unwrap().unwrap();
    }
    proxy.cut();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Written while the node cannot reach the database.
    let during = chain.next(7);
    direct.append(&chain.stream, ExpectedVersion::Exact(5), during).await.unwrap();
    let err = node.head_position().await;
    assert!(err.is_err(), "the node really is cut off");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    proxy.restore();
    let mut seen = Vec::new();
    for _ in 0..7 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), feed.next())
            .await
            .expect("the subscription came back")
            .unwrap()
            .unwrap();
        seen.push(e.position);
    }
    assert_eq!(seen, (6..=12).collect::<Vec<u64>>(), "every event written meanwhile, once, in order");
    node.close().await;
    direct.close().await;
    crate::support::drop_database(&database).await;
}
