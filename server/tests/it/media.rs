//! Attachments over real HTTP, on local disk and in a real S3-compatible server (moto):
//! an image uploaded with metadata comes back without it, with its size; it is attached to
//! a message and served to those who may read the message, to nobody else; deleting the
//! message deletes the bytes; a file lying about its type, one over the limit (streamed or
//! declared), and a message with files where ATTACH_FILES is denied are refused. A 50 MB
//! upload over the limit leaves the server's memory where it was, and an acknowledged upload
//! survives `kill -9`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::federation::free_port;
use crate::shared::{guild_with_channel, join_by_invite};
use crate::support::Server;

/// CRC-32 (IEEE), for building PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A 3×2 red PNG carrying a text chunk and an EXIF chunk with a GPS-looking secret.
fn png_with_metadata() -> Vec<u8> {
    let (w, h) = (3u32, 2u32);
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    // Each row: filter byte 0, then red pixels.
    let row: Vec<u8> = std::iter::once(0).chain((0..w).flat_map(|_| [255, 0, 0])).collect();
    let raw: Vec<u8> = (0..h).flat_map(|_| row.clone()).collect();
    // zlib with one stored block.
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"tEXt", b"Comment\0taken at GPS 48.8584N 2.2945E"));
    png.extend(chunk(b"eXIf", b"MM\0*\0\0\0\x08GPS-SECRET"));
    png.extend(chunk(b"IDAT", &z));
    png.extend(chunk(b"IEND", b""));
    png
}

