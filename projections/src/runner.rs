//! The live runner: each projection's task catches up from its checkpoint, follows the live
//! feed, and stops on an event it cannot apply; on PostgreSQL, one node at a time runs it.
//!
//! Every step is one batch ([`crate::batch`]), which claims the checkpoint row first
//! (`UPDATE … WHERE position = the one we read`), so a rebuild that swapped tables
//! underneath, or another node, makes the batch roll back and re-read instead of applying
//! twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openguild_store::EventStore;
use tokio::sync::watch;

use crate::batch::{BATCH, apply_batch};
use crate::checkpoint::{checkpoint_name, read_checkpoint, record_stop, stored_version, upsert_checkpoint};
use crate::db::{self, ReadDb, Tables};
use crate::lease::Lease;
use crate::{Projection, ProjectionError};

/// Where a projection is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ProjectionState {
    /// Applying events behind the head.
    CatchingUp,
    /// Has applied everything up to the head it last saw.
    CaughtUp,
    /// Another node runs it; this one stands by.
    Standby,
    /// Met an event it cannot apply; kept its position.
    Stopped { event: String, reason: String },
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProjectionStatus {
    pub name: &'static str,
    pub position: u64,
    pub state: ProjectionState,
}

/// The projections of one server, each running in its own task.
pub struct Projections {
    db: ReadDb,
    status: HashMap<&'static str, watch::Receiver<ProjectionStatus>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Projections {
    /// Makes sure each projection's tables exist at its version (rebuilding from zero when
    /// the version changed), then starts them.
    pub async fn start(
        db: ReadDb,
        store: Arc<dyn EventStore>,
        list: Vec<Arc<dyn Projection>>,
    ) -> Result<Projections, ProjectionError> {
        let mut status = HashMap::new();
        let mut tasks = Vec::new();
        for p in list {
            prepare(&db, &*p).await?;
            let (tx, rx) = watch::channel(ProjectionStatus {
                name: p.name(),
                position: read_checkpoint(&db, p.name()).await?.0,
                state: ProjectionState::CatchingUp,
            });
            status.insert(p.name(), rx);
            tasks.push(tokio::spawn(run(db.clone(), store.clone(), p, tx)));
        }
        Ok(Projections { db, status, tasks })
    }

    pub fn db(&self) -> &ReadDb {
        &self.db
    }

    /// Each projection's position and state.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        let mut all: Vec<_> = self.status.values().map(|rx| rx.borrow().clone()).collect();
        all.sort_by_key(|s| s.name);
        all
    }

    /// Waits until the named projections (all, if empty) have applied `position`: what a
    /// client that just wrote needs before it reads (read-your-writes).
    pub async fn wait_for(&self, names: &[&str], position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(unknown) = names.iter().find(|n| !self.status.contains_key(**n)) {
            let known: Vec<&str> = self.status.keys().copied().collect();
            return Err(ProjectionError::Unknown((*unknown).to_owned(), known.join(", ")));
        }
        for (name, rx) in &self.status {
            if !names.is_empty() && !names.contains(name) {
                continue;
            }
            let mut rx = rx.clone();
            let reached = tokio::time::timeout_at(deadline, async {
                loop {
                    let s = rx.borrow_and_update().clone();
                    if s.position >= position {
                        return Ok(());
                    }
                    if let ProjectionState::Stopped { event, reason } = s.state {
                        return Err(ProjectionError::Stopped {
                            name: name.to_string(),
                            position: s.position,
                            event,
                            reason,
                        });
                    }
                    if rx.changed().await.is_err() {
                        return Err(ProjectionError::Timeout(name.to_string(), position));
                    }
                }
            })
            .await;
            match reached {
                Ok(result) => result?,
                Err(_) => return Err(ProjectionError::Timeout(name.to_string(), position)),
            }
        }
        Ok(())
    }

    /// Stops every projection task (what is committed stays committed).
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Creates a projection's live tables, or recreates them when its version changed.
async fn prepare(db: &ReadDb, p: &dyn Projection) -> Result<(), ProjectionError> {
    let mut conn = db.pool.acquire().await?;
    let stored = stored_version(&mut conn, p.name()).await?;
    if stored == Some(p.version()) {
        return Ok(());
    }
    if stored.is_some() {
        tracing::info!(projection = p.name(), "projection tables changed version: rebuilding from zero");
    }
    let mut tx = db::begin_write(&mut conn, db.kind).await?;
    let names: Vec<String> = p.tables().iter().map(|t| Tables::LIVE.n(t)).collect();
    db::drop_tables(&mut tx, &names).await?;
    db::create(&mut tx, &p.schema(db.kind, &Tables::LIVE)).await?;
    upsert_checkpoint(&mut tx, p.name(), 0, p.version()).await?;
    tx.commit().await?;
    Ok(())
}

