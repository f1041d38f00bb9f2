//! `voice`: who is in each voice channel's room — the roster clients show under the channel —
//! folded from the channel streams' `voice.*` events. One row per person in a room; a leave,
//! a disconnect or a move deletes it. Tracks are kept as two flags (camera, screen share).

use async_trait::async_trait;
use openguild_domain::body::TrackSource;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;

use crate::apply::{exec, ins};
use crate::db::{DbKind, Tables};
use crate::writer::Writer;
use crate::{ApplyError, Projection};

pub struct Voice;

#[async_trait]
impl Projection for Voice {
    fn name(&self) -> &'static str {
        "voice"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["vc_seats"]
    }

    fn schema(&self, _db: DbKind, t: &Tables) -> Vec<String> {
        vec![format!(
            "CREATE TABLE {} (channel TEXT NOT NULL, user_id TEXT NOT NULL, session TEXT NOT NULL, \
             joined_at BIGINT NOT NULL, self_muted BIGINT NOT NULL, self_deafened BIGINT NOT NULL, \
             server_muted BIGINT NOT NULL, server_deafened BIGINT NOT NULL, camera BIGINT NOT NULL, \
             screen_share BIGINT NOT NULL, PRIMARY KEY (channel, user_id))",
            t.n("vc_seats")
        )]
    }

    async fn apply(&self, c: &mut Writer<'_>, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        let StreamId::Channel(channel) = &e.event.core.stream else { return Ok(()) };
        let table = t.n("vc_seats");
        let channel = channel.to_string();
        let sender = e.event.core.sender.to_string();
        match e.event.content() {
            EventBody::VoiceJoined { session } => {
                exec!(c, format!("DELETE FROM {table} WHERE channel = $1 AND user_id = $2"), &channel, &sender);
                ins!(
                    c,
                    table,
                    "",
                    &channel,
                    &sender,
                    session.as_str(),
                    e.event.core.ts.as_millis() as i64,
                    0i64,
                    0i64,
                    0i64,
                    0i64,
                    0i64,
                    0i64
                );
            }
            EventBody::VoiceLeft { session } => {
                exec!(
                    c,
                    format!("DELETE FROM {table} WHERE channel = $1 AND user_id = $2 AND session = $3"),
                    &channel,
                    &sender,
                    session.as_str()
                );
            }
            EventBody::VoiceTrack { source, published, muted, .. } => {
                let column = match source {
                    TrackSource::Camera => "camera",
                    TrackSource::ScreenShare => "screen_share",
                    _ => return Ok(()),
                };
                let on = i64::from(*published && !*muted);
                exec!(
                    c,
                    format!("UPDATE {table} SET {column} = $1 WHERE channel = $2 AND user_id = $3"),
                    on,
                    &channel,
                    &sender
                );
            }
            EventBody::VoiceSelf { muted, deafened } => {
                exec!(
                    c,
                    format!(
                        "UPDATE {table} SET self_muted = $1, self_deafened = $2 WHERE channel = $3 AND user_id = $4"
                    ),
                    i64::from(*muted),
                    i64::from(*deafened),
                    &channel,
                    &sender
                );
            }
            EventBody::VoiceServerMuted { user, muted, deafened, .. } => {
                exec!(
                    c,
                    format!(
                        "UPDATE {table} SET server_muted = $1, server_deafened = $2 WHERE channel = $3 AND user_id = $4"
                    ),
                    i64::from(*muted),
                    i64::from(*deafened),
                    &channel,
                    user.to_string()
                );
            }
            EventBody::VoiceDisconnected { user, .. } | EventBody::VoiceMoved { user, .. } => {
                exec!(
                    c,
                    format!("DELETE FROM {table} WHERE channel = $1 AND user_id = $2"),
                    &channel,
                    user.to_string()
                );
            }
            _ => {}
        }
        Ok(())
    }
}
