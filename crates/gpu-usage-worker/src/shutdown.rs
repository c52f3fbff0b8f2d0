//! A shutdown signal every background task can watch (mini-redis style):
//! one trigger, any number of cheap, cloneable listeners.

use tokio::sync::watch;

/// Fires the signal; dropping it fires it too, so a task can never be left
/// waiting for a shutdown that will not come.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once shutdown was requested (or its trigger dropped).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // Err: the trigger is gone, which counts as shutdown.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}