async fn upload(hub: &Server, token: &str, content_type: &str, name: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/media/upload?filename={name}", hub.url))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Sends only the head of an upload declaring `length` bytes, and reads the answer.
async fn declared_only(hub: &Server, token: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = hub.url.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /media/upload?filename=big.zip HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/zip\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn fetch(hub: &Server, token: &str, id: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = reqwest::Client::new().get(format!("{}/media/{id}", hub.url)).bearer_auth(token).send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.bytes().await.unwrap().to_vec())
}

const SEND: &str = "mutation($c: ID!, $b: String!, $a: [ID!]) { sendMessage(input: {channelId: $c, body: $b, attachments: $a}) { id attachments { id url previewUrl filename contentType size width height } } }";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The whole path, on the hub given: upload, strip, attach, serve, refuse, erase.
async fn attach_serve_and_erase(hub: &Server, gone: impl AsyncFn(&str) -> bool) {
    let ann = hub.register("ann").await;
    let bob = hub.register("bob").await;
    let eve = hub.register("eve").await;
    let (guild, chat) = guild_with_channel(hub, &ann, "G").await;
    join_by_invite(hub, &ann, &guild, &bob).await;

    let (status, up) = upload(hub, &ann, "image/png", "tower.png", png_with_metadata()).await;
    assert_eq!(status, 201, "{up}");
    assert_eq!(
        (up["contentType"].as_str(), up["width"].as_i64(), up["height"].as_i64()),
        (Some("image/png"), Some(3), Some(2))
    );
    let id = up["id"].as_str().unwrap().to_owned();
    // The uploader gets it back, without the metadata, and served so it cannot run as a page.
    let (status, headers, bytes) = fetch(hub, &ann, &id).await;
    assert_eq!(status, 200);
    assert!(bytes.starts_with(b"\x89PNG"), "still a PNG");
    assert!(!contains(&bytes, b"GPS"), "the EXIF and text chunks were stripped");
    assert_eq!(headers["content-type"], "image/png");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("sandbox"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-disposition"].to_str().unwrap().contains("tower.png"));
    assert_eq!(up["size"].as_u64(), Some(bytes.len() as u64));
    // A small JPEG preview is kept beside it.
    let r =
        reqwest::Client::new().get(format!("{}/media/{id}/preview", hub.url)).bearer_auth(&ann).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["content-type"].to_str().unwrap()), (200, "image/jpeg"));
    assert!(r.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]), "a JPEG");
    // Before it is attached, nobody else sees it.
    assert_eq!(fetch(hub, &bob, &id).await.0, 404);

    let sent = hub.ok(Some(&ann), SEND, json!({ "c": chat, "b": "the view", "a": [id] })).await;
    let message = sent["sendMessage"]["id"].as_str().unwrap().to_owned();
    let attached = &sent["sendMessage"]["attachments"][0];
    assert_eq!(attached["filename"], "tower.png");
    assert_eq!(attached["url"], format!("/media/{id}"));
    assert_eq!(attached["previewUrl"], format!("/media/{id}/preview"));
    // bob's read waits for his own writes, not ann's: ask until the timeline has her post.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let read = loop {
        let read = hub
            .ok(
                Some(&bob),
                "query($c: ID!) { channel(id: $c) { messages(last: 1) { nodes { attachments { id contentType width } } } } }",
                json!({ "c": chat }),
            )
            .await;
        if read["channel"]["messages"]["nodes"][0].is_object() || std::time::Instant::now() > deadline {
            break read;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        read["channel"]["messages"]["nodes"][0]["attachments"],
        json!([{ "id": id, "contentType": "image/png", "width": 3 }])
    );
    assert_eq!(fetch(hub, &bob, &id).await.0, 200, "a member reads it");
    assert_eq!(fetch(hub, &eve, &id).await.0, 404, "an outsider does not");
    // An upload goes with one message only, and only its uploader attaches it.
    let again = hub.gql(Some(&ann), SEND, json!({ "c": chat, "b": "again", "a": [id] })).await;
    assert!(again["errors"][0]["message"].as_str().unwrap().contains("already attached"), "{again}");
    let (_, theirs) = upload(hub, &bob, "image/png", "x.png", png_with_metadata()).await;
    let stolen = hub.gql(Some(&ann), SEND, json!({ "c": chat, "b": "mine", "a": [theirs["id"]] })).await;
    assert_eq!(stolen["errors"][0]["extensions"]["code"], "NOT_FOUND", "{stolen}");

    // Deleting the message deletes the bytes for real.
    hub.ok(Some(&ann), "mutation($m: ID!) { deleteMessage(id: $m) }", json!({ "m": message })).await;
    let end = Instant::now() + Duration::from_secs(10);
    while !gone(&id).await {
        assert!(Instant::now() < end, "the file of a deleted message is still stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fetch(hub, &ann, &id).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_local_disk_are_stripped_attached_served_to_readers_and_erased_with_their_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hub = Server::start(&data, "", &[]);
    let files = data.join("media").join("media");
    attach_serve_and_erase(&hub, async |id| !files.join(id).exists() && !files.join(format!("{id}.json")).exists())
        .await;
}

/// A moto S3 server on a free port, stopped when dropped.
struct Moto(Child, String);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto() -> Moto {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (PyPI moto[server]; scripts/ensure-services installs it)");
    let url = format!("http://127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "moto_server did not start on {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto(child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_an_s3_bucket_are_attached_served_and_erased_with_their_message() {
    let s3 = moto();
    let client = reqwest::Client::new();
    let made = client.put(format!("{}/uploads", s3.1)).send().await.unwrap();
    assert!(made.status().is_success(), "creating the bucket: {}", made.status());
    let dir = tempfile::tempdir().unwrap();
    let hub = Server::start(
        &dir.path().join("data"),
        "",
        &[
            ("OPENGUILD_API__MEDIA__S3_BUCKET", "uploads"),
            ("OPENGUILD_API__MEDIA__S3_ENDPOINT", &s3.1),
            ("OPENGUILD_API__MEDIA__S3_ACCESS_KEY_ID", "test"),
            ("OPENGUILD_API__MEDIA__S3_SECRET_ACCESS_KEY", "test"),
        ],
    );
    let bucket = format!("{}/uploads", s3.1);
    attach_serve_and_erase(&hub, async |id| {
        let r = reqwest::get(format!("{bucket}/media/{id}")).await.unwrap();
        r.status().as_u16() == 404
    })
    .await;
    assert!(!dir.path().join("data").join("media").join("media").exists(), "nothing was written to local disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lies_oversized_files_and_files_where_attaching_is_denied_are_refused_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hub = Server::start(&data, "", &[("OPENGUILD_API__MEDIA__MAX_UPLOAD_BYTES", "1048576")]);
    let ann = hub.register("ann").await;

    // Text that says it is a PNG.
    let (status, lie) = upload(&hub, &ann, "image/png", "cat.png", b"just some text, not an image".to_vec()).await;
    assert_eq!(status, 415, "{lie}");
    assert!(lie["errors"][0]["message"].as_str().unwrap().contains("says it is image/png"), "{lie}");
    // Something that starts like a PNG and is not one.
    let mut broken = png_with_metadata();
    broken.truncate(60);
    let (status, damaged) = upload(&hub, &ann, "image/png", "broken.png", broken).await;
    assert_eq!(status, 400, "{damaged}");
    assert!(damaged["errors"][0]["message"].as_str().unwrap().contains("image"), "{damaged}");
    // A PNG that says it is a JPEG.
    let (status, _) = upload(&hub, &ann, "image/jpeg", "cat.jpg", png_with_metadata()).await;
    assert_eq!(status, 415);
    // Declared over the limit: answered before a byte of the body is sent.
    let answer = declared_only(&hub, &ann, 2 * 1024 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("at most 1048576 bytes"), "{answer}");
    // A text file within the limit goes through, typed from its bytes.
    let (status, note) = upload(&hub, &ann, "text/plain", "note.txt", b"hello".to_vec()).await;
    assert_eq!((status, note["contentType"].as_str()), (201, Some("text/plain; charset=utf-8")), "{note}");
    let (_, headers, _) = fetch(&hub, &ann, note["id"].as_str().unwrap()).await;
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment"), "not shown inline");

    // 50 MB streamed with no declared length: cut off at the limit, memory flat.
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", hub.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_owned();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    let stream_upload = |megabytes: usize| {
        let chunks = futures::stream::iter((0..megabytes).map(|_| Ok::<_, std::io::Error>(vec![7u8; 1024 * 1024])));
        reqwest::Client::new()
            .post(format!("{}/media/upload?filename=huge.bin", hub.url))
            .bearer_auth(&ann)
            .header("Content-Type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
    };
    // Refused uploads warm up what any upload uses once (the file writer's blocking threads,
    // with their stacks and allocator arenas, in 2 MiB steps; how many depends on the load),
    // and then add nothing. Buffering a body would be 50 MB each, 400 MB for all eight.
    let mut grown = Vec::new();
    for _ in 0..8 {
        let before = rss();
        if let Ok(r) = stream_upload(50).await {
            // The server may answer before the client has sent it all, or close on it.
            assert_eq!(r.status().as_u16(), 413);
        }
        grown.push(rss().saturating_sub(before));
    }
    println!("server RSS growth (KiB) over eight refused 50 MB uploads: {grown:?}");
    assert!(
        grown.iter().all(|g| *g < 16 * 1024),
        "one refused 50 MB upload grew the server by 16 MiB or more: {grown:?} KiB"
    );
    assert!(grown.iter().sum::<u64>() < 32 * 1024, "eight refused 50 MB uploads grew the server by {grown:?} KiB");
    assert!(
        grown[5..].iter().sum::<u64>() < 8 * 1024,
        "the last three refused uploads still grew the server: {grown:?} KiB"
    );
    let leftovers: Vec<_> = std::fs::read_dir(data.join("media").join("media"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().contains("huge")), "{leftovers:?}");

    // Where @everyone may not attach files, a message with one is refused.
    let (guild, chat) = guild_with_channel(&hub, &ann, "G").await;
    let bob = hub.register("bob").await;
    join_by_invite(&hub, &ann, &guild, &bob).await;
    hub.ok(
        Some(&ann),
        "mutation($c: ID!) { setChannelOverwrite(channelId: $c, roleId: \"1111111111111111\", allow: [], deny: [ATTACH_FILES]) }",
        json!({ "c": chat }),
    )
    .await;
    let (_, file) = upload(&hub, &bob, "image/png", "p.png", png_with_metadata()).await;
    let refused = hub.gql(Some(&bob), SEND, json!({ "c": chat, "b": "look", "a": [file["id"]] })).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("ATTACH_FILES"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_upload_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hub = Server::start(&data, "", &[]);
    let ann = hub.register("ann").await;
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (status, up) = upload(&hub, &ann, "application/octet-stream", "data.bin", body.clone()).await;
    assert_eq!(status, 201, "{up}");
    drop(hub); // SIGKILL, right after the acknowledgement.
    let hub = Server::start(&data, "", &[]);
    let login =
        hub.ok(None, "mutation { login(handle: \"ann\", password: \"correct horse\") { token } }", json!({})).await;
    let ann = login["login"]["token"].as_str().unwrap();
    let (status, _, bytes) = fetch(&hub, ann, up["id"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(bytes == body, "the bytes came back changed ({} of {})", bytes.len(), body.len());
}
