//! `reports`: the moderation queue — open reports, and resolved ones with their action and
//! reason.

use async_trait::async_trait;
use openguild_domain::{EventBody, ReportTarget, StreamId};
use openguild_store::StoredEvent;

use crate::apply::exec;
use crate::db::{DbKind, Tables};
use crate::writer::Writer;
use crate::{ApplyError, Projection};

pub struct Reports;

#[async_trait]
impl Projection for Reports {
    fn name(&self) -> &'static str {
        "reports"
    }

    fn version(&self) -> i64 {
        // 2: reports can be assigned (status `assigned`, column `assignee`).
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        &["reports"]
    }

    fn schema(&self, _db: DbKind, t: &Tables) -> Vec<String> {
        vec![format!(
            "CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL, position BIGINT NOT NULL, reporter TEXT NOT NULL, \
             target_user TEXT NOT NULL, target_channel TEXT, target_message TEXT, reason TEXT NOT NULL, \
             status TEXT NOT NULL, action TEXT, resolved_by TEXT, resolution TEXT, filed_at BIGINT NOT NULL, \
             resolved_at BIGINT, assignee TEXT, UNIQUE (guild, position))",
            t.n("reports")
        )]
    }

    async fn apply(&self, c: &mut Writer<'_>, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        let StreamId::Guild(g) = &e.event.core.stream else { return Ok(()) };
        let (sender, ts) = (e.event.core.sender.to_string(), e.event.core.ts.as_millis() as i64);
        match e.event.content() {
            EventBody::ReportFiled { report, target, reason } => {
                let (user, channel, message) = match target {
                    ReportTarget::Message { channel, message, author } => {
                        (author.to_string(), Some(channel.to_string()), Some(message.to_string()))
                    }
                    ReportTarget::Member { user } => (user.to_string(), None, None),
                };
                exec!(
                    c,
                    format!(
                        "INSERT INTO {} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', NULL, NULL, NULL, $9, NULL, NULL)",
                        t.n("reports")
                    ),
                    report.to_string(),
                    g.to_string(),
                    e.position as i64,
                    &sender,
                    user,
                    channel,
                    message,
                    reason,
                    ts
                );
            }
            EventBody::ReportResolved { report, action, reason } => {
                let action = serde_json::to_value(action).map_err(|err| ApplyError::Invalid(err.to_string()))?;
                exec!(
                    c,
                    format!(
                        "UPDATE {} SET status = 'resolved', action = $2, resolved_by = $3, resolution = $4, resolved_at = $5 WHERE id = $1",
                        t.n("reports")
                    ),
                    report.to_string(),
                    action.as_str().unwrap_or_default().to_owned(),
                    &sender,
                    reason,
                    ts
                );
            }
            EventBody::ReportAssigned { report, assignee } => {
                // Assigned while it has an assignee; back in the open queue without one.
                let status = if assignee.is_some() { "assigned" } else { "open" };
                exec!(
                    c,
                    format!(
                        "UPDATE {} SET status = $2, assignee = $3 WHERE id = $1 AND status <> 'resolved'",
                        t.n("reports")
                    ),
                    report.to_string(),
                    status,
                    assignee.as_ref().map(ToString::to_string)
                );
            }
            _ => {}
        }
        Ok(())
    }
}
