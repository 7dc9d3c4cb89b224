//! `serve --broker URL`: WebSocket messages shared with other instances through the project's
//! broker ([`crate::broker`]: Redis pub-sub, or the embedded one), so several real `serve`
//! processes — on one machine or several — act as one chat. This is how stateful servers scale
//! out: each keeps only its own connections, and events travel through the broker.

use super::ws::{self, WsEvent};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The pub-sub channel every instance publishes to and subscribes on.
pub const CHANNEL: &str = "statescope:ws";

/// A [`ws::Broker`] backed by [`crate::broker::Broker`]: publishes go out through the broker,
/// and a background task feeds what arrives (from every instance, this one included) to the
/// local subscribers.
struct Shared {
    local: broadcast::Sender<WsEvent>,
    remote: Arc<dyn crate::broker::Broker>,
    rt: tokio::runtime::Handle,
    /// The labs' deliberately wrong broker: every Nth publish is silently dropped.
    drop_every: Option<u64>,
    published: AtomicU64,
}

impl ws::Broker for Shared {
    fn publish(&self, event: WsEvent) {
        let n = self.published.fetch_add(1, Ordering::Relaxed) + 1;
        if self
            .drop_every
            .is_some_and(|k| k > 0 && n.is_multiple_of(k))
        {
            return;
        }
        let remote = self.remote.clone();
        let Ok(payload) = serde_json::to_vec(&event) else {
            return;
        };
        self.rt.spawn(async move {
            if let Err(e) = remote.publish(CHANNEL, payload.into()).await {
                // The broker reconnects by itself; a message it could not take is counted there
                // and said here, never dropped silently.
                eprintln!("statescope serve: broker: message not shared: {e}");
            }
        });
    }
    fn subscribe(&self) -> broadcast::Receiver<WsEvent> {
        self.local.subscribe()
    }
}

/// Connect to `url` (`redis://HOST:PORT` or `embedded`) and start relaying. Must run inside a
/// tokio runtime. An unreachable Redis is reported here, once, naming the URL. `drop_every`
/// is for negative controls only (hidden `--broker-drop-every`): a broker that loses messages.
pub async fn connect(url: &str, drop_every: Option<u64>) -> anyhow::Result<Arc<dyn ws::Broker>> {
    let remote = crate::broker::connect(Some(url))
        .await
        .map_err(|e| anyhow::anyhow!("--broker {url}: {e}"))?;
    let mut sub = remote
        .subscribe(CHANNEL)
        .await
        .map_err(|e| anyhow::anyhow!("--broker {url}: {e}"))?;
    let (local, _) = broadcast::channel(1024);
    let tx = local.clone();
    tokio::spawn(async move {
        while let Some(bytes) = sub.recv().await {
            if let Ok(ev) = serde_json::from_slice::<WsEvent>(&bytes) {
                let _ = tx.send(ev);
            }
        }
    });
    Ok(Arc::new(Shared {
        local,
        remote,
        rt: tokio::runtime::Handle::current(),
        drop_every,
        published: AtomicU64::new(0),
    }))
}
