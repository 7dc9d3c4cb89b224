//! `serve --broker URL`: WebSocket messages shared with other instances through the project's
//! broker ([`crate::broker`]: Redis pub-sub, or the embedded one), so several real `serve`
//! processes — on one machine or several — act as one chat. This is how stateful servers scale
//! out: each keeps only its own connections, and events travel through the broker.

use super::ws::{self, WsEvent};
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
}

impl ws::Broker for Shared {
    fn publish(&self, event: WsEvent) {
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
/// tokio runtime. An unreachable Redis is reported here, once, naming the URL.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn ws::Broker>> {
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
    }))
}
