//! The retention sweeper: a tokio task that, every interval, crypto-shreds the data keys whose
//! retention has ended, until it is shut down.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::vault::Vault;

/// An unwrapped data key not used for this long leaves memory at the sweeper's next pass.
pub const KEY_IDLE: Duration = Duration::from_secs(300);

/// What the sweeper has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStatus {
    /// Passes finished (successful or not).
    pub passes: u64,
    /// Data keys shredded in all.
    pub shredded: u64,
    /// Passes that failed (the store or the ledger was unavailable; nothing was shredded
    /// without its ledger record). The next pass tries again.
    pub failures: u64,
}

/// A running sweeper. Dropping it stops the task too; [`Sweeper::shutdown`] waits for the pass
/// in progress to finish first.
#[derive(Debug)]
pub struct Sweeper {
    stop: watch::Sender<bool>,
    status: watch::Receiver<SweepStatus>,
    task: Option<JoinHandle<()>>,
}

impl Sweeper {
    pub(crate) fn spawn(vault: Vault, every: Duration) -> Sweeper {
        let (stop, mut stop_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(SweepStatus::default());
        let every = every.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    _ = tick.tick() => {
                        vault.drop_idle_keys(KEY_IDLE);
                        let result = vault.sweep_expired().await;
                        status_tx.send_modify(|s| {
                            s.passes += 1;
                            match &result {
                                Ok(n) => s.shredded += *n as u64,
                                Err(_) => s.failures += 1,
                            }
                        });
                        match result {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(shredded = n, "vault sweeper: expired data keys shredded"),
                            Err(e) => tracing::warn!(error = %e, "vault sweeper: pass failed; nothing was shredded without its ledger record"),
                        }
                    }
                }
            }
        });
        Sweeper { stop, status, task: Some(task) }
    }

    /// A receiver of the sweeper's status (wait on it with `changed` / `wait_for`).
    pub fn status(&self) -> watch::Receiver<SweepStatus> {
        self.status.clone()
    }

    /// Stops the sweeper after the pass in progress, if any, and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Vault {
    /// Starts the retention sweeper on the current tokio runtime: every `every`, it shreds the
    /// data keys past their retention ([`Vault::sweep_expired`]).
    pub fn spawn_sweeper(&self, every: Duration) -> Sweeper {
        Sweeper::spawn(self.clone(), every)
    }
}
