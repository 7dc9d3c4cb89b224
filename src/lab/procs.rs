//! What the scaling labs share: real child processes (`statescope serve`, `redis-server`)
//! started on free loopback ports and killed by their PID, and the timeline page they write
//! with `--html`.
//!
//! A lab about a process dying must kill a process: a task aborted inside the lab's own
//! process frees nothing the lesson is about. Every child here is killed (`SIGKILL`) and reaped
//! on drop, so a lab that fails midway leaves nothing running.

use super::{LabCtx, LabOut};
use crate::record::LabRec;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process listening on `addr`; `SIGKILL`ed and reaped on drop.
pub struct Proc {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub pid: u32,
    log: PathBuf,
}

impl Proc {
    /// Kill it now (`SIGKILL` to its PID) and reap it; returns once it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it has not been killed (and has not exited).
    pub fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last line it wrote on standard error (why it exited, usually).
    pub fn last_log_line(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .to_string()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Start `program args…` and wait until it accepts connections on `addr` (its standard error
/// in `log`). A port taken between choosing and binding is retried by the callers.
fn spawn_listening(
    program: &Path,
    args: &[String],
    addr: SocketAddr,
    log: &Path,
    what: &str,
) -> anyhow::Result<Proc> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", program.display()))?;
    let mut p = Proc {
        pid: child.id(),
        child: Some(child),
        addr,
        log: log.to_path_buf(),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if !p.alive() {
            anyhow::bail!("{what} exited at start: {}", p.last_log_line());
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(p);
        }
        if Instant::now() > deadline {
            anyhow::bail!("{what} did not accept connections on {addr} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `statescope serve --listen 127.0.0.1:PORT --quiet ARGS…`, this program as a child process,
/// its standard error in `OUT_DIR/TAG.log`.
pub fn start_serve(ctx: &LabCtx, tag: &str, args: &[String]) -> anyhow::Result<Proc> {
    let mut last = None;
    // A free port can be taken by someone else before serve binds it: try another.
    for _ in 0..3 {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        match start_serve_on(ctx, tag, addr, args) {
            Ok(p) => return Ok(p),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("serve did not start")))
}

/// [`start_serve`] on a given address: a process killed there, started again.
pub fn start_serve_on(
    ctx: &LabCtx,
    tag: &str,
    addr: SocketAddr,
    args: &[String],
) -> anyhow::Result<Proc> {
    let log = ctx.out_dir.join(format!("{tag}.log"));
    let mut all = vec![
        "serve".to_string(),
        "--listen".into(),
        addr.to_string(),
        "--quiet".into(),
    ];
    all.extend(args.iter().cloned());
    spawn_listening(
        &ctx.exe,
        &all,
        addr,
        &log,
        &format!("`statescope serve` ({tag})"),
    )
}

/// A Redis for the lab: `--redis URL` when given (the lab's processes share it), else a
/// `redis-server` of the lab's own on a free port, without persistence, killed when dropped.
pub struct LabRedis {
    pub url: String,
    /// `Some` when the lab started it.
    pub own: Option<Proc>,
}

impl LabRedis {
    pub fn open(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRedis> {
        if let Some(url) = &ctx.redis {
            out.say(&format!("Redis: {url} (--redis)"))?;
            return Ok(LabRedis {
                url: url.clone(),
                own: None,
            });
        }
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "this lab runs separate processes that share state through Redis: give \
                     --redis redis://HOST:PORT, or install redis-server (apt-get install redis-server)"
                )
            })?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let args: Vec<String> = [
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let log = ctx.out_dir.join("redis-server.log");
            match spawn_listening(
                &bin,
                &args,
                ([127, 0, 0, 1], port).into(),
                &log,
                "redis-server",
            ) {
                Ok(p) => {
                    let url = format!("redis://127.0.0.1:{port}");
                    out.say(&format!(
                        "Redis: {url} (redis-server started by the lab, pid {})",
                        p.pid
                    ))?;
                    return Ok(LabRedis { url, own: Some(p) });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }
}

/// Write the lab's timeline page (`--html FILE`) when asked for, and say where.
pub fn write_page(ctx: &LabCtx, rec: &LabRec, body: &str, out: &mut LabOut) -> anyhow::Result<()> {
    if let Some(path) = &ctx.html {
        // A line the page fills in once drawn, for a headless browser to read back: how many
        // charts, their drawn size, and any script error.
        let body = format!(
            "{body}<pre id=\"selfcheck\">pending</pre><script>addEventListener('load',function(){{\
             var s=document.querySelectorAll('svg.timeline'),w=0,h=0,n=0;\
             s.forEach(function(g){{var b=g.getBBox();w=Math.max(w,b.width);h+=b.height;n+=g.querySelectorAll('circle,polyline,rect').length}});\
             document.getElementById('selfcheck').textContent='charts='+s.length+' drawn_w='+Math.round(w)+' drawn_h='+Math.round(h)+' marks='+n+' errors='+window.__errors.length;}});</script>"
        );
        std::fs::write(path, crate::report::lesson::lab_page(rec, &body))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        out.say(&format!("HTML timeline: {}", path.display()))?;
    }
    Ok(())
}

/// Small SVG pieces for the timelines: every chart is drawn from measured values only.
pub mod svg {
    use std::fmt::Write;

    /// Text safe inside SVG/HTML.
    pub fn esc(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    /// A chart: `width`×`height`, with a title; `body` is what the caller drew.
    pub fn chart(id: &str, title: &str, width: f64, height: f64, body: &str) -> String {
        format!(
            r#"<section class="timeline"><h2>{t}</h2><svg id="{id}" class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="system-ui,sans-serif" font-size="11">{body}</svg></section>
"#,
            t = esc(title),
            id = esc(id),
        )
    }

    pub fn line(out: &mut String, x1: f64, y1: f64, x2: f64, y2: f64, style: &str) {
        let _ = write!(
            out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" style="{style}"/>"#
        );
    }

    pub fn text(out: &mut String, x: f64, y: f64, anchor: &str, s: &str) {
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
            esc(s)
        );
    }

    pub fn rect(out: &mut String, x: f64, y: f64, w: f64, h: f64, class: &str, fill: &str) {
        let _ = write!(
            out,
            r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}"/>"#
        );
    }

    pub fn circle(out: &mut String, x: f64, y: f64, r: f64, class: &str, fill: &str, tip: &str) {
        let _ = write!(
            out,
            r#"<circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}"><title>{}</title></circle>"#,
            esc(tip)
        );
    }

    /// A vertical marker across the plot, labelled (the kill, the outage).
    pub fn marker(out: &mut String, x: f64, top: f64, bottom: f64, label: &str) {
        let _ = write!(out, r#"<g class="kill">"#);
        line(
            out,
            x,
            top,
            x,
            bottom,
            "stroke:#c62828;stroke-width:2;stroke-dasharray:4 3",
        );
        text(out, x + 3.0, top + 10.0, "start", label);
        out.push_str("</g>");
    }

    /// A polyline through `points`.
    pub fn polyline(out: &mut String, points: &[(f64, f64)], class: &str, color: &str) {
        let pts: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = write!(
            out,
            r#"<polyline class="{class}" points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            pts.join(" ")
        );
    }
}
