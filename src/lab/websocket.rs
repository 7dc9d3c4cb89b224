//! `lab websocket`: an HTTP request that turns into a long-lived, stateful conversation.
//!
//! What you will see: a `GET /ws` with `Upgrade: websocket` answered `101 Switching
//! Protocols`, after which the same TCP connection carries WebSocket frames both ways. The
//! server keeps state for each WebSocket connection — a message count and a short history —
//! and its replies show it growing: 1, 2, 3 on the first connection, while a second connection
//! starts its own count at 1. `/state` counts both connections' state in server memory.
//!
//! Each reply also carries the history the server kept for that connection, which the lab
//! prints: the first connection's three messages, never the second's.
//!
//! Then the server restarts. Its open connections get a Close frame (1001, going away) and the
//! state is gone: a new connection to the restarted server starts at 1 with an empty history.
//! That is why WebSocket is stateful: messages mean something only in the context of the
//! connection they arrive on, held by one server process, and both live exactly as long.

use super::common::{self, fresh, raw_request, Checks, WsClient};
use super::{LabCtx, LabDef, LabOut};
use crate::record::{Dir, LabRec, Record};
use crate::server::ServerConfig;
use serde_json::{json, Value};

pub const LAB: LabDef = LabDef {
    name: "websocket",
    question: "Why is WebSocket stateful?",
    summary: "upgrade to WebSocket, per-connection state growing message by message, gone when the server restarts",
    run,
};

/// Send one message and return the server's reply as JSON.
fn say(ws: &mut WsClient, text: &str) -> anyhow::Result<Value> {
    ws.send_text(text)?;
    let (op, payload) = ws.recv()?;
    if op != 0x1 {
        anyhow::bail!("expected a text reply to {text:?}, got opcode {op}");
    }
    Ok(serde_json::from_slice(&payload).unwrap_or(Value::Null))
}

fn count(v: &Value) -> u64 {
    v["messages_on_this_connection"].as_u64().unwrap_or(0)
}

