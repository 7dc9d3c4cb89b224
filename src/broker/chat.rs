//! A stateful WebSocket chat server that shares messages through a [`Broker`].
//!
//! Each [`ChatNode`] holds its users' WebSocket connections: that is its state, and why a user
//! connected to node 1 cannot be reached from node 2 directly. A user's message goes to the node
//! it is connected to, which hands it to the broker; every node receives it back from the
//! broker and writes it to each of its own users (the sender included, which shows the round
//! trip worked). How nodes receive it is the [`Relay`]:
//!
//! * [`Relay::PubSub`]: the node subscribes to the topic when it starts; while it is down it
//!   receives nothing, and what was published meanwhile never reaches its users.
//! * [`Relay::Queue`]: the node is a consumer group of its own on the topic's stream. It reads
//!   only while at least one user is connected (there is no one to deliver to otherwise),
//!   acknowledges an entry once it is handed to a user's connection, and after a restart under
//!   the same name continues where its group stopped.
//!
//! Wire format: clients connect to `ws://ADDR/?user=NAME`; the node first sends
//! `{"welcome":"NODE"}` once the user is registered (so a client knows from when on it will
//! receive), then relays chat messages, JSON text frames `{"from","seq","text"}` ([`ChatMsg`]).
//! A text frame that is not a `ChatMsg` from the connected user is counted in
//! [`NodeStats::bad_input`] and dropped.
//!
//! [`ChatClient`] is the matching client, recording what it received in an [`Inbox`].

use super::{backoff, Broker, Subscription};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How nodes receive each other's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    PubSub,
    Queue,
}

/// One chat message, as JSON on the WebSocket and in the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMsg {
    pub from: String,
    pub seq: u64,
    pub text: String,
}

/// What a node counted. Every message it could not pass on is in one of these.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Messages from its users handed to the broker.
    pub published: AtomicU64,
    /// Messages from its users the broker did not take (gone for good).
    pub publish_failed: AtomicU64,
    /// Messages from the broker written towards its users (one per user).
    pub relayed: AtomicU64,
    /// Messages a user's connection could not take because it was too slow.
    pub client_dropped: AtomicU64,
    /// Messages the node's subscription skipped because the node read too slowly.
    pub subscription_lost: AtomicU64,
    /// Broker reads or acknowledgements that failed (retried later).
    pub broker_errors: AtomicU64,
    /// Text frames that were not chat messages from the connected user.
    pub bad_input: AtomicU64,
}

/// Most messages queued towards one user before further ones are dropped (and counted).
const CLIENT_BUFFER: usize = 4096;

/// State shared by a node's tasks.
struct Node {
    name: String,
    topic: String,
    relay: Relay,
    broker: Arc<dyn Broker>,
    /// Connected users: connection id → their outgoing queue.
    clients: Mutex<HashMap<u64, mpsc::Sender<Bytes>>>,
    /// Woken when a user registers.
    joined: Notify,
    next_id: AtomicU64,
    stats: Arc<NodeStats>,
}

