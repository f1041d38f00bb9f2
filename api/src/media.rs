//! Uploaded files: `POST /media/upload` streams a body into object storage (a directory
//! under the data dir, or an S3-compatible bucket, through `object_store`), `GET /media/{id}`
//! serves it to those who may see the message it is attached to, and a message's erasure
//! deletes its files for real.
//!
//! An upload is checked while it streams: a declared length over the limit is refused before
//! a byte is read, and a body that grows past it is cut off and its partial upload aborted
//! (413). The type is sniffed from the first bytes and a client that claims another is
//! refused (415). Images are held whole (they are small, and bounded on their own) so their
//! metadata — EXIF with its GPS position, comments, colour profiles' text — can be stripped
//! and their size read before they are stored. Beside each file, `<id>.json` records who
//! uploaded it and what it is; `sendMessage` copies that into the signed event.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use openguild_domain::body::Attachment;
use openguild_domain::{MediaId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Api;
use crate::commands::random16;
use crate::errors::ApiError;
use crate::http::{Caller, viewer_of};

/// Where uploads are kept and how large they may be (the `[api.media]` section).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    /// Directory for uploads on local disk; empty: `media` under the data directory.
    pub dir: String,
    /// An S3-compatible bucket to keep uploads in instead of the local disk.
    pub s3_bucket: Option<String>,
    /// The bucket's endpoint, e.g. `https://s3.eu-central-1.amazonaws.com` or a MinIO URL.
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// The largest file accepted, in bytes.
    pub max_upload_bytes: u64,
    /// The largest image accepted, in bytes: an image is held in memory while its metadata
    /// is stripped.
    pub max_image_bytes: u64,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            dir: String::new(),
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            max_upload_bytes: 25 * 1024 * 1024,
            max_image_bytes: 20 * 1024 * 1024,
        }
    }
}

/// What is known of an upload, kept beside its bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MediaMeta {
    pub owner: UserId,
    pub attachment: Attachment,
}

/// The store uploads go to.
pub struct Media {
    store: Arc<dyn ObjectStore>,
    settings: MediaSettings,
    part_bytes: usize,
}

/// How much of a body is read before its type is decided.
const SNIFF_BYTES: usize = 8 * 1024;
/// The part size of a streamed upload, and so what it holds in memory: S3's smallest for a
/// bucket; less for local disk, where parts are only writes to one file.
const S3_PART_BYTES: usize = 5 * 1024 * 1024;
const DISK_PART_BYTES: usize = 256 * 1024;

impl Media {
    /// Opens the configured store: the bucket if one is named, else `dir`.
    pub fn open(settings: &MediaSettings) -> Result<Self, ApiError> {
        let store: Arc<dyn ObjectStore> = match &settings.s3_bucket {
            Some(bucket) => {
                let mut b =
                    object_store::aws::AmazonS3Builder::new().with_bucket_name(bucket).with_region(&settings.s3_region);
                if let Some(endpoint) = &settings.s3_endpoint {
                    b = b.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                if let (Some(id), Some(secret)) = (&settings.s3_access_key_id, &settings.s3_secret_access_key) {
                    b = b.with_access_key_id(id).with_secret_access_key(secret);
                }
                Arc::new(b.build().map_err(|e| ApiError::invalid("api.media.s3_bucket", e))?)
            }
            None => {
                if settings.dir.is_empty() {
                    return Err(ApiError::invalid("api.media.dir", "name a directory for uploads"));
                }
                std::fs::create_dir_all(&settings.dir)
                    .map_err(|e| ApiError::invalid("api.media.dir", format!("{}: {e}", settings.dir)))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&settings.dir)
                        .map_err(|e| ApiError::invalid("api.media.dir", e))?,
                )
            }
        };
        let part_bytes = if settings.s3_bucket.is_some() { S3_PART_BYTES } else { DISK_PART_BYTES };
        Ok(Self { store, settings: settings.clone(), part_bytes })
    }

    fn bytes_path(id: &MediaId) -> Path {
        Path::from(format!("media/{id}"))
    }

    fn meta_path(id: &MediaId) -> Path {
        Path::from(format!("media/{id}.json"))
    }

    fn preview_path(id: &MediaId) -> Path {
        Path::from(format!("media/{id}.preview"))
    }

    /// What is known of upload `id`, if it exists.
    pub async fn meta(&self, id: &MediaId) -> Result<Option<MediaMeta>, ApiError> {
        match self.store.get(&Self::meta_path(id)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(ApiError::internal)?;
                Ok(Some(serde_json::from_slice(&bytes).map_err(ApiError::internal)?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ApiError::internal(format!("media store: {e}"))),
        }
    }

    /// Deletes an upload's bytes and record (nothing if they are already gone).
    pub async fn erase(&self, id: &MediaId) -> Result<(), ApiError> {
        for path in [Self::bytes_path(id), Self::preview_path(id), Self::meta_path(id)] {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(ApiError::internal(format!("media store: deleting {path}: {e}"))),
            }
        }
        Ok(())
    }
}

