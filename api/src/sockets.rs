//! The websockets open on this node: how many each user has (the per-user cap, and presence
//! on this node), and their shutdown. Upgraded connections are outside the HTTP server's own
//! graceful shutdown, so they are tracked here: `stop` cancels a token every socket watches
//! (each then sends its 1001 close frame), and `closed` waits on a task tracker until every
//! socket has ended.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openguild_domain::UserId;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Default)]
pub struct Sockets {
    per_user: Mutex<HashMap<UserId, usize>>,
    stopping: CancellationToken,
    tasks: TaskTracker,
}

/// A user's place among the open sockets, given back when dropped.
pub struct Seat {
    sockets: Arc<Sockets>,
    user: UserId,
}

impl Sockets {
    /// Runs one socket's task, tracked until it ends (even if it panics).
    pub fn run<F>(&self, task: F) -> impl Future<Output = F::Output> + use<F>
    where
        F: Future,
    {
        self.tasks.track_future(task)
    }

    /// A seat for `user`, unless they already have `max` sockets open here.
    pub fn seat(self: &Arc<Self>, user: &UserId, max: usize) -> Option<Seat> {
        let mut per_user = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_user.entry(user.clone()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Seat { sockets: self.clone(), user: user.clone() })
    }

    /// Which of `users` have a socket open on this node.
    pub fn open_for(&self, users: &[&UserId]) -> Vec<bool> {
        let per_user = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        users.iter().map(|u| per_user.contains_key(*u)).collect()
    }

    /// Every user with a socket open on this node.
    pub fn users(&self) -> Vec<UserId> {
        self.per_user.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// Resolves when the server stops: sockets then close with 1001.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await;
    }

    /// Tells every socket to close.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// Waits until every socket has ended, for at most `within`.
    pub async fn closed(&self, within: Duration) {
        self.tasks.close();
        if tokio::time::timeout(within, self.tasks.wait()).await.is_err() {
            tracing::warn!(open = self.tasks.len(), "shutdown: some websockets did not close in time");
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut per_user = self.sockets.per_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_are_capped_per_user_and_given_back() {
        let sockets = Arc::new(Sockets::default());
        let ann: UserId = "@ann:hub.test".parse().unwrap();
        let bob: UserId = "@bob:hub.test".parse().unwrap();
        let first = sockets.seat(&ann, 2).unwrap();
        let _second = sockets.seat(&ann, 2).unwrap();
        assert!(sockets.seat(&ann, 2).is_none(), "a third socket is over the cap");
        assert_eq!(sockets.open_for(&[&ann, &bob]), vec![true, false]);
        drop(first);
        assert!(sockets.seat(&ann, 2).is_some(), "a closed socket gives its seat back");
    }

    #[tokio::test]
    async fn closing_waits_for_every_socket_task_to_end() {
        let sockets = Arc::new(Sockets::default());
        let s = sockets.clone();
        let task = tokio::spawn(sockets.run(async move {
            s.stopping().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }));
        sockets.stop();
        let started = std::time::Instant::now();
        sockets.closed(Duration::from_secs(5)).await;
        assert!(started.elapsed() >= Duration::from_millis(40), "closed() returned before the socket ended");
        task.await.unwrap();
    }
}
