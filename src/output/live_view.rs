//! The live view of `statescope live` on a terminal: the open connections with both endpoints'
//! states, redrawn in place on standard error on a timer, whether packets arrive or not.
//!
//! * [`LiveView`] decides what is shown, from snapshots of the engine's open connections
//!   ([`crate::engine::Engine::open_now`]) and the wall clock the caller passes in: a
//!   connection whose endpoints are both done (CLOSED or TIME_WAIT), or that the engine has
//!   finished, stays on view with its final states for [`FADE`], then drops out.
//! * [`Screen`] draws those lines over the previous ones, and [`AboveView`] is the writer for
//!   standard output that erases the view before anything is printed there, so the final
//!   report (and anything printed meanwhile) is never overwritten.
//!
//! The clock belongs here and to the command: the engine is only asked for a snapshot.

use crate::tcp::{state::State, OpenConn};
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a closed (or finished) connection stays on view with its final states.
pub const FADE: Duration = Duration::from_secs(3);
/// Redraw period: five times a second.
pub const PERIOD: Duration = Duration::from_millis(200);
/// Rows shown at most (fewer on a short terminal).
const ROWS: usize = 20;
/// The footnote to rows marked `*`: connections already open when the capture began.
const GUESSED: &str = "* no handshake seen (open before the capture began): the client is \
                       whoever sent first, and ESTABLISHED is what the ACKs show";

/// A connection the view knows: as last seen, and since when it is done.
struct Row {
    now: OpenConn,
    closed_at: Option<Instant>,
    /// The snapshot that last held it.
    seen: u64,
}

/// What the live view shows. See the module doc.
#[derive(Default)]
pub struct LiveView {
    rows: HashMap<u64, Row>,
    generation: u64,
}

impl LiveView {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take a snapshot of the engine's open connections, made at `now`.
    pub fn update(&mut self, now: Instant, open: &[OpenConn]) {
        self.generation += 1;
        let g = self.generation;
        for c in open {
            let row = self.rows.entry(c.conn).or_insert(Row {
                now: *c,
                closed_at: None,
                seen: g,
            });
            row.now = *c;
            row.seen = g;
            if c.closed() {
                row.closed_at.get_or_insert(now);
            } else {
                row.closed_at = None;
            }
        }
        // Gone from the engine (finished: closed and lingered, idle, or its port reused):
        // shown as last seen until it fades.
        self.rows.retain(|_, r| {
            if r.seen != g {
                r.closed_at.get_or_insert(now);
            }
            // A faded row is kept while the engine still holds it, so it does not come back.
            r.seen == g || !faded(r, now)
        });
    }

    /// The connections on view at `now`: most recently active first.
    pub fn visible(&self, now: Instant) -> Vec<&OpenConn> {
        let mut v: Vec<&OpenConn> = self
            .rows
            .values()
            .filter(|r| !faded(r, now))
            .map(|r| &r.now)
            .collect();
        v.sort_unstable_by_key(|c| std::cmp::Reverse((c.last_ts, c.conn)));
        v
    }

    /// The lines of the view at `now`, for a terminal of `width` x `height`; `frames` and
    /// `conns` are the run's counts so far.
    pub fn render(
        &self,
        now: Instant,
        frames: u64,
        conns: u64,
        (width, height): (usize, usize),
    ) -> Vec<String> {
        let shown = self.visible(now);
        let open = shown.iter().filter(|c| !c.closed()).count();
        // Two heading lines, a line for "more", and one spare for the cursor.
        // The footnote to rows marked `*` takes a line too.
        let guessed = shown.iter().any(|c| c.no_handshake);
        let room = ROWS.min(height.saturating_sub(4 + guessed as usize)).max(1);
        let mut lines = vec![
            format!(
                "{frames} frames, {conns} connection{}, {open} open (most recent first; \
                 closed ones fade after {} s)",
                if conns == 1 { "" } else { "s" },
                FADE.as_secs()
            ),
            row_text(
                "conn", "client", "server", "packets", "bytes", "client", "server",
            ),
        ];
        for c in shown.iter().take(room) {
            let addr =
                |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
            let mark = if c.no_handshake { "*" } else { "" };
            lines.push(row_text(
                &format!("{}{mark}", c.conn),
                &addr(c.client),
                &addr(c.server),
                &c.packets.to_string(),
                &c.bytes.to_string(),
                c.client_state.as_str(),
                c.server_state.as_str(),
            ));
        }
        if shown.len() > room {
            lines.push(format!("... {} more", shown.len() - room));
        }
        if guessed {
            lines.push(GUESSED.to_string());
        }
        for l in &mut lines {
            // A wrapped line would throw off the count of lines to redraw over.
            if l.chars().count() > width {
                *l = l.chars().take(width).collect();
            }
        }
        lines
    }
}