/// One projection's loop.
async fn run(db: ReadDb, store: Arc<dyn EventStore>, p: Arc<dyn Projection>, status: watch::Sender<ProjectionStatus>) {
    let mut head = store.head_watch();
    let mut lease: Option<Lease> = None;
    loop {
        if lease.is_none() {
            match Lease::try_take(&db, p.name()).await {
                Ok(Some(taken)) => lease = Some(taken),
                Ok(None) => {
                    status.send_modify(|s| s.state = ProjectionState::Standby);
                    // Follow the owner's checkpoint until the next try for the lock, so that
                    // reads on this node can wait for a position (read-your-writes).
                    let retry = tokio::time::Instant::now() + Duration::from_secs(2);
                    while tokio::time::Instant::now() < retry {
                        if let Ok((position, _)) = read_checkpoint(&db, p.name()).await {
                            status.send_if_modified(|s| {
                                let moved = s.position != position;
                                s.position = position;
                                moved
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(projection = p.name(), error = %e, "projection: cannot reach the read model database");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        head.borrow_and_update();
        match step(&db, &*store, &*p, &Tables::LIVE).await {
            Ok(Step::Applied { position, caught_up }) => {
                status.send_modify(|s| {
                    s.position = position;
                    s.state = if caught_up { ProjectionState::CaughtUp } else { ProjectionState::CatchingUp };
                });
            }
            Ok(Step::Idle { position }) => {
                status.send_modify(|s| {
                    s.position = position;
                    s.state = ProjectionState::CaughtUp;
                });
                let _ = tokio::time::timeout(Duration::from_secs(1), head.changed()).await;
                if let Some(held) = lease.as_mut()
                    && !held.holds().await
                {
                    tracing::warn!(projection = p.name(), "projection: lost its lease; standing by");
                    lease = None;
                }
            }
            Ok(Step::Raced) => {}
            Ok(Step::Stopped { position, event, reason }) => {
                tracing::error!(projection = p.name(), position, event = %event, reason = %reason, "projection stopped: cannot apply event");
                status.send_modify(|s| {
                    s.position = position;
                    s.state = ProjectionState::Stopped { event, reason };
                });
                return;
            }
            Err(e) => {
                tracing::warn!(projection = p.name(), error = %e, "projection: batch failed, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

enum Step {
    Applied {
        position: u64,
        caught_up: bool,
    },
    Idle {
        position: u64,
    },
    /// The checkpoint moved underneath (a rebuild swapped, or another node ran): re-read.
    Raced,
    Stopped {
        position: u64,
        event: String,
        reason: String,
    },
}

/// Reads one batch after the checkpoint and applies it with the new checkpoint in one
/// transaction.
async fn step(db: &ReadDb, store: &dyn EventStore, p: &dyn Projection, t: &Tables) -> Result<Step, ProjectionError> {
    let (checkpoint, stopped) = read_checkpoint(db, &checkpoint_name(p.name(), t)).await?;
    if let Some((event, reason)) = stopped {
        return Ok(Step::Stopped { position: checkpoint, event, reason });
    }
    let events = store.read_all(checkpoint, BATCH).await?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(Step::Idle { position: checkpoint });
    };
    let span =
        tracing::info_span!("project", projection = p.name(), from = checkpoint + 1, to = last, events = events.len());
    match tracing::Instrument::instrument(apply_batch(db, p, t, checkpoint, &events), span).await? {
        Ok(()) => {
            let head = store.head_watch().borrow().to_owned();
            Ok(Step::Applied { position: last, caught_up: last >= head })
        }
        Err(None) => Ok(Step::Raced),
        Err(Some((event, reason))) => {
            record_stop(db, &checkpoint_name(p.name(), t), &event, &reason).await?;
            // The events before the bad one were committed.
            let position = read_checkpoint(db, &checkpoint_name(p.name(), t)).await?.0;
            Ok(Step::Stopped { position, event, reason })
        }
    }
}
