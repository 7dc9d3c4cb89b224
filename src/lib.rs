//! statescope: shows, from real packets, why TCP is stateful and HTTP is stateless.
//!
//! # Layout
//!
//! Data flows one way through the layers below; each depends only on the ones above it.
//!
//! | module      | what it does |
//! |-------------|--------------|
//! | [`capture`] | where frames come from: pcap/pcapng files ([`capture::pcap_file`]), live interfaces ([`capture::live`]), memory |
//! | [`decode`]  | frame bytes → [`decode::Segment`]: link layers, IPv4 (with fragment reassembly), IPv6, TCP options. The only user of etherparse |
//! | [`tcp`]     | the passive observer: connection table, both endpoints' RFC 9293 state machines, relative seq/ack, Wireshark analysis, Zeek history, reassembly |
//! | [`http`]    | HTTP/1.x and WebSocket parsed on reassembled byte streams |
//! | [`record`]  | the JSON-lines records of the contract (`packet`, `conn`, `http`, `ws`, `lab`) |
//! | [`engine`]  | glues tcp and http together: frames in, records out |
//! | [`output`]  | printers behind one trait: JSON lines, human tables |
//! | [`report`]  | ladder diagrams, time-sequence graphs, the HTML report (reads records only) |
//! | [`server`]  | `serve`: the minimal hyper server that keeps no per-request state, and its stateful contrasts |
//! | [`broker`]  | pub-sub and a consumer-group queue, embedded or over Redis, behind one trait; a stateful WebSocket chat server relaying through it |
//! | [`lab`]     | the lab exercises, each answering one of the lesson's questions from measurements |
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
pub mod lab;
pub mod output;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod server;
pub mod tcp;
pub mod types;
