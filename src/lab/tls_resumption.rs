//! `lab tls-resumption`: a returning TLS client skips the full handshake — but only where the
//! server can still find the session. The `login` lab once more, one layer down.
//!
//! What you will see: two `statescope serve --tls` *processes*, A and B, behind one name
//! (`statescope.lab`, one certificate for both, as a load-balanced service has), and a rustls
//! client in the lab with an in-memory resumption store. The client visits A, A again, B, then
//! A is killed by its PID and started again on its port, and the client visits A once more.
//! Each visit is one HTTPS request on its own connection. Everything is captured on `lo`, and
//! the capture, replayed through the engine, says how each connection was set up (the `tls`
//! record's `setup`), how many round trips the client waited for before it could send its
//! request, and how many bytes the server sent in the handshake.
//!
//! * **Session IDs** (`--tls-resumption ids`): A keeps the session in its memory. The second
//!   visit to A resumes; B has never heard of the session and the restarted A has forgotten it:
//!   both are full handshakes, certificate and all — a server-side session.
//! * **Tickets with a shared key** (`--tls-resumption tickets --ticket-key-file F`, the same F
//!   for every instance): the server keeps nothing; the client carries the session sealed in a
//!   ticket, and every instance holding the key opens it. Every visit after the first resumes,
//!   on B and after the restart too — a signed token.
//!
//! Both runs are made twice: limited to TLS 1.2, where a full handshake costs two round trips
//! and a resumed one one, and the capture tells the kinds apart (`resumed_id`,
//! `resumed_ticket`); and limited to TLS 1.3, where every handshake costs one round trip and
//! resumption (`resumed_psk`, either way) saves the certificate and its signature.
//!
//! How the round trips are counted from the capture: the client's data segments are grouped
//! into flights (consecutive segments it sent before the server sent data again); its request
//! rides the last flight the server answered (the lab writes the request before the handshake
//! ends, so rustls sends it the moment it may); each flight before that is one round trip of
//! handshake.
//!
//! Negative controls (`--variant`): `wrong-unshared-ticket-key` runs the ticket instances
//! without the shared key file, each with a key of its own, and must fail
//! `tickets_resume_on_every_instance`; `wrong-ids-with-shared-tickets` gives the "ids" run
//! tickets and a shared key, and must fail `ids_resume_on_same_instance_only`.

use super::common::{self, Checks, Records};
use super::procs::{self, Proc};
use super::{LabCtx, LabDef, LabOut};
use crate::record::{LabRec, PacketRec, Record, TlsRec};
use crate::server::tls::{Resumption, TlsVersion, TlsVersion::V12, TlsVersion::V13};
use crate::types::Dir;
use anyhow::Context;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const LAB: LabDef = LabDef {
    name: "tls-resumption",
    question: "Can a returning TLS client skip the full handshake on any instance, and what must the servers keep for that?",
    summary: "TLS session ids vs tickets across two serve --tls processes and a restart, from the capture",
    run,
};

/// The one name both instances answer for (their shared certificate's).
const SERVER_NAME: &str = "statescope.lab";
/// The wrong variant: ticket instances without the shared key file.
pub const WRONG_UNSHARED_TICKET_KEY: &str = "wrong-unshared-ticket-key";
/// The wrong variant: the "ids" run given tickets and a shared key.
pub const WRONG_IDS_WITH_SHARED_TICKETS: &str = "wrong-ids-with-shared-tickets";
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The visits of one run, in order; `A restarted` comes after A was killed and started again.
const VISITS: [(&str, Instance); 4] = [
    ("A", Instance::A),
    ("A again", Instance::A),
    ("B", Instance::B),
    ("A restarted", Instance::A),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Instance {
    A,
    B,
}

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let variant = ctx.variant_of(
        LAB.name,
        &[WRONG_UNSHARED_TICKET_KEY, WRONG_IDS_WITH_SHARED_TICKETS],
    )?;
    let key = ctx
        .out_dir
        .join(format!("tls-resumption-{}.ticket.key", std::process::id()));
    let result = run_with(ctx, out, variant, &key);
    let _ = std::fs::remove_file(&key);
    result
}

