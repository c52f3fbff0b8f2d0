//! Process plumbing every binary shares: the shutdown signal (mini-redis
//! style: one trigger, any number of cheap, cloneable listeners) and the
//! operating system's stop requests that fire it.

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

/// Resolves when the process is asked to stop: Ctrl-C, or SIGTERM on Unix
/// (what container runtimes and systemd send).
pub async fn stop_requested() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