/// Why an upload was refused, with its HTTP status.
struct Refused(StatusCode, ApiError);

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        let status = match e.code {
            "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
            "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
            "FORBIDDEN" => StatusCode::FORBIDDEN,
            "NOT_FOUND" => StatusCode::NOT_FOUND,
            "INTERNAL" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Refused(status, e)
    }
}

impl From<openguild_projections::ProjectionError> for Refused {
    fn from(e: openguild_projections::ProjectionError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let Refused(status, e) = self;
        (status, axum::Json(json!({ "errors": [{ "message": e.message, "extensions": { "code": e.code } }] })))
            .into_response()
    }
}

fn too_large(limit: u64, what: &str) -> Refused {
    Refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::new("TOO_LARGE", format!("{what} may be at most {limit} bytes; send a smaller file")),
    )
}

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    filename: Option<String>,
}

/// `POST /media/upload[?filename=…]`: the raw body is the file.
pub(crate) async fn upload(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Response {
    match receive(&api, &headers, q.filename, body).await {
        Ok(meta) => {
            let a = &meta.attachment;
            let answer = json!({
                "id": a.id.to_string(),
                "url": format!("/media/{}", a.id),
                "size": a.size,
                "contentType": a.content_type,
                "filename": a.filename,
                "width": a.width,
                "height": a.height,
            });
            (StatusCode::CREATED, axum::Json(answer)).into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

async fn receive(api: &Api, headers: &HeaderMap, filename: Option<String>, body: Body) -> Result<MediaMeta, Refused> {
    let user = match viewer_of(api, headers).await? {
        Some(Caller::User(v)) => v.user,
        Some(Caller::Service(_)) => {
            return Err(ApiError::forbidden("uploads are a person's; use a session token, not a service token").into());
        }
        None => return Err(ApiError::login_required().into()),
    };
    api.admit_write(&format!("mutation:{user}")).await?;
    let media = api.media.as_ref().ok_or_else(|| ApiError::new("UNAVAILABLE", "this hub stores no uploads"))?;
    let limit = media.settings.max_upload_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit, "a file"));
    }
    let claimed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v != "application/octet-stream");
    let filename = clean_filename(filename.as_deref());

    let mut frames = body.into_data_stream();
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
    let mut ended = false;
    while head.len() < SNIFF_BYTES {
        match frames.next().await {
            Some(Ok(chunk)) => {
                head.extend_from_slice(&chunk);
                if head.len() as u64 > limit {
                    return Err(too_large(limit, "a file"));
                }
            }
            Some(Err(e)) => return Err(ApiError::invalid("body", format!("the upload broke off: {e}")).into()),
            None => {
                ended = true;
                break;
            }
        }
    }
    if head.is_empty() {
        return Err(ApiError::invalid("body", "the file is empty").into());
    }
    let content_type = sniff(&head, claimed.as_deref())?;
    let id = MediaId::from_bytes(random16());
    let path = Media::bytes_path(&id);
    let mut hasher = blake3::Hasher::new();
    let (size, width, height) = if is_image(&content_type) {
        // Whole, to strip what it says about where and by what it was taken.
        let image_limit = media.settings.max_image_bytes.min(limit);
        let mut all = head;
        if !ended {
            while let Some(chunk) = frames.next().await {
                let chunk = chunk.map_err(|e| ApiError::invalid("body", format!("the upload broke off: {e}")))?;
                all.extend_from_slice(&chunk);
                if all.len() as u64 > image_limit {
                    return Err(too_large(image_limit, "an image"));
                }
            }
        }
        let clean = strip_metadata(&content_type, all.into())?;
        let size = imagesize::blob_size(&clean).ok();
        if let Some(preview) = preview_of(&content_type, clean.clone()).await? {
            media
                .store
                .put(&Media::preview_path(&id), PutPayload::from(preview))
                .await
                .map_err(|e| ApiError::internal(format!("media store: {e}")))?;
        }
        hasher.update(&clean);
        let len = clean.len() as u64;
        media
            .store
            .put(&path, PutPayload::from_bytes(clean))
            .await
            .map_err(|e| ApiError::internal(format!("media store: {e}")))?;
        (len, size.map(|s| s.width as u32), size.map(|s| s.height as u32))
    } else {
        let upload =
            media.store.put_multipart(&path).await.map_err(|e| ApiError::internal(format!("media store: {e}")))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, media.part_bytes);
        let mut size = head.len() as u64;
        hasher.update(&head);
        writer.write(&head);
        if !ended {
            while let Some(chunk) = frames.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(ApiError::invalid("body", format!("the upload broke off: {e}")).into());
                    }
                };
                size += chunk.len() as u64;
                if size > limit {
                    let _ = writer.abort().await;
                    return Err(too_large(limit, "a file"));
                }
                hasher.update(&chunk);
                writer.wait_for_capacity(2).await.map_err(|e| ApiError::internal(format!("media store: {e}")))?;
                writer.put(chunk);
            }
        }
        writer.finish().await.map_err(|e| ApiError::internal(format!("media store: {e}")))?;
        (size, None, None)
    };
    let meta = MediaMeta {
        owner: user,
        attachment: Attachment { id, filename, content_type, size, width, height, hash: *hasher.finalize().as_bytes() },
    };
    // The record last: an upload is acknowledged once both are stored.
    let record = serde_json::to_vec(&meta).map_err(ApiError::internal)?;
    media
        .store
        .put(&Media::meta_path(&id), PutPayload::from(record))
        .await
        .map_err(|e| ApiError::internal(format!("media store: {e}")))?;
    crate::metrics::uploaded(size);
    Ok(meta)
}

