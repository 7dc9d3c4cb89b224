//! statescope: shows, from real packets, why TCP is stateful and HTTP is stateless.
//!
//! # Layout
//!
//! Each module imports only from the rows above it (`tests/layering.rs` checks the rules
//! that matter most on the source: nothing but [`cli`] names `cli`; [`capture`], [`decode`],
//! [`tcp`], [`http`] and [`tls`] name none of `engine`, `pipeline`, `output`, `report`,
//! `commands`; [`http`] and [`tls`] sit side by side and name neither each other nor are named
//! by anything under them; [`http2`] sits under both and names neither; no two modules import
//! each other, however indirectly).
//!
//! | module      | what it does |
//! |-------------|--------------|
//! | [`types`]   | the shared vocabulary: [`types::Timestamp`], [`types::Frame`], [`types::LinkType`], [`types::Dir`], [`types::PacketSel`]. Imports nothing of the crate |
//! | [`record`]  | the JSON-lines records of the contract (`packet`, `conn`, `http`, `ws`, `lab`) and `tls`, `tls_msg`, `h2` |
//! | [`select`]  | `--where`: a small display filter on records, parsed into a tree and tested per record |
//! | [`capture`] | where frames come from, and nothing else: pcap/pcapng files ([`capture::pcap_file`]), live interfaces ([`capture::live`]), memory; the pcap writer |
//! | [`decode`]  | frame bytes → [`decode::Segment`]: link layers, IPv4 (with fragment reassembly), IPv6, TCP options. The only user of etherparse |
//! | [`tcp`]     | the passive observer: connection table, both endpoints' RFC 9293 state machines, relative seq/ack, Wireshark analysis, Zeek history, reassembly; keeps the layer above's state per connection in a slot of its choosing ([`tcp::Events`]) |
//! | [`http`]    | HTTP/1.x and WebSocket parsed on reassembled byte streams; Follow TCP Stream text |
//! | [`tls`]     | beside `http`: TLS records and handshakes on the streams whose first bytes are a TLS handshake (tls-parser); nothing decrypted |
//! | [`http2`]   | HTTP/2 on reassembled byte streams: frames, per-stream states at each endpoint, HPACK tables (loona-hpack), flow-control windows; entered by the preface, an h2c upgrade (from `http`) or frames found mid-connection |
//! | [`config`]  | the checked settings of each command ([`config::OutputConfig`], [`config::ReplayConfig`], [`config::LiveConfig`], [`config::LabConfig`]); no clap types |
//! | [`output`]  | printers behind one trait, [`output::Sink`]: JSON lines, human tables |
//! | [`engine`]  | glues decode, tcp, http and tls together: frames in, records out to a `Sink` |
//! | [`pipeline`] | the engine on up to three threads: read and decode ahead, track, print ([`pipeline::PrintThread`]) |
//! | [`report`]  | ladder diagrams, time-sequence graphs, the HTML report (reads records only) |
//! | [`broker`]  | pub-sub and a consumer-group queue, embedded or over Redis, behind one trait; a stateful WebSocket chat server relaying through it |
//! | [`server`]  | `serve`'s server: keeps no per-request state, with stateful contrasts |
//! | [`kernel`]  | the kernel's own log of socket states (tracepoint `sock:inet_sock_set_state`) and the one mapping of Linux's bookkeeping onto RFC 9293: the oracle for endpoint states |
//! | [`lab`]     | the lab exercises, each answering one of the lesson's questions from measurements |
//! | [`commands`] | one file per subcommand: the wiring of sources, engine, printers and pictures |
//! | [`cli`]     | clap's definitions, their conversion into [`config`], the dispatch to [`commands`]. The only module that names clap |
//!
//! `main.rs` (the binary) parses, calls [`cli::run`], and maps errors to exit codes.
//!
//! Analysis never reads the clock: capture time comes in with each frame, so replay and live
//! share one code path and the same capture always gives the same records.

pub mod broker;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod config;
pub mod decode;
pub mod engine;
pub mod http;
pub mod http2;
pub mod kernel;
pub mod lab;
pub mod output;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod select;
pub mod server;
pub mod tcp;
pub mod tls;
pub mod types;
pub mod workers;