/// One run: a resumption mode under one TLS version, on its own pair of processes.
struct Run {
    version: TlsVersion,
    mode: Resumption,
    /// What the instances were really started with (differs from `mode` under a control).
    args: Vec<String>,
    a: Proc,
    b: Proc,
    /// PIDs of A before and after its restart, and of B.
    pids: [u32; 3],
    visits: Vec<Visit>,
}

/// One visit, as the client saw it.
struct Visit {
    step: &'static str,
    instance: Instance,
    pid: u32,
    client: SocketAddr,
    server: SocketAddr,
    status: u16,
    client_resumed: bool,
}

/// One visit, as the capture saw it.
#[derive(Default)]
struct Seen {
    setup: Option<String>,
    version: Option<String>,
    certificate: bool,
    flights: Flights,
}

/// The handshake cost counted from one connection's data segments ([`flights`]).
#[derive(Default, Debug, PartialEq, Eq)]
struct Flights {
    /// Flights the client sent before the one carrying its request.
    round_trips: u64,
    /// Bytes the server sent before the client's request flight.
    server_bytes: u64,
    /// Bytes of the client's first flight (its ClientHello).
    hello_bytes: u64,
}

/// Count, from `(direction, payload length)` in capture order, the client's flights before its
/// request: the request rides the last client flight that the server answered with data.
fn flights(segments: &[(Dir, u64)]) -> Option<Flights> {
    // (dir, bytes) per flight.
    let mut groups: Vec<(Dir, u64)> = Vec::new();
    for &(dir, len) in segments.iter().filter(|(_, len)| *len > 0) {
        match groups.last_mut() {
            Some((d, n)) if *d == dir => *n += len,
            _ => groups.push((dir, len)),
        }
    }
    let request = groups
        .windows(2)
        .rposition(|w| w[0].0 == Dir::C2s && w[1].0 == Dir::S2c)?;
    let before = &groups[..request];
    Some(Flights {
        round_trips: before.iter().filter(|g| g.0 == Dir::C2s).count() as u64,
        server_bytes: before.iter().filter(|g| g.0 == Dir::S2c).map(|g| g.1).sum(),
        hello_bytes: groups
            .first()
            .filter(|g| g.0 == Dir::C2s)
            .map_or(0, |g| g.1),
    })
}

fn tls_of(recs: &Records, conn: u64) -> Option<&TlsRec> {
    recs.0.iter().find_map(|r| match r {
        Record::Tls(t) if t.conn == conn => Some(t),
        _ => None,
    })
}

fn seen(recs: &Records, v: &Visit) -> Option<Seen> {
    let conn = recs.conn_to(v.client, v.server)?.conn;
    let tls = tls_of(recs, conn)?;
    let segs: Vec<(Dir, u64)> = recs
        .packets_of(conn)
        .iter()
        .map(|p: &&PacketRec| (p.dir, u64::from(p.len)))
        .collect();
    Some(Seen {
        setup: tls.setup.as_deref().map(str::to_string),
        version: tls.version.as_deref().map(str::to_string),
        certificate: tls.cert_subject.is_some(),
        flights: flights(&segs)?,
    })
}

fn is_resumed(setup: Option<&str>) -> bool {
    setup.is_some_and(|s| s.starts_with("resumed") || s == "0rtt")
}

/// A certificate and key for `statescope.lab`, shared by every instance (PEM files in `dir`),
/// and the client's trust in it.
fn lab_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, rustls::RootCertStore)> {
    let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
        .context("cannot make the lab's certificate")?;
    let cert = dir.join("tls-resumption-cert.pem");
    let key = dir.join("tls-resumption-key.pem");
    std::fs::write(&cert, made.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .with_context(|| format!("cannot write {}", key.display()))?;
        f.write_all(made.signing_key.serialize_pem().as_bytes())?;
    }
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(made.cert.der().clone())
        .context("the lab's certificate is not a usable root")?;
    Ok((cert, key, roots))
}