/// The type of a file from its first bytes; a client's claim that disagrees is refused.
fn sniff(head: &[u8], claimed: Option<&str>) -> Result<String, Refused> {
    let lying = |actual: &str| {
        Refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::new(
                "INVALID_INPUT",
                format!(
                    "the upload says it is {}, but its bytes are {actual}; send it with its real Content-Type",
                    claimed.unwrap_or_default()
                ),
            ),
        )
    };
    match infer::get(head).map(|t| t.mime_type().to_owned()) {
        Some(found) => match claimed {
            Some(c) if c != found => Err(lying(&found)),
            _ => Ok(found),
        },
        None => {
            let text =
                std::str::from_utf8(head).is_ok() || std::str::from_utf8(&head[..head.len().saturating_sub(3)]).is_ok();
            match claimed {
                Some(c) if c.starts_with("text/") && text => Ok("text/plain; charset=utf-8".to_owned()),
                Some(c) if !c.starts_with("text/") && !c.starts_with("application/") => {
                    Err(lying(if text { "text" } else { "of no known type" }))
                }
                _ if text => Ok("text/plain; charset=utf-8".to_owned()),
                _ => Ok("application/octet-stream".to_owned()),
            }
        }
    }
}

/// The longest side of a preview, in pixels.
const PREVIEW_SIDE: u32 = 320;

/// A small JPEG of a JPEG or PNG image, decoded within bounds (no more than 64 MiB of pixels,
/// 16,384 pixels a side) on a blocking thread. An image that does not decode is refused.
async fn preview_of(content_type: &str, bytes: bytes::Bytes) -> Result<Option<Vec<u8>>, Refused> {
    let format = match content_type {
        "image/jpeg" => image::ImageFormat::Jpeg,
        "image/png" => image::ImageFormat::Png,
        _ => return Ok(None),
    };
    let made = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(16_384);
        limits.max_image_height = Some(16_384);
        limits.max_alloc = Some(64 * 1024 * 1024);
        reader.limits(limits);
        let image = reader.decode().map_err(|e| e.to_string())?;
        // Shrunk to fit, never grown.
        let (w, h) = (image.width().min(PREVIEW_SIDE), image.height().min(PREVIEW_SIDE));
        let small = image.thumbnail(w, h).to_rgb8();
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&small)
            .map_err(|e| e.to_string())?;
        Ok(out)
    })
    .await
    .map_err(ApiError::internal)?;
    match made {
        Ok(preview) => Ok(Some(preview)),
        Err(why) => {
            Err(ApiError::invalid("body", format!("the image cannot be decoded ({why}); send a whole image")).into())
        }
    }
}