/// A running chat server. Dropping it (or [`ChatNode::stop`]) stops it at once: the listener
/// closes, every user's connection is cut, the subscription ends. Like a crash, nothing is
/// flushed.
pub struct ChatNode {
    pub name: String,
    pub addr: SocketAddr,
    pub stats: Arc<NodeStats>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Tells the node's task to stop its tasks and end ([`ChatNode::stop`]).
    halt: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for ChatNode {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl ChatNode {
    /// Listen on `listen` (e.g. `127.0.0.1:0`) and relay through `broker` on `topic`. Returns
    /// once the node is subscribed (pub-sub) or its group exists (queue).
    pub async fn start(
        name: &str,
        listen: &str,
        broker: Arc<dyn Broker>,
        relay: Relay,
        topic: &str,
    ) -> anyhow::Result<ChatNode> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("chat node {name}: cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        let sub = match relay {
            Relay::PubSub => Some(broker.subscribe(topic).await?),
            Relay::Queue => {
                broker.join_group(topic, name).await?;
                None
            }
        };
        let stats = Arc::new(NodeStats::default());
        let node = Arc::new(Node {
            name: name.to_string(),
            topic: topic.to_string(),
            relay,
            broker,
            clients: Mutex::new(HashMap::new()),
            joined: Notify::new(),
            next_id: AtomicU64::new(0),
            stats: stats.clone(),
        });
        let (halt, mut halted) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Every task of this node lives in this set, so aborting the node aborts them all.
            let mut tasks = JoinSet::new();
            match sub {
                Some(sub) => tasks.spawn(relay_pubsub(node.clone(), sub)),
                None => tasks.spawn(relay_queue(node.clone())),
            };
            loop {
                tokio::select! {
                    _ = &mut halted => {
                        // Abort every task and wait until each has stopped, so none delivers
                        // (and, in a queue, acknowledges) anything after `stop` returned.
                        tasks.shutdown().await;
                        return;
                    }
                    acc = listener.accept() => {
                        if let Ok((stream, _)) = acc {
                            tasks.spawn(serve_client(node.clone(), stream));
                        }
                    }
                    Some(_) = tasks.join_next() => {}
                }
            }
        });
        Ok(ChatNode {
            name: name.to_string(),
            addr,
            stats,
            task: Some(task),
            halt: Some(halt),
        })
    }

    /// Stop abruptly, as a crash would: no goodbye to its users, nothing it held survives.
    /// Returns once none of its tasks runs any more. (Dropping a node aborts it too, but an
    /// abort takes effect only when the runtime next gets to each task: a relay busy on
    /// another worker could still hand over, and acknowledge, one more message.)
    pub async fn stop(mut self) {
        if let Some(halt) = self.halt.take() {
            let _ = halt.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Node {
    /// Queue `msg` to every connected user; returns how many took it.
    fn deliver(&self, msg: &Bytes) -> u64 {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        clients.retain(|_, tx| match tx.try_send(msg.clone()) {
            Ok(()) => {
                n += 1;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.client_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.stats.relayed.fetch_add(n, Ordering::Relaxed);
        n
    }

    fn has_clients(&self) -> bool {
        !self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Hand a user's message to the broker.
    async fn send_on(&self, payload: Bytes) {
        let res = match self.relay {
            Relay::PubSub => self.broker.publish(&self.topic, payload).await.map(|_| ()),
            Relay::Queue => self.broker.append(&self.topic, payload).await.map(|_| ()),
        };
        let counter = match res {
            Ok(()) => &self.stats.published,
            Err(_) => &self.stats.publish_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

async fn relay_pubsub(node: Arc<Node>, mut sub: Subscription) {
    let mut lost_before = 0;
    loop {
        while let Some(msg) = sub.recv().await {
            node.deliver(&msg);
            node.stats
                .subscription_lost
                .store(lost_before + sub.lost(), Ordering::Relaxed);
        }
        // The subscription gave up (the broker was gone for long): count it and keep trying,
        // for a server lives longer than any one outage.
        lost_before += sub.lost();
        let mut attempt = 0;
        sub = loop {
            node.stats.broker_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            if let Ok(s) = node.broker.subscribe(&node.topic).await {
                break s;
            }
        };
    }
}

async fn relay_queue(node: Arc<Node>) {
    let mut failures = 0u32;
    loop {
        // Nobody to deliver to: leave the entries in the group for later.
        while !node.has_clients() {
            let joined = node.joined.notified();
            if node.has_clients() {
                break;
            }
            joined.await;
        }
        let wait = Duration::from_millis(500);
        let entries = match node
            .broker
            .read_group(&node.topic, &node.name, &node.name, 256, wait)
            .await
        {
            Ok(e) => {
                failures = 0;
                e
            }
            Err(_) => {
                node.stats.broker_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(failures)).await;
                failures += 1;
                continue;
            }
        };
        let mut done = Vec::new();
        for e in entries {
            // Acknowledge only what reached a user; the rest comes back on the next read.
            if node.deliver(&e.payload) > 0 {
                done.push(e.id);
            }
        }
        if node
            .broker
            .ack(&node.topic, &node.name, &done)
            .await
            .is_err()
        {
            node.stats.broker_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The `user` query parameter of a WebSocket request path.
fn user_of(req: &Request) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("user="))
        .map(str::to_string)
}

async fn serve_client(node: Arc<Node>, stream: TcpStream) {
    let mut user = None;
    // The signature is tungstenite's handshake callback; the large error type is its own.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        user = user_of(req);
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    // The connection is this server's state: it knows who is on it, so a message claiming to
    // be from someone else is refused.
    let user = user.unwrap_or_else(|| "anonymous".to_string());
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(CLIENT_BUFFER);
    let id = node.next_id.fetch_add(1, Ordering::Relaxed);
    node.clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, tx);
    node.joined.notify_waiters();
    let welcome = serde_json::json!({ "welcome": node.name }).to_string();
    if sink.send(Message::text(welcome)).await.is_ok() {
        loop {
            tokio::select! {
                incoming = source.next() => match incoming {
                    Some(Ok(Message::Text(t))) => {
                        let valid = serde_json::from_str::<ChatMsg>(t.as_str()).is_ok_and(|m| m.from == user);
                        if valid {
                            node.send_on(Bytes::copy_from_slice(t.as_bytes())).await;
                        } else {
                            node.stats.bad_input.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                out = rx.recv() => {
                    let Some(out) = out else { break };
                    let Ok(text) = tokio_tungstenite::tungstenite::Utf8Bytes::try_from(out) else {
                        node.stats.bad_input.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    node.clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

/// What one user received: distinct `(from, seq)` pairs, and how many arrived twice.
#[derive(Debug, Default)]
pub struct Inbox {
    pub got: HashSet<(String, u64)>,
    pub duplicates: u64,
}

pub type SharedInbox = Arc<Mutex<Inbox>>;

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A chat user connected to one node.
pub struct ChatClient {
    pub user: String,
    sink: SplitSink<WsStream, Message>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for ChatClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl ChatClient {
    /// Connect as `user` and wait for the node's welcome; received messages go to `inbox`.
    pub async fn connect(
        addr: SocketAddr,
        user: &str,
        inbox: SharedInbox,
    ) -> anyhow::Result<ChatClient> {
        let url = format!("ws://{addr}/?user={user}");
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(&url),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{url}: no WebSocket handshake within 5 s"))??;
        let (sink, mut source) = ws.split();
        match tokio::time::timeout(Duration::from_secs(5), source.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("welcome") => {}
            other => anyhow::bail!("{url}: expected a welcome from the node, got {other:?}"),
        }
        let reader = tokio::spawn(read_into(source, inbox));
        Ok(ChatClient {
            user: user.to_string(),
            sink,
            reader,
        })
    }

    /// Send message number `seq`.
    pub async fn send(&mut self, seq: u64, text: &str) -> anyhow::Result<()> {
        let msg = ChatMsg {
            from: self.user.clone(),
            seq,
            text: text.to_string(),
        };
        self.sink
            .send(Message::text(serde_json::to_string(&msg)?))
            .await?;
        Ok(())
    }
}

async fn read_into(mut source: SplitStream<WsStream>, inbox: SharedInbox) {
    while let Some(Ok(msg)) = source.next().await {
        if let Message::Text(t) = msg {
            if let Ok(m) = serde_json::from_str::<ChatMsg>(t.as_str()) {
                let mut inbox = inbox.lock().unwrap_or_else(|e| e.into_inner());
                if !inbox.got.insert((m.from, m.seq)) {
                    inbox.duplicates += 1;
                }
            }
        }
    }
}

/// Wait until each inbox holds at least its expected count, or `timeout` passes (bounded:
/// a lost message must show up as a count, never as a hang).
pub async fn wait_for(inboxes: &[(SharedInbox, usize)], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let done = inboxes
            .iter()
            .all(|(i, n)| i.lock().unwrap_or_else(|e| e.into_inner()).got.len() >= *n);
        if done {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn three_nodes_share_messages_through_embedded_pubsub() {
        let broker: Arc<dyn Broker> = Arc::new(super::super::embedded::Embedded::new());
        let mut nodes = Vec::new();
        let mut clients = Vec::new();
        let mut inboxes = Vec::new();
        for i in 1..=3 {
            let n = ChatNode::start(
                &format!("n{i}"),
                "127.0.0.1:0",
                broker.clone(),
                Relay::PubSub,
                "t",
            )
            .await
            .unwrap();
            let inbox = SharedInbox::default();
            clients.push(
                ChatClient::connect(n.addr, &format!("u{i}"), inbox.clone())
                    .await
                    .unwrap(),
            );
            inboxes.push((inbox, 3));
            nodes.push(n);
        }
        for c in &mut clients {
            c.send(1, "hi").await.unwrap();
        }
        assert!(wait_for(&inboxes, Duration::from_secs(5)).await);
        for (i, _) in &inboxes {
            let i = i.lock().unwrap();
            assert_eq!(i.got.len(), 3);
            assert_eq!(i.duplicates, 0);
        }
    }

    #[tokio::test]
    async fn bad_input_is_counted_not_relayed() {
        let broker: Arc<dyn Broker> = Arc::new(super::super::embedded::Embedded::new());
        let n = ChatNode::start("n", "127.0.0.1:0", broker, Relay::PubSub, "t")
            .await
            .unwrap();
        let inbox = SharedInbox::default();
        let mut c = ChatClient::connect(n.addr, "u", inbox.clone())
            .await
            .unwrap();
        c.sink.send(Message::text("not json")).await.unwrap();
        let spoof = r#"{"from":"someone else","seq":1,"text":"x"}"#;
        c.sink.send(Message::text(spoof)).await.unwrap();
        c.send(7, "ok").await.unwrap();
        assert!(wait_for(&[(inbox.clone(), 1)], Duration::from_secs(5)).await);
        assert_eq!(n.stats.bad_input.load(Ordering::Relaxed), 2);
        assert_eq!(inbox.lock().unwrap().got.len(), 1);
        assert!(inbox.lock().unwrap().got.contains(&("u".to_string(), 7)));
    }
}
