//! `GET /ws`: a WebSocket endpoint that keeps state per connection, to contrast with HTTP.
//!
//! Each connection has a [`WsState`] — how many messages it has carried and the last few of
//! them — and every reply shows it. A second connection starts from zero; closing a connection
//! drops its state (the `/state` gauges go back down). That is the stateful part: the meaning of
//! a message depends on what came before it on the same connection.
//!
//! By default (`ServerConfig::broker` is `None`, as in plain `statescope serve`) nothing is
//! relayed: each connection hears only its own replies, even from other connections on the
//! same server. Only when a [`Broker`] is configured (`serve --broker`, or a lab plugging in
//! [`LocalBroker`] or Redis) is each message published, and what other connections published
//! arrives as a `relay` message.
//!
//! The handshake (RFC 6455 §4.2) is done with hyper's upgrade: answer `101 Switching Protocols`
//! with `Sec-WebSocket-Accept`, then speak WebSocket on the same TCP connection.

use super::stats::Stats;
use super::{App, ConnCtx};
use futures_util::{SinkExt, StreamExt};
use hyper::header::{self, HeaderMap, HeaderValue};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Messages kept in each connection's history.
pub const HISTORY_LEN: usize = 8;

/// One message shared beyond its own connection.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WsEvent {
    /// Who sent it: `"<server addr>/<client addr>"`, unique across instances on one host.
    pub from: String,
    pub text: String,
}

/// Carries WebSocket messages between connections, within one instance or across several.
pub trait Broker: Send + Sync + 'static {
    /// Share one message with every subscriber (the sender's own connection included; it
    /// skips its own).
    fn publish(&self, event: WsEvent);
    /// A stream of everything published from now on.
    fn subscribe(&self) -> broadcast::Receiver<WsEvent>;
}

/// A [`Broker`] within one process: a tokio broadcast channel. Slow subscribers lose the
/// oldest messages (and are told how many), never block the others.
pub struct LocalBroker {
    tx: broadcast::Sender<WsEvent>,
}

impl LocalBroker {
    pub fn new(capacity: usize) -> Self {
        LocalBroker {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }
}

impl Broker for LocalBroker {
    fn publish(&self, event: WsEvent) {
        // No subscribers is not an error: nobody is listening.
        let _ = self.tx.send(event);
    }
    fn subscribe(&self) -> broadcast::Receiver<WsEvent> {
        self.tx.subscribe()
    }
}

/// Why a request to `/ws` is not a WebSocket handshake, or `Sec-WebSocket-Accept` if it is.
pub fn check_handshake(method: &hyper::Method, headers: &HeaderMap) -> Result<String, String> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != hyper::Method::GET {
        return Err("a WebSocket handshake is a GET".into());
    }
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(
            "this is a WebSocket endpoint: send `Connection: Upgrade` and \
                    `Upgrade: websocket` (any WebSocket client does)"
                .into(),
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err("only WebSocket version 13 is spoken (Sec-WebSocket-Version: 13)".into());
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() => Ok(derive_accept_key(key.as_bytes())),
        _ => Err("missing Sec-WebSocket-Key".into()),
    }
}

/// The state one WebSocket connection keeps. Counted in [`Stats`] while alive.
pub struct WsState {
    stats: Arc<Stats>,
    /// Only under [`super::Fault::SharedWsCounter`]: the one count every connection bumps.
    shared: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Messages received on this connection.
    pub messages: u64,
    /// The last [`HISTORY_LEN`] of them.
    pub history: VecDeque<String>,
}

impl WsState {
    pub fn new(stats: &Arc<Stats>) -> Self {
        stats.ws_open.fetch_add(1, Relaxed);
        WsState {
            stats: stats.clone(),
            shared: None,
            messages: 0,
            history: VecDeque::with_capacity(HISTORY_LEN),
        }
    }

    /// Take one message in; the reply shows the state it now has.
    pub fn receive(&mut self, text: &str) -> String {
        self.messages = match &self.shared {
            Some(c) => c.fetch_add(1, Relaxed) + 1,
            None => self.messages + 1,
        };
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        } else {
            self.stats.ws_history_entries.fetch_add(1, Relaxed);
        }
        self.history.push_back(text.to_owned());
        json!({
            "kind": "stateful",
            "note": "the count and history live in server memory, for this WebSocket connection only",
            "messages_on_this_connection": self.messages,
            "history": self.history,
            "echo": text,
        })
        .to_string()
    }
}

impl Drop for WsState {
    fn drop(&mut self) {
        self.stats.ws_open.fetch_sub(1, Relaxed);
        self.stats
            .ws_history_entries
            .fetch_sub(self.history.len(), Relaxed);
    }
}