fn is_image(content_type: &str) -> bool {
    matches!(content_type, "image/jpeg" | "image/png" | "image/webp" | "image/gif")
}

/// An image without its metadata: JPEG's EXIF (with any GPS position) and comments, PNG's
/// and WebP's EXIF and text. GIFs carry none worth the name.
fn strip_metadata(content_type: &str, bytes: bytes::Bytes) -> Result<bytes::Bytes, Refused> {
    use img_parts::ImageEXIF;
    let broken = |e: img_parts::Error| ApiError::invalid("body", format!("the image is damaged: {e}"));
    Ok(match content_type {
        "image/jpeg" => {
            let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(bytes).map_err(broken)?;
            jpeg.set_exif(None);
            jpeg.segments_mut().retain(|s| {
                // APP1 (EXIF, XMP), APP13 (IPTC) and comments; APP0 (JFIF) and APP2 (ICC) stay.
                !matches!(
                    s.marker(),
                    img_parts::jpeg::markers::APP1 | img_parts::jpeg::markers::APP13 | img_parts::jpeg::markers::COM
                )
            });
            jpeg.encoder().bytes()
        }
        "image/png" => {
            let mut png = img_parts::png::Png::from_bytes(bytes).map_err(broken)?;
            png.set_exif(None);
            png.chunks_mut().retain(|c| !matches!(&c.kind(), b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf" | b"tIME"));
            png.encoder().bytes()
        }
        "image/webp" => {
            let mut webp = img_parts::webp::WebP::from_bytes(bytes).map_err(broken)?;
            webp.set_exif(None);
            webp.encoder().bytes()
        }
        _ => bytes,
    })
}

/// A file name fit to show and to send back in `Content-Disposition`: no path, no quotes
/// or control characters, at most 200 characters.
fn clean_filename(given: Option<&str>) -> String {
    let name = given.unwrap_or("file").rsplit(['/', '\\']).next().unwrap_or_default();
    let name: String =
        name.chars().filter(|c| !c.is_control() && !matches!(c, '"' | ';')).take(200).collect::<String>();
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." { "file".to_owned() } else { name.to_owned() }
}

/// `GET /media/{id}`: the file, to its uploader and to whoever may read the message it is
/// attached to; to anyone else it does not exist.
pub(crate) async fn download(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    match serve(&api, &headers, &id, false).await {
        Ok(r) => r,
        Err(refused) => refused.into_response(),
    }
}

/// `GET /_openguild/federation/v1/media/{id}` (signed): a file uploaded here, to a peer hub
/// with members in the guild (or DM) of the message it is attached to.
pub(crate) async fn for_peer(
    State(api): State<Arc<Api>>,
    UrlPath(id): UrlPath<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let peer = match api.peer_request("GET", &uri, &headers, b"").await {
        Ok(peer) => peer,
        Err(response) => return response,
    };
    let not_found = || Refused::from(ApiError::not_found(format!("no file {id} here for {peer}")));
    let serve = async {
        let id: MediaId = id.parse().map_err(|_| not_found())?;
        let media = api.media.as_ref().ok_or_else(not_found)?;
        media.meta(&id).await?.filter(|m| m.owner.server() == api.server).ok_or_else(not_found)?;
        let (_, channel) = openguild_projections::queries::attachment_message(api.projections.db(), &id)
            .await?
            .ok_or_else(not_found)?;
        let guild = api.commands.guild_of(channel).await.map_err(|_| not_found())?;
        let cell = api.commands.guild_cell(guild).await.map_err(|_| not_found())?;
        if !cell.lock().await.members.keys().any(|u| u.server() == peer) {
            return Err(not_found());
        }
        let found = media.store.get(&Media::bytes_path(&id)).await.map_err(|_| not_found())?;
        Ok::<_, Refused>(Body::from_stream(found.into_stream()).into_response())
    };
    match serve.await {
        Ok(r) => r,
        Err(refused) => refused.into_response(),
    }
}

/// `GET /media/{id}/preview`: a JPEG image's or PNG image's small JPEG preview, to the same
/// people as the file.
pub(crate) async fn preview(State(api): State<Arc<Api>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Response {
    match serve(&api, &headers, &id, true).await {
        Ok(r) => r,
        Err(refused) => refused.into_response(),
    }
}

async fn serve(api: &Api, headers: &HeaderMap, id: &str, preview: bool) -> Result<Response, Refused> {
    let user = match viewer_of(api, headers).await? {
        Some(Caller::User(v)) => v.user,
        Some(Caller::Service(_)) => return Err(ApiError::forbidden("files are served to people").into()),
        None => return Err(ApiError::login_required().into()),
    };
    let not_found = || Refused::from(ApiError::not_found(format!("no file {id}, or you cannot see it")));
    let id: MediaId = id.parse().map_err(|_| not_found())?;
    let media = api.media.as_ref().ok_or_else(not_found)?;
    let meta = match media.meta(&id).await? {
        Some(meta) => {
            if meta.owner != user && !api.may_see_attachment(&user, &id).await? {
                return Err(not_found());
            }
            meta
        }
        // Attached by someone of another hub: fetched from there once, for a reader.
        None if api.may_see_attachment(&user, &id).await? => api.fetch_remote(&id).await?.ok_or_else(not_found)?,
        None => return Err(not_found()),
    };
    let path = if preview { Media::preview_path(&id) } else { Media::bytes_path(&id) };
    let found = match media.store.get(&path).await {
        Ok(found) => found,
        Err(object_store::Error::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(ApiError::internal(format!("media store: {e}")).into()),
    };
    let a = &meta.attachment;
    let disposition = if is_image(&a.content_type) { "inline" } else { "attachment" };
    let length = found.meta.size;
    let mut response = Body::from_stream(found.into_stream()).into_response();
    let h = response.headers_mut();
    let value =
        |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let content_type = if preview { HeaderValue::from_static("image/jpeg") } else { value(&a.content_type) };
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!(
            "{disposition}; filename=\"{}\"",
            a.filename.replace(|c: char| !c.is_ascii(), "_")
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    // Never run as a page, never sniffed into something that runs.
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    Ok(response)
}

impl Api {
    /// The attachments `ids` as `me` uploaded them, for a message: each must be theirs and
    /// not yet attached to another message.
    pub async fn attachments_of(&self, me: &UserId, ids: &[MediaId]) -> Result<Vec<Attachment>, ApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let media = self.media.as_ref().ok_or_else(|| ApiError::new("UNAVAILABLE", "this hub stores no uploads"))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let meta = media.meta(id).await?.filter(|m| m.owner == *me).ok_or_else(|| {
                ApiError::not_found(format!("no upload {id} of yours; upload the file with POST /media/upload first"))
            })?;
            if openguild_projections::queries::attachment_message(self.projections.db(), id).await?.is_some() {
                return Err(ApiError::invalid(
                    "attachments",
                    format!("{id} is already attached to a message; upload it again"),
                ));
            }
            out.push(meta.attachment);
        }
        Ok(out)
    }

    /// Whether `me` may read the message `id` is attached to. Waits (bounded) for the
    /// timeline to hold what this node has delivered live, so a file whose message a
    /// client has just been shown is found.
    async fn may_see_attachment(&self, me: &UserId, id: &MediaId) -> Result<bool, ApiError> {
        let wait = std::time::Duration::from_millis(self.settings.limits.read_your_writes_ms);
        let seen = self.fanout.position().max(self.last_write(me));
        self.projections.wait_for(&["timeline"], seen, wait).await?;
        let Some((message, channel)) =
            openguild_projections::queries::attachment_message(self.projections.db(), id).await?
        else {
            return Ok(false);
        };
        let Ok(g) = self.channel_view(me, channel).await else { return Ok(false) };
        let perms = g.channel_permissions(me, channel, crate::clock::now());
        Ok(perms.contains(openguild_domain::Permissions::READ_MESSAGE_HISTORY)
            && !self.commands.is_redacted(channel, &message).await)
    }

    /// Brings a file attached by a person of another hub from their hub (signed request),
    /// checks it against the hash its signed message carries, and keeps it here with its
    /// preview. `None` when the message names no such file or it is not this hub's to ask.
    async fn fetch_remote(&self, id: &MediaId) -> Result<Option<MediaMeta>, Refused> {
        let Some(media) = &self.media else { return Ok(None) };
        let Some((message, _)) = openguild_projections::queries::attachment_message(self.projections.db(), id).await?
        else {
            return Ok(None);
        };
        let Some(posted) = self.store.get(&message).await.map_err(ApiError::from)? else { return Ok(None) };
        let openguild_domain::EventBody::MessagePosted { attachments, .. } = posted.event.content() else {
            return Ok(None);
        };
        let Some(attachment) = attachments.iter().find(|a| a.id == *id).cloned() else { return Ok(None) };
        let owner = posted.event.core.sender.clone();
        let hub = owner.server();
        if hub == self.server {
            return Ok(None);
        }
        let unavailable = |why: String| Refused(StatusCode::BAD_GATEWAY, ApiError::new("UNAVAILABLE", why));
        let url = self
            .peer(&hub)
            .await?
            .and_then(|p| p.url)
            .ok_or_else(|| unavailable(format!("the file is on {hub}, which is not a peer of this hub now")))?;
        let target = format!("/_openguild/federation/v1/media/{id}");
        let request = openguild_federation::request::Request { method: "GET", target: &target, body: b"" };
        let authorization =
            openguild_federation::request::authorization(self.commands.key(), &hub, &request, crate::clock::now());
        let answer = self
            .federation
            .http()
            .get(format!("{url}{target}"))
            .header("authorization", authorization)
            .timeout(std::time::Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| unavailable(format!("the file is on {hub}, which cannot be reached now: {e}")))?;
        if !answer.status().is_success() {
            return Err(unavailable(format!("{hub} did not give the file: {}", answer.status())));
        }
        let mut bytes = Vec::with_capacity(attachment.size.min(64 * 1024 * 1024) as usize);
        let mut body = answer.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| unavailable(format!("the file from {hub} broke off: {e}")))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > attachment.size {
                return Err(unavailable(format!("{hub} sent more bytes than the message says the file has")));
            }
        }
        if *blake3::hash(&bytes).as_bytes() != attachment.hash {
            return Err(unavailable(format!("the file {hub} sent is not the one its message was signed with")));
        }
        let bytes = bytes::Bytes::from(bytes);
        if let Ok(Some(preview)) = preview_of(&attachment.content_type, bytes.clone()).await {
            let _ = media.store.put(&Media::preview_path(id), PutPayload::from(preview)).await;
        }
        let put = |path: Path, payload: PutPayload| async move {
            media.store.put(&path, payload).await.map_err(|e| ApiError::internal(format!("media store: {e}")))
        };
        put(Media::bytes_path(id), PutPayload::from_bytes(bytes)).await?;
        let meta = MediaMeta { owner, attachment };
        put(Media::meta_path(id), PutPayload::from(serde_json::to_vec(&meta).map_err(ApiError::internal)?)).await?;
        Ok(Some(meta))
    }

    /// Deletes the files attached to the message `id` (its retention ran out).
    pub(crate) async fn erase_files_of(&self, id: &openguild_domain::MessageId) -> Result<(), ApiError> {
        if self.media.is_none() {
            return Ok(());
        }
        if let Some(posted) = self.store.get(id).await?
            && let openguild_domain::EventBody::MessagePosted { attachments, .. } = posted.event.content()
        {
            self.erase_attachments(attachments).await?;
        }
        Ok(())
    }

    /// Deletes the files a message carried (after its redaction or erasure).
    pub(crate) async fn erase_attachments(&self, attachments: &[Attachment]) -> Result<(), ApiError> {
        let Some(media) = &self.media else { return Ok(()) };
        for a in attachments {
            media.erase(&a.id).await?;
        }
        Ok(())
    }
}
