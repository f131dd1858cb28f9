//! The shutdown signal shared by the accept loops, their connections and hung requests.

use tokio::sync::watch;

/// A one-way latch: once triggered, every clone's [`ShutdownSignal::wait`] completes.
#[derive(Clone, Debug)]
pub(crate) struct ShutdownSignal {
    sender: std::sync::Arc<watch::Sender<bool>>,
}

impl ShutdownSignal {
    pub(crate) fn new() -> Self {
        let (sender, _) = watch::channel(false);
        Self {
            sender: std::sync::Arc::new(sender),
        }
    }

    /// Starts shutting down; later calls do nothing.
    pub(crate) fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Completes once [`ShutdownSignal::trigger`] has been called, even if that was earlier.
    pub(crate) async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }
}