/// The response headers that complete the handshake.
pub fn switching_headers(accept: &str, headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
}

/// Speak WebSocket on an upgraded connection until the client closes, goes idle, breaks the
/// protocol, or the server shuts down.
///
/// `relay` is subscribed before the 101 goes out, so a client that has seen its handshake
/// complete misses nothing published after that.
pub async fn session(
    upgrade: hyper::upgrade::OnUpgrade,
    app: Arc<App>,
    conn: Arc<ConnCtx>,
    mut relay: Option<broadcast::Receiver<WsEvent>>,
) {
    let Ok(upgraded) = upgrade.await else {
        return; // the client left between 101 and the first frame
    };
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(app.config.max_body))
        .max_frame_size(Some(app.config.max_body))
        .read_buffer_size(8 << 10)
        .write_buffer_size(0);
    let io = hyper_util::rt::TokioIo::new(upgraded);
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(cfg)).await;
    let mut state = WsState::new(&app.stats);
    if app.config.fault == Some(super::Fault::SharedWsCounter) {
        state.shared = Some(app.ws_shared_count.clone());
    }
    let me = format!("{}/{}", conn.local, conn.peer);
    let mut stop = app.stop.subscribe();
    let idle = app.config.ws_idle_timeout;
    let why = loop {
        tokio::select! {
            msg = tokio::time::timeout(idle, ws.next()) => {
                let text = match msg {
                    Err(_) => break close(&mut ws, CloseCode::Away, "idle too long").await,
                    Ok(None) => break "closed by client".to_string(),
                    Ok(Some(Err(e))) => break format!("error: {e}"),
                    Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
                    Ok(Some(Ok(Message::Binary(b)))) => String::from_utf8_lossy(&b).into_owned(),
                    // Pings are answered by tungstenite itself; a Close is answered on the next
                    // read, which then ends the stream.
                    Ok(Some(Ok(_))) => continue,
                };
                let reply = state.receive(&text);
                if ws.send(Message::Text(Utf8Bytes::from(reply))).await.is_err() {
                    break "client stopped reading".to_string();
                }
                if let Some(b) = &app.config.broker {
                    b.publish(WsEvent { from: me.clone(), text });
                }
            }
            ev = recv_relay(&mut relay) => {
                let msg = match ev {
                    Ok(ev) if ev.from == me => continue,
                    Ok(ev) => json!({"kind": "relay", "from": ev.from, "text": ev.text}),
                    Err(broadcast::error::RecvError::Lagged(n)) => json!({"kind": "relay", "lost": n}),
                    Err(broadcast::error::RecvError::Closed) => { relay = None; continue }
                };
                if ws.send(Message::Text(Utf8Bytes::from(msg.to_string()))).await.is_err() {
                    break "client stopped reading".to_string();
                }
            }
            _ = super::stopped(&mut stop) => {
                break close(&mut ws, CloseCode::Away, "server shutting down").await;
            }
        }
    };
    if let Some(log) = &app.log {
        log.line(format_args!(
            "{} conn#{} websocket ended after {} messages: {why}",
            conn.peer, conn.serial, state.messages
        ));
    }
}

async fn recv_relay(
    relay: &mut Option<broadcast::Receiver<WsEvent>>,
) -> Result<WsEvent, broadcast::error::RecvError> {
    match relay {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn close<S>(ws: &mut WebSocketStream<S>, code: CloseCode, reason: &'static str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // Bounded: a client that stops reading must not hold shutdown up.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        ws.send(Message::Close(Some(frame))),
    )
    .await;
    reason.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_grows_is_bounded_and_is_released() {
        let stats = Arc::new(Stats::default());
        let mut s = WsState::new(&stats);
        for i in 0..20 {
            s.receive(&i.to_string());
        }
        assert_eq!(s.messages, 20);
        assert_eq!(s.history.len(), HISTORY_LEN);
        assert_eq!(stats.ws_history_entries.load(Relaxed), HISTORY_LEN);
        drop(s);
        assert_eq!(stats.ws_open.load(Relaxed), 0);
        assert_eq!(stats.ws_history_entries.load(Relaxed), 0);
    }

    #[test]
    fn handshake_checks() {
        let mut h = HeaderMap::new();
        assert!(check_handshake(&hyper::Method::GET, &h).is_err());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        assert!(check_handshake(&hyper::Method::GET, &h).is_err());
        // RFC 6455 §1.3's example key and accept value.
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(
            check_handshake(&hyper::Method::GET, &h).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(check_handshake(&hyper::Method::POST, &h).is_err());
    }
}
