//! A worker that follows the event store from its own checkpoint (`worker_checkpoints`,
//! by name) and does one step per event: the moderation worker and the voice worker. The
//! checkpoint moves only past an event whose step succeeded; a failure is logged and the
//! worker resumes from its checkpoint after a growing pause.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use openguild_projections::queries;
use openguild_store::{StoredEvent, subscribe_all};

use crate::Api;
use crate::errors::ApiError;

/// One step of a worker: what one event asks of it.
pub(crate) type Step = for<'a> fn(&'a Arc<Api>, &'a StoredEvent) -> BoxFuture<'a, Result<(), ApiError>>;

/// Runs the worker `name` until the API is dropped.
pub(crate) fn follow(api: Weak<Api>, name: &'static str, step: Step) {
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(200);
        loop {
            let Some(strong) = api.upgrade() else { return };
            let store = strong.store.clone();
            let from = match queries::worker_position(strong.projections.db(), name).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "reading the worker's checkpoint failed; retrying");
                    drop(strong);
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            drop(strong);
            let mut feed = subscribe_all(store, from);
            let failed = loop {
                let Some(next) = feed.next().await else { break None };
                let Some(api) = api.upgrade() else { return };
                let e = match next {
                    Ok(e) => e,
                    Err(e) => break Some(ApiError::from(e)),
                };
                if let Err(e) = step(&api, &e).await {
                    break Some(e);
                }
                if let Err(e) = queries::set_worker_position(api.projections.db(), name, e.position).await {
                    break Some(e.into());
                }
                pause = Duration::from_millis(200);
            };
            if let Some(e) = failed {
                tracing::warn!(worker = name, error = %e.message, "the worker failed; it resumes from its checkpoint");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    });
}