/// The history the server says it keeps for the connection, from a reply.
fn history(v: &Value) -> Vec<String> {
    v["history"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// "1 frame", "2 frames".
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let control = common::begin(out)?;
    let (server, cap) = common::start_served(ctx, LAB.name, out)?;
    let addr = server.addr();

    common::step("first WebSocket: hello 1, 2, 3; closed by the restart");
    let (mut ws1, _) = WsClient::connect(addr)?;
    let c1 = ws1.local()?;
    let sent1: Vec<String> = (1..=3).map(|i| format!("hello {i}")).collect();
    let mut counts1 = Vec::new();
    let mut last1 = Value::Null;
    for text in &sent1 {
        last1 = say(&mut ws1, text)?;
        counts1.push(count(&last1));
    }
    common::step("second WebSocket: its own count; closed by the restart");
    let (mut ws2, _) = WsClient::connect(addr)?;
    let c2 = ws2.local()?;
    let r2 = say(&mut ws2, "a second connection")?;
    let counts2 = vec![count(&r2)];
    common::step("/state: what the server holds");
    let state_get = raw_request(addr, "GET", "/state", &[], "");
    let before = fresh(addr, &state_get)?.json();
    let open_before = before["stateful_contrasts"]["websocket_connections_open"].as_u64();
    let hist_before = before["stateful_contrasts"]["websocket_history_entries"].as_u64();

    // Restart: the open connections are told the server is going away.
    let server = common::restart_server(server, ServerConfig::default())?;
    let close1 = ws1.recv().map(|(op, p)| (op, close_code(&p))).ok();
    let close2 = ws2.recv().map(|(op, p)| (op, close_code(&p))).ok();
    drop((ws1, ws2));

    common::step("WebSocket to the restarted server: starts at 1");
    let (mut ws3, _) = WsClient::connect(addr)?;
    let c3 = ws3.local()?;
    let r3 = say(&mut ws3, "hello again")?;
    let counts3 = vec![count(&r3)];
    common::step("/state after the restart");
    let after = fresh(addr, &state_get)?.json();
    let open_after = after["stateful_contrasts"]["websocket_connections_open"].as_u64();
    let hist_after = after["stateful_contrasts"]["websocket_history_entries"].as_u64();
    ws3.send_close()?;
    let _ = ws3.recv(); // the server's Close reply
    drop(ws3);
    drop(server);

    let (cap, recs) = common::finish_capture(cap, out)?;

    // ---- measure ----
    let mut checks = Checks::default();
    let upgrades = recs
        .http()
        .filter(|h| h.status == Some(101) && h.upgrade.as_deref() == Some("websocket"))
        .count();
    let (hist1, hist2, hist3) = (history(&last1), history(&r2), history(&r3));
    checks.check("three_upgrades_101", upgrades == 3);
    checks.check("first_connection_counts_1_2_3", counts1 == [1, 2, 3]);
    checks.check("first_connection_history_is_its_messages", hist1 == sent1);
    checks.check("second_connection_counts_from_1", counts2 == [1]);
    checks.check(
        "second_connection_history_is_its_message",
        hist2 == ["a second connection"],
    );
    checks.check(
        "state_holds_2_connections_4_entries",
        open_before == Some(2) && hist_before == Some(4),
    );
    checks.check(
        "restart_closes_each_with_1001",
        close1 == Some((0x8, Some(1001))) && close2 == Some((0x8, Some(1001))),
    );
    checks.check(
        "after_restart_counts_from_1",
        counts3 == [1] && hist3 == ["hello again"],
    );
    checks.check(
        "state_after_restart_only_new_connection",
        open_after == Some(1) && hist_after == Some(1),
    );
    let ws_frames = |conn: u64, dir: Dir| {
        recs.0
            .iter()
            .filter(|r| matches!(r, Record::Ws(w) if w.conn == conn && w.dir == dir))
            .count()
    };
    let mut per_conn = Vec::new();
    for (label, c) in [("first", c1), ("second", c2), ("after restart", c3)] {
        let Some(rec) = recs.conn_of(c) else {
            continue;
        };
        let up = ws_frames(rec.conn, Dir::C2s);
        let down = ws_frames(rec.conn, Dir::S2c);
        out.say(&format!(
            "WebSocket conn {} ({label}): 1 HTTP request, then {} up and {} down over {:.1} ms on the same TCP connection; ended {}/{}",
            rec.conn,
            plural(up, "frame", "frames"),
            plural(down, "frame", "frames"),
            (rec.last_ts - rec.first_ts) * 1e3,
            rec.client_state,
            rec.server_state
        ))?;
        per_conn.push(json!({
            "conn": rec.conn, "http_requests": rec.http_requests, "ws_c2s": up, "ws_s2c": down,
            "duration_s": rec.last_ts - rec.first_ts,
        }));
    }
    checks.check("three_ws_connections_captured", per_conn.len() == 3);
    let ws_total = recs.0.iter().filter(|r| matches!(r, Record::Ws(_))).count();
    let text_up: Vec<u64> = recs
        .0
        .iter()
        .filter_map(|r| match r {
            Record::Ws(w) if w.dir == Dir::C2s && w.opcode == 1 => Some(w.len),
            _ => None,
        })
        .collect();
    checks.check("five_text_messages_up", text_up.len() == 5);
    let failed = checks.failed(out)?;
    out.say(&format!(
        "Replies carried the server's per-connection count: first {counts1:?}, second {counts2:?}; /state: {} connections, {} history entries held.",
        open_before.unwrap_or(0),
        hist_before.unwrap_or(0)
    ))?;
    out.say(&format!(
        "History the server kept, as its last reply showed it: first connection {hist1:?}; second {hist2:?}."
    ))?;
    out.say(&format!(
        "Restart: both open connections got Close {}/{}; a new connection then counted {counts3:?} with history {hist3:?}; /state: {}, {}.",
        close1.and_then(|c| c.1).map_or("none".into(), |c| c.to_string()),
        close2.and_then(|c| c.1).map_or("none".into(), |c| c.to_string()),
        plural(open_after.unwrap_or(0) as usize, "connection", "connections"),
        plural(hist_after.unwrap_or(0) as usize, "history entry", "history entries")
    ))?;
    out.say(&format!(
        "Capture: {} ({} frames).",
        cap.path.display(),
        cap.frames
    ))?;

    let answer = format!(
        "After one HTTP request upgraded it (101), each connection carried a conversation whose meaning lives in the server: \
         replies counted {counts1:?} on one connection and {counts2:?} on another, and the server held {} connections' state ({} history entries: \
         {hist1:?} for the first, {hist2:?} for the second). \
         Restarting the server closed them (1001) and the state was gone: a new connection counted {counts3:?} with history {hist3:?}. \
         The state belongs to one connection on one server process, so WebSocket is stateful.",
        open_before.unwrap_or(0),
        hist_before.unwrap_or(0)
    );
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: common::facts(vec![
            ("upgrades", json!(upgrades)),
            ("ws_frames", json!(ws_total)),
            ("text_messages_up", json!(text_up.len())),
            ("text_message_bytes_up", json!(text_up)),
            ("counts_first", json!(counts1)),
            ("counts_second", json!(counts2)),
            ("counts_after_restart", json!(counts3)),
            ("history_first", json!(hist1)),
            ("history_second", json!(hist2)),
            ("history_after_restart", json!(hist3)),
            ("ws_open_before_restart", json!(open_before)),
            ("history_entries_before_restart", json!(hist_before)),
            ("ws_open_after_restart", json!(open_after)),
            ("history_entries_after_restart", json!(hist_after)),
            (
                "restart_close_codes",
                json!([close1.and_then(|c| c.1), close2.and_then(|c| c.1)]),
            ),
            ("ws_conns", json!(per_conn)),
            ("conns_total", json!(recs.conns().count())),
            ("frames", json!(cap.frames)),
            ("pcap", json!(cap.path.display().to_string())),
        ]),
        settings: common::facts(vec![
            ("messages_first", json!(sent1.len())),
            ("control", json!(control)),
        ]),
        ok: failed.is_empty(),
        failed,
    };
    common::write_report(
        ctx,
        out,
        &rec,
        &recs,
        &[
            (
                "serve, per WebSocket connection",
                format!("a per-connection history: {hist1:?} (first), {hist2:?} (second); gone at the restart"),
            ),
            (
                "serve, for HTTP requests",
                "nothing once answered (the upgrade request included)".into(),
            ),
            (
                "serve after the restart",
                format!("only the new connection's history: {hist3:?}"),
            ),
        ],
    )?;
    Ok(rec)
}

/// The status code of a Close frame's payload.
fn close_code(payload: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(payload.get(..2)?.try_into().ok()?))
}
