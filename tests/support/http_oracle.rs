//! statescope's `http` and `ws` records against tshark 4.0's `NAME.http.tsv` (the columns of
//! `tests/fixtures/*.http.tsv`): per TCP stream, in order, the requests (method, URI), the
//! response codes and the WebSocket opcodes. Shared by `tests/replay.rs` (cleartext) and
//! `tests/tls_decrypt.rs` (HTTP decrypted from TLS).
#![allow(dead_code)]

use statescope::record::Record;
use std::collections::BTreeMap;

/// A tshark `-T fields` file with a header row: one map per row.
pub use crate::tsv::read as tsv;

/// Per stream: requests, response codes, WebSocket opcodes, each as text. With frames, each
/// message also carries the frame that completed it (tshark's frame of the reassembled message;
/// statescope's `end_frame`) and a response the frame of its request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Messages {
    pub requests: Vec<String>,
    pub responses: Vec<String>,
    pub ws: Vec<String>,
}

/// The differences between `recs` and tshark's `rows`, one line each (empty: they agree).
/// `stream_of` maps a statescope connection to its `tcp.stream`; `frames` compares the frame
/// numbers too.
pub fn compare_http(
    rows: &[crate::tsv::Row],
    recs: &[Record],
    stream_of: &dyn Fn(u64) -> Option<u64>,
    frames: bool,
) -> Vec<String> {
    let mut want: BTreeMap<u64, Messages> = BTreeMap::new();
    for h in rows {
        let Some(s) = h.get("tcp.stream").and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let w = want.entry(s).or_default();
        let at = |what: String| {
            if frames {
                format!("{what} @{}", h["frame.number"])
            } else {
                what
            }
        };
        let methods: Vec<&str> = h["http.request.method"].split(',').collect();
        let uris: Vec<&str> = h["http.request.uri"].split(',').collect();
        for (i, m) in methods.iter().enumerate().filter(|(_, m)| !m.is_empty()) {
            w.requests
                .push(at(format!("{m} {}", uris.get(i).unwrap_or(&""))));
        }
        let reqs: Vec<&str> = h
            .get("http.request_in")
            .map_or(Vec::new(), |r| r.split(',').collect());
        for (i, c) in h["http.response.code"]
            .split(',')
            .filter(|c| !c.is_empty())
            .enumerate()
        {
            let c = if frames {
                format!("{c} for {}", reqs.get(i).unwrap_or(&""))
            } else {
                c.to_string()
            };
            w.responses.push(at(c));
        }
        w.ws.extend(
            h["websocket.opcode"]
                .split(',')
                .filter(|c| !c.is_empty())
                .map(|c| at(c.to_string())),
        );
    }
    let mut got: BTreeMap<u64, Messages> = BTreeMap::new();
    for r in recs {
        match r {
            Record::Http(h) => {
                let Some(s) = stream_of(h.conn) else {
                    continue;
                };
                let g = got.entry(s).or_default();
                let at = |what: String| {
                    if frames {
                        format!("{what} @{}", h.end_frame.unwrap_or(h.frame))
                    } else {
                        what
                    }
                };
                if let Some(m) = &h.method {
                    g.requests
                        .push(at(format!("{m} {}", h.uri.clone().unwrap_or_default())));
                }
                if let Some(st) = h.status {
                    let c = if frames {
                        format!(
                            "{st} for {}",
                            h.request_frame.map(|f| f.to_string()).unwrap_or_default()
                        )
                    } else {
                        st.to_string()
                    };
                    g.responses.push(at(c));
                }
            }
            Record::Ws(w) => {
                if let Some(s) = stream_of(w.conn) {
                    let op = if frames {
                        format!("{} @{}", w.opcode, w.frame)
                    } else {
                        w.opcode.to_string()
                    };
                    got.entry(s).or_default().ws.push(op);
                }
            }
            _ => {}
        }
    }
    let mut bad = Vec::new();
    let streams: std::collections::BTreeSet<u64> = want.keys().chain(got.keys()).copied().collect();
    for s in streams {
        let (w, g) = (
            want.get(&s).cloned().unwrap_or_default(),
            got.get(&s).cloned().unwrap_or_default(),
        );
        if w != g {
            bad.push(format!("stream {s} http: tool {g:?} tshark {w:?}"));
        }
    }
    bad
}