/// Done, and for longer than [`FADE`].
fn faded(r: &Row, now: Instant) -> bool {
    r.closed_at
        .is_some_and(|t| now.saturating_duration_since(t) >= FADE)
}

fn row_text(
    conn: &str,
    client: &str,
    server: &str,
    packets: &str,
    bytes: &str,
    cs: &str,
    ss: &str,
) -> String {
    format!("{conn:>5}  {client:<27} {server:<27} {packets:>8} {bytes:>10}  {cs:<13} {ss:<13}")
        .trim_end()
        .to_string()
}

/// A view row as read back from the screen: (conn, client, server, client state, server
/// state). `None` for lines that are not rows. (Tests read the terminal with it.)
pub fn parse_row(line: &str) -> Option<(u64, String, String, State, State)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 7 {
        return None;
    }
    Some((
        f[0].trim_end_matches('*').parse().ok()?,
        f[1].to_string(),
        f[2].to_string(),
        State::from_name(f[5])?,
        State::from_name(f[6])?,
    ))
}

/// How many lines the view occupies on the terminal now; shared with [`AboveView`].
#[derive(Clone, Default)]
pub struct Region(Arc<AtomicUsize>);

impl Region {
    /// Erase the view (cursor up over it, clear to the end of the screen), if drawn.
    pub fn erase(&self) {
        let n = self.0.swap(0, Ordering::SeqCst);
        if n > 0 {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\x1b[{n}A\r\x1b[J");
            let _ = err.flush();
        }
    }
}

/// Draws the view on standard error over its previous lines.
pub struct Screen {
    region: Region,
    next: Instant,
}

impl Screen {
    pub fn new(region: Region) -> Self {
        Screen {
            region,
            next: Instant::now(),
        }
    }

    /// Is a redraw due at `now`?
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// How long until the next redraw is due.
    pub fn until_due(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// Draw `lines` in place of the previous ones, at `now`; the next redraw is due a
    /// [`PERIOD`] later.
    pub fn draw(&mut self, now: Instant, lines: &[String]) {
        self.next = now + PERIOD;
        let before = self.region.0.swap(lines.len(), Ordering::SeqCst);
        // One write per redraw: each line overwritten in place, no blank flash in between.
        let mut s = String::new();
        if before > 0 {
            s.push_str(&format!("\x1b[{before}A"));
        }
        for l in lines {
            s.push_str("\r\x1b[2K");
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("\x1b[J");
        let mut err = io::stderr().lock();
        let _ = err.write_all(s.as_bytes());
        let _ = err.flush();
    }

    /// Erase the view (before the final report).
    pub fn erase(&self) {
        self.region.erase();
    }
}

/// The terminal's size on standard error: (columns, rows); 80 x 24 when unknown.
pub fn terminal_size() -> (usize, usize) {
    // SAFETY: TIOCGWINSZ fills a winsize, which all-zero is a valid value of.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a pointer to a winsize.
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col.into(), ws.ws_row.into())
    } else {
        (80, 24)
    }
}

/// Standard output when the view shares its terminal: the view is erased before every write
/// (and redrawn below it at the next tick), and each write reaches the terminal at once.
pub struct AboveView<W: Write> {
    inner: W,
    region: Region,
}

impl<W: Write> AboveView<W> {
    pub fn new(inner: W, region: Region) -> Self {
        AboveView { inner, region }
    }
}

impl<W: Write> Write for AboveView<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.region.erase();
        let n = self.inner.write(buf)?;
        self.inner.flush()?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Timestamp;

    fn conn(n: u64, c: State, s: State, ts: i64) -> OpenConn {
        OpenConn {
            conn: n,
            client: Some(format!("127.0.0.1:{}", 40000 + n).parse().unwrap()),
            server: Some("127.0.0.1:8080".parse().unwrap()),
            packets: 3,
            bytes: 10,
            client_state: c,
            server_state: s,
            last_ts: Timestamp(ts),
            no_handshake: false,
        }
    }

    fn shown(v: &LiveView, now: Instant) -> Vec<(u64, State, State)> {
        v.visible(now)
            .iter()
            .map(|c| (c.conn, c.client_state, c.server_state))
            .collect()
    }

    use State::*;

    #[test]
    fn closed_connections_show_final_states_then_fade() {
        let t0 = Instant::now();
        let mut v = LiveView::new();
        v.update(t0, &[conn(0, Established, Established, 1)]);
        assert_eq!(shown(&v, t0), [(0, Established, Established)]);
        let t1 = t0 + Duration::from_secs(1);
        let closed = [
            conn(0, TimeWait, Closed, 2),
            conn(1, SynSent, SynReceived, 3),
        ];
        v.update(t1, &closed);
        assert_eq!(
            shown(&v, t1),
            [(1, SynSent, SynReceived), (0, TimeWait, Closed)]
        );
        // Still held by the engine (no packet since): gone after FADE, and stays gone.
        let t2 = t1 + FADE;
        v.update(t2, &closed);
        assert_eq!(shown(&v, t2), [(1, SynSent, SynReceived)]);
        v.update(t2 + PERIOD, &closed);
        assert_eq!(shown(&v, t2 + PERIOD), [(1, SynSent, SynReceived)]);
        // A connection the engine finished without closing fades from when it went.
        let t3 = t2 + Duration::from_secs(1);
        v.update(t3, &[]);
        assert_eq!(shown(&v, t3), [(1, SynSent, SynReceived)]);
        assert_eq!(shown(&v, t3 + FADE - PERIOD), [(1, SynSent, SynReceived)]);
        v.update(t3 + FADE, &[]);
        assert!(shown(&v, t3 + FADE).is_empty());
        assert!(v.rows.is_empty(), "nothing kept once gone and faded");
    }

    /// The rows fit the terminal: never wider (a wrap would break the redraw), never more
    /// than fit, with the rest counted.
    #[test]
    fn render_fits_the_terminal() {
        let now = Instant::now();
        let mut v = LiveView::new();
        let open: Vec<OpenConn> = (0..30)
            .map(|n| conn(n, Established, Established, n as i64))
            .collect();
        v.update(now, &open);
        let lines = v.render(now, 90, 30, (200, 50));
        assert_eq!(lines.len(), 2 + ROWS + 1);
        assert_eq!(lines.last().unwrap(), "... 10 more");
        let row = parse_row(&lines[2]).unwrap();
        assert_eq!(row.0, 29, "most recent first");
        assert_eq!((row.3, row.4), (Established, Established));
        let small = v.render(now, 90, 30, (40, 10));
        assert_eq!(small.len(), 2 + 6 + 1);
        assert!(small.iter().all(|l| l.chars().count() <= 40));
    }

    /// A connection already open when the capture began is marked, with a footnote saying its
    /// roles and ESTABLISHED are guessed from what was seen; one with its handshake in view is
    /// not. The marked row still reads back, and the view still fits the terminal.
    #[test]
    fn connections_open_before_the_capture_are_marked() {
        let now = Instant::now();
        let mut v = LiveView::new();
        let midway = OpenConn {
            no_handshake: true,
            ..conn(1, Established, Established, 2)
        };
        v.update(now, &[conn(0, Established, Established, 1), midway]);
        let lines = v.render(now, 9, 2, (200, 50));
        let rows: Vec<&String> = lines.iter().filter(|l| parse_row(l).is_some()).collect();
        assert_eq!(rows.len(), 2, "{lines:?}");
        assert!(rows[0].trim_start().starts_with("1* "), "{lines:?}");
        assert!(rows[1].trim_start().starts_with("0 "), "{lines:?}");
        assert_eq!(parse_row(rows[0]).unwrap().0, 1);
        assert_eq!(lines.last().unwrap(), GUESSED);
        // Without such a connection, no footnote.
        let mut seen = LiveView::new();
        seen.update(now, &[conn(0, Established, Established, 1)]);
        assert!(!seen
            .render(now, 9, 1, (200, 50))
            .iter()
            .any(|l| l == GUESSED));
        // On a short terminal the footnote costs a row, not the fit.
        let many: Vec<OpenConn> = (0..30)
            .map(|n| OpenConn {
                no_handshake: true,
                ..conn(n, Established, Established, n as i64)
            })
            .collect();
        let mut full = LiveView::new();
        full.update(now, &many);
        let small = full.render(now, 90, 30, (300, 10));
        assert_eq!(small.len(), 2 + 5 + 1 + 1, "{small:?}");
    }
}