/// A client that remembers sessions (rustls's in-memory store: session ids, tickets, PSKs)
/// for every server named [`SERVER_NAME`].
fn client_config(
    roots: &rustls::RootCertStore,
    version: TlsVersion,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let v: &'static rustls::SupportedProtocolVersion = match version {
        TlsVersion::V12 => &rustls::version::TLS12,
        TlsVersion::V13 => &rustls::version::TLS13,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[v])?
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::in_memory_sessions(32);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One HTTPS request on a fresh connection: the status, and whether the client resumed.
fn visit(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, u16, bool)> {
    let tcp = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let local = tcp.local_addr()?;
    common::note_conn(local, addr);
    let name = ServerName::try_from(SERVER_NAME)?.to_owned();
    let mut conn = rustls::ClientConnection::new(config.clone(), name)?;
    // Written before the handshake ends: rustls holds it and sends it the moment it may, so the
    // request's flight tells where the handshake ended.
    conn.writer().write_all(
        format!("GET / HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closed without close_notify: what came before still counts.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(anyhow::anyhow!("HTTPS request to {addr}: {e}")),
    }
    let status = std::str::from_utf8(response.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let resumed = tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Ok((local, status, resumed))
}

/// The `serve` flags of one run.
fn serve_args(
    cert: &Path,
    key: &Path,
    keylog: &Path,
    version: TlsVersion,
    mode: Resumption,
    ticket_key: &Path,
    variant: Option<&str>,
) -> Vec<String> {
    let real = match (mode, variant) {
        (Resumption::Ids, Some(WRONG_IDS_WITH_SHARED_TICKETS)) => Resumption::Tickets,
        _ => mode,
    };
    let mut args: Vec<String> = vec![
        "--tls".into(),
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
        "--tls-keylog".into(),
        keylog.display().to_string(),
        "--tls-version".into(),
        version.name().into(),
        "--tls-resumption".into(),
        real.name().into(),
    ];
    if real == Resumption::Tickets && variant != Some(WRONG_UNSHARED_TICKET_KEY) {
        args.push("--ticket-key-file".into());
        args.push(ticket_key.display().to_string());
    }
    args
}

fn run_with(
    ctx: &LabCtx,
    out: &mut LabOut,
    variant: Option<&str>,
    ticket_key: &Path,
) -> anyhow::Result<LabRec> {
    common::take_steps();
    if let Some(v) = variant {
        out.say(&format!(
            "NEGATIVE CONTROL {v}: this run uses a deliberately wrong variant and must end ok: false"
        ))?;
    }
    let (cert, key, roots) = lab_certificate(&ctx.out_dir)?;
    // Every instance appends its session secrets here, so the capture can be decrypted.
    let keylog = ctx.out_dir.join(format!("{}.keys", LAB.name));
    let _ = std::fs::remove_file(&keylog);
    let mut runs = Vec::new();
    for version in [TlsVersion::V12, TlsVersion::V13] {
        for mode in [Resumption::Ids, Resumption::Tickets] {
            let args = serve_args(&cert, &key, &keylog, version, mode, ticket_key, variant);
            let tag = format!("tls-{}-{}", version.name(), mode.name());
            let a = procs::start_serve(ctx, &format!("{tag}-A"), &args)?;
            let b = procs::start_serve(ctx, &format!("{tag}-B"), &args)?;
            out.say(&format!(
                "TLS {} {}: A pid {} on {}, B pid {} on {}: serve {}",
                version.name(),
                mode.name(),
                a.pid,
                a.addr,
                b.pid,
                b.addr,
                args.join(" ")
            ))?;
            let pids = [a.pid, 0, b.pid];
            runs.push(Run {
                version,
                mode,
                args,
                a,
                b,
                pids,
                visits: Vec::new(),
            });
        }
    }
    let ports: Vec<u16> = runs
        .iter()
        .flat_map(|r| [r.a.addr.port(), r.b.addr.port()])
        .collect();
    let cap = common::start_capture(&ports, &common::pcap_path(ctx, LAB.name))?;
    out.say(&format!("capturing lo, tcp ports {ports:?}"))?;

    for (i, r) in runs.iter_mut().enumerate() {
        let config = client_config(&roots, r.version)?;
        for (step, instance) in VISITS {
            if step == "A restarted" {
                let old = r.a.pid;
                r.a.kill();
                let tag = format!("tls-{}-{}-A-restarted", r.version.name(), r.mode.name());
                r.a = procs::start_serve_on(ctx, &tag, r.a.addr, &r.args)?;
                r.pids[1] = r.a.pid;
                out.say(&format!(
                    "TLS {} {}: A (pid {old}) killed, started again as pid {}",
                    r.version.name(),
                    r.mode.name(),
                    r.a.pid
                ))?;
            }
            let p = match instance {
                Instance::A => &r.a,
                Instance::B => &r.b,
            };
            common::step(&format!(
                "TLS {} {}: {step}",
                r.version.name(),
                r.mode.name()
            ));
            let (client, status, client_resumed) =
                visit(&config, p.addr).with_context(|| format!("run {} visit {step}", i + 1))?;
            r.visits.push(Visit {
                step,
                instance,
                pid: p.pid,
                client,
                server: p.addr,
                status,
                client_resumed,
            });
        }
    }
    let (captured, recs) = common::finish_capture(cap, out)?;
    out.say(&format!(
        "capture {}; session secrets {} (tshark -r {} -o tls.keylog_file:{} decrypts it)",
        captured.path.display(),
        keylog.display(),
        captured.path.display(),
        keylog.display()
    ))?;
    let old_a_gone = runs.iter().all(|r| !pid_alive(r.pids[0]));
    drop_all(&mut runs);

    let outcomes: Vec<Outcome> = runs
        .iter()
        .flat_map(|r| r.visits.iter().enumerate().map(move |(n, v)| (r, n, v)))
        .map(|(r, n, v)| Outcome::of(r, n, v, &recs))
        .collect();
    for o in &outcomes {
        out.say(&o.line())?;
    }
    if captured.dropped > 0 {
        out.say(&format!(
            "{} frames dropped by the capture",
            captured.dropped
        ))?;
    }
    let restarted = old_a_gone && runs.iter().all(|r| r.pids[1] != r.pids[0]);
    let checks = judge(&outcomes, restarted);
    let failed = checks.failed(out)?;
    let cost = Cost::of(&outcomes);
    let answer = answer(&outcomes, &cost);
    let facts_runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "tls_version": r.version.name(),
                "resumption": r.mode.name(),
                "pids": {"A": r.pids[0], "A_restarted": r.pids[1], "B": r.pids[2]},
                "visits": outcomes
                    .iter()
                    .filter(|o| o.version == r.version && o.mode == r.mode)
                    .map(Outcome::json)
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut settings = common::facts(vec![
        ("server_name", json!(SERVER_NAME)),
        ("tls_versions", json!(["1.2", "1.3"])),
        ("resumption_modes", json!(["ids", "tickets"])),
        (
            "visits",
            json!(VISITS.iter().map(|(s, _)| *s).collect::<Vec<_>>()),
        ),
        (
            "serve_args",
            Value::Array(runs.iter().map(|r| json!(r.args.join(" "))).collect()),
        ),
    ]);
    if let Some(v) = variant {
        settings.insert("variant".into(), json!(v));
    }
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: common::facts(vec![
            ("runs", Value::Array(facts_runs)),
            ("frames", json!(captured.frames)),
            ("tls12_full_server_bytes", json!(cost.bytes(V12, false))),
            ("tls12_resumed_server_bytes", json!(cost.bytes(V12, true))),
            ("tls13_full_server_bytes", json!(cost.bytes(V13, false))),
            ("tls13_resumed_server_bytes", json!(cost.bytes(V13, true))),
        ]),
        ok: failed.is_empty(),
        settings,
        failed,
    };
    common::write_report(
        ctx,
        out,
        &rec,
        &recs,
        &[
            (
                "serve --tls-resumption ids",
                "each session's secrets, in the memory of the instance that made it".into(),
            ),
            (
                "serve --tls-resumption tickets",
                "nothing per session: one ticket key, the same file for every instance".into(),
            ),
        ],
    )?;
    Ok(rec)
}

/// One visit, as the client and the capture saw it.
struct Outcome {
    version: TlsVersion,
    mode: Resumption,
    /// 0-based place in [`VISITS`].
    n: usize,
    step: &'static str,
    instance: Instance,
    pid: u32,
    status: u16,
    client_resumed: bool,
    /// `None`: the connection or its `tls` record is not in the capture.
    seen: Option<Seen>,
}

impl Outcome {
    fn of(r: &Run, n: usize, v: &Visit, recs: &Records) -> Outcome {
        Outcome {
            version: r.version,
            mode: r.mode,
            n,
            step: v.step,
            instance: v.instance,
            pid: v.pid,
            status: v.status,
            client_resumed: v.client_resumed,
            seen: seen(recs, v),
        }
    }
    fn setup(&self) -> Option<&str> {
        self.seen.as_ref().and_then(|s| s.setup.as_deref())
    }
    /// Resumed, by the capture.
    fn resumed(&self) -> bool {
        is_resumed(self.setup())
    }
    fn flights(&self) -> Option<&Flights> {
        self.seen.as_ref().map(|s| &s.flights)
    }
    fn line(&self) -> String {
        let s = self.seen.as_ref();
        format!(
            "TLS {} {:7} {:11} pid {:>7}: {:14} {} round trip(s), server sent {} bytes of handshake{}",
            self.version.name(),
            self.mode.name(),
            self.step,
            self.pid,
            self.setup().unwrap_or("not captured"),
            s.map_or(0, |s| s.flights.round_trips),
            s.map_or(0, |s| s.flights.server_bytes),
            if s.is_some_and(|s| s.certificate) {
                ", certificate seen"
            } else {
                ""
            }
        )
    }
    fn json(&self) -> Value {
        let s = self.seen.as_ref();
        json!({
            "step": self.step,
            "instance": match self.instance { Instance::A => "A", Instance::B => "B" },
            "pid": self.pid,
            "status": self.status,
            "setup": self.setup(),
            "version": s.and_then(|s| s.version.clone()),
            "client_resumed": self.client_resumed,
            "round_trips": s.map(|s| s.flights.round_trips),
            "server_handshake_bytes": s.map(|s| s.flights.server_bytes),
            "client_hello_bytes": s.map(|s| s.flights.hello_bytes),
            "certificate_seen": s.map(|s| s.certificate),
        })
    }
}

/// Every check, on what was measured; each is named so a failed run says which.
fn judge(o: &[Outcome], restarted: bool) -> Checks {
    let mut checks = Checks::default();
    let all = |f: &dyn Fn(&Outcome) -> bool| o.iter().all(f);
    // Holds for every outcome `pick` selects, and there is at least one.
    let each = |pick: &dyn Fn(&Outcome) -> bool, f: &dyn Fn(&Outcome) -> bool| {
        o.iter().any(pick) && o.iter().filter(|x| pick(x)).all(f)
    };
    checks.check("every_visit_answered_200", all(&|x| x.status == 200));
    checks.check("every_visit_in_capture", all(&|x| x.seen.is_some()));
    checks.check(
        "capture_agrees_with_client",
        all(&|x| x.resumed() == x.client_resumed),
    );
    checks.check(
        "first_visit_full",
        each(&|x| x.n == 0, &|x| x.setup() == Some("full")),
    );
    checks.check(
        "same_instance_resumes",
        each(&|x| x.n == 1, &Outcome::resumed),
    );
    checks.check(
        "ids_resume_on_same_instance_only",
        each(&|x| x.mode == Resumption::Ids && x.n > 1, &|x| !x.resumed()),
    );
    checks.check(
        "tickets_resume_on_every_instance",
        each(
            &|x| x.mode == Resumption::Tickets && x.n > 0,
            &Outcome::resumed,
        ),
    );
    checks.check(
        "resumption_named_by_version",
        all(&|x| {
            !x.resumed()
                || x.setup()
                    == Some(match (x.version, x.mode) {
                        (V13, _) => "resumed_psk",
                        (V12, Resumption::Ids) => "resumed_id",
                        _ => "resumed_ticket",
                    })
        }),
    );
    checks.check("restart_is_a_new_process", restarted);
    let rtts = |x: &Outcome| x.flights().map(|f| f.round_trips);
    checks.check(
        "tls12_full_two_round_trips_resumed_one",
        each(&|x| x.version == V12 && !x.resumed(), &|x| {
            rtts(x) == Some(2)
        }) && each(&|x| x.version == V12 && x.resumed(), &|x| {
            rtts(x) == Some(1)
        }),
    );
    checks.check(
        "tls13_one_round_trip_either_way",
        each(&|x| x.version == V13, &|x| rtts(x) == Some(1)),
    );
    let cost = Cost::of(o);
    checks.check(
        "resumed_handshakes_smaller",
        [V12, V13].into_iter().all(|v| {
            let (full, resumed) = (cost.bytes(v, false), cost.bytes(v, true));
            !full.is_empty() && !resumed.is_empty() && resumed[1] < full[0]
        }),
    );
    // TLS 1.2 sends the certificate in cleartext: only full handshakes carry one.
    checks.check(
        "tls12_certificate_only_in_full_handshakes",
        each(&|x| x.version == V12 && x.seen.is_some(), &|x| {
            x.seen.as_ref().is_some_and(|s| s.certificate) != x.resumed()
        }),
    );
    checks
}

/// Round trips and server handshake bytes, per version and kind of handshake.
struct Cost(Vec<(TlsVersion, bool, u64, u64)>);

impl Cost {
    fn of(o: &[Outcome]) -> Cost {
        Cost(
            o.iter()
                .filter_map(|x| {
                    let f = x.flights()?;
                    Some((x.version, x.resumed(), f.round_trips, f.server_bytes))
                })
                .collect(),
        )
    }
    fn select(
        &self,
        v: TlsVersion,
        resumed: bool,
    ) -> impl Iterator<Item = &(TlsVersion, bool, u64, u64)> {
        self.0.iter().filter(move |c| c.0 == v && c.1 == resumed)
    }
    /// `[min, max]` server handshake bytes; empty when there were none of that kind.
    fn bytes(&self, v: TlsVersion, resumed: bool) -> Vec<u64> {
        let b = || self.select(v, resumed).map(|c| c.3);
        match (b().min(), b().max()) {
            (Some(lo), Some(hi)) => vec![lo, hi],
            _ => Vec::new(),
        }
    }
    /// The round trips seen, `2`, or `1 or 2`.
    fn rtts(&self, v: TlsVersion, resumed: bool) -> String {
        let mut x: Vec<u64> = self.select(v, resumed).map(|c| c.2).collect();
        x.sort_unstable();
        x.dedup();
        let x: Vec<String> = x.iter().map(u64::to_string).collect();
        if x.is_empty() {
            "none seen".into()
        } else {
            x.join(" or ")
        }
    }
    /// `lo-hi` bytes, or one number when they are equal.
    fn range(&self, v: TlsVersion, resumed: bool) -> String {
        match self.bytes(v, resumed)[..] {
            [lo, hi] if lo == hi => lo.to_string(),
            [lo, hi] => format!("{lo}-{hi}"),
            _ => "none seen".into(),
        }
    }
}

/// Where the client resumed under `mode`, by step: `(resumed everywhere, full everywhere,
/// depending on the version)`.
fn by_step(o: &[Outcome], mode: Resumption) -> [Vec<&'static str>; 3] {
    let mut out: [Vec<&'static str>; 3] = Default::default();
    for (step, _) in VISITS {
        let xs: Vec<bool> = o
            .iter()
            .filter(|x| x.mode == mode && x.step == step)
            .map(Outcome::resumed)
            .collect();
        let i = if xs.iter().all(|r| *r) {
            0
        } else if xs.iter().all(|r| !*r) {
            1
        } else {
            2
        };
        out[i].push(step);
    }
    out
}

fn said(steps: &[&str]) -> String {
    if steps.is_empty() {
        "none".into()
    } else {
        steps.join(", ")
    }
}

/// The lab's answer, from the outcomes.
fn answer(o: &[Outcome], cost: &Cost) -> String {
    let [ids_res, ids_full, ids_mixed] = by_step(o, Resumption::Ids);
    let [t_res, t_full, t_mixed] = by_step(o, Resumption::Tickets);
    let mixed = if ids_mixed.is_empty() && t_mixed.is_empty() {
        String::new()
    } else {
        format!(
            " Depending on the version: {}.",
            said(&[ids_mixed, t_mixed].concat())
        )
    };
    format!(
        "Only where the server can still find the session. With session IDs each instance \
         keeps the session in its own memory: the client resumed on {} and paid a full \
         handshake on {}. With tickets sealed under one key \
         file shared by every instance the servers keep nothing and the client carries the \
         session: it resumed on {} and paid a full handshake on {}.{mixed} It is the login lab \
         again: session IDs are server-side sessions (they die with the process and do not \
         cross instances unless the cache is shared), tickets are signed tokens (good wherever \
         the key is, so the key file must be shared, and kept secret). What resuming saves, \
         from the capture: in TLS 1.2 a round trip ({} for a full handshake, {} resumed) and \
         the certificate (the server sent {} handshake bytes full, {} resumed); in TLS 1.3 the \
         round trips are the same ({} and {}), and resumption, by a pre-shared key either way \
         (resumed_psk), saves the certificate and its signature ({} bytes full, {} resumed).",
        said(&ids_res),
        said(&ids_full),
        said(&t_res),
        said(&t_full),
        cost.rtts(V12, false),
        cost.rtts(V12, true),
        cost.range(V12, false),
        cost.range(V12, true),
        cost.rtts(V13, false),
        cost.rtts(V13, true),
        cost.range(V13, false),
        cost.range(V13, true),
    )
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

fn drop_all(runs: &mut [Run]) {
    for r in runs {
        r.a.kill();
        r.b.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dir::{C2s, S2c};

    #[test]
    fn flights_count_round_trips_before_the_request() {
        // TLS 1.2 full: hello / certificate flight / key exchange / finished / request / answer.
        let full12 = [
            (C2s, 0),
            (S2c, 0),
            (C2s, 200),
            (S2c, 900),
            (S2c, 100),
            (C2s, 90),
            (S2c, 250),
            (C2s, 120),
            (S2c, 400),
            (S2c, 31),
        ];
        assert_eq!(
            flights(&full12),
            Some(Flights {
                round_trips: 2,
                server_bytes: 1250,
                hello_bytes: 200
            })
        );
        // Resumed: the request rides with the client's Finished.
        let resumed = [(C2s, 210), (S2c, 140), (C2s, 170), (S2c, 400)];
        assert_eq!(flights(&resumed).unwrap().round_trips, 1);
        assert_eq!(flights(&resumed).unwrap().server_bytes, 140);
        // A close_notify the client sends after the answer is no request.
        let closing = [(C2s, 210), (S2c, 140), (C2s, 170), (S2c, 400), (C2s, 24)];
        assert_eq!(flights(&closing), flights(&resumed));
        // Nothing answered: no request flight, no count.
        assert_eq!(flights(&[(C2s, 200)]), None);
        assert_eq!(flights(&[]), None);
    }

    #[test]
    fn the_controls_change_what_the_instances_are_given() {
        let p = Path::new;
        let args = |mode, variant| {
            serve_args(
                p("c"),
                p("k"),
                p("l"),
                TlsVersion::V12,
                mode,
                p("t.key"),
                variant,
            )
            .join(" ")
        };
        assert!(args(Resumption::Tickets, None).ends_with("tickets --ticket-key-file t.key"));
        assert!(args(Resumption::Ids, None).ends_with("--tls-resumption ids"));
        assert!(args(Resumption::Tickets, Some(WRONG_UNSHARED_TICKET_KEY))
            .ends_with("--tls-resumption tickets"));
        assert!(args(Resumption::Ids, Some(WRONG_IDS_WITH_SHARED_TICKETS))
            .ends_with("tickets --ticket-key-file t.key"));
    }
}
