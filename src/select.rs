//! `--where EXPR`: a small display filter on records, parsed once into a tree and tested on
//! each record by the printer's wrapper ([`crate::output`]). Without `--where` nothing here runs.
//!
//! ```text
//! expr   := term { ("or" | "||") term }
//! term   := factor { ("and" | "&&") factor }
//! factor := ("not" | "!") factor | "(" expr ")" | test
//! test   := "port" N | "host" ADDR | "conn" N | "type" (packet|conn|http|ws|lab)
//!         | "state" STATE | "conn_state" CODE | "event" EVENT
//!         | "method" NAME | "status" (N | Nxx) | "request" | "response"
//! ```
//!
//! `and` binds tighter than `or`. A tshark-like subset means the same tests:
//! `tcp.port == N`, `ip.addr == A` / `ipv6.addr == A`, `tcp.stream == N`,
//! `tcp.analysis.EVENT` (Wireshark's names: `duplicate_ack` is `dup_ack`, `keep_alive`,
//! `zero_window_probe`, …), `http.request`, `http.response`, `http.request.method == "GET"`,
//! `http.response.code == 404`, `tcp.flags.reset == 1`-style forms are not supported.
//!
//! Which records a test can match (a test never matches a record it does not apply to):
//!
//! | test | packet | conn | http, ws | lab |
//! |---|---|---|---|---|
//! | `port`, `host` | either endpoint | client or server | the connection's endpoints | – |
//! | `conn`, `type` | yes | yes | yes | `type` only |
//! | `state` | either endpoint's state after the packet | either endpoint's final state | – | – |
//! | `conn_state` | – | Zeek's code | – | – |
//! | `event` | in `analysis` | in `analysis_counts` | – | – |
//! | `method`, `status`, `request`, `response` | – | – | http | – |
//!
//! `http` and `ws` records carry no addresses: for them `port` and `host` look at the endpoints
//! of the connection's packet records, which the printer then asks the engine to make.

use crate::capture::filter::Tokens;
use crate::record::{ConnRec, Record};
use crate::tcp::analysis::ev;
use crate::tcp::state::State;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Analysis event names, as in `packet` records.
const EVENTS: [&str; 14] = ev::NAMES;

/// Zeek's conn_state codes.
const CONN_STATES: [&str; 13] = [
    "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH",
];

const TYPES: [&str; 5] = ["packet", "conn", "http", "ws", "lab"];

/// What `--where` accepts, for error messages.
pub const SUPPORTED: &str = "supported: port N, host ADDR, conn N, type packet|conn|http|ws, \
     state STATE, conn_state CODE, event EVENT, method NAME, status N|Nxx, request, response, \
     joined with and/or/not and parentheses (tshark-like: tcp.port == N, ip.addr == A, \
     tcp.stream == N, tcp.analysis.EVENT, http.request, http.response, \
     http.request.method == \"M\", http.response.code == N); see README \"Narrowing\"";

/// One test on a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    Port(u16),
    Host(IpAddr),
    Conn(u64),
    Type(&'static str),
    State(&'static str),
    ConnState(&'static str),
    Event(&'static str),
    Method(String),
    /// An exact code (`404`) or a class (`4xx`: `lo..=hi`).
    Status(u16, u16),
    Request,
    Response,
}

/// A `--where` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    Test(Test),
    Not(Box<Where>),
    And(Box<Where>, Box<Where>),
    Or(Box<Where>, Box<Where>),
}

/// A `--where` expression that could not be parsed: one line naming the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--where {expr:?}: {what} ({SUPPORTED})")]
pub struct WhereError {
    pub expr: String,
    pub what: String,
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Where::Test(t) => match t {
                Test::Port(p) => write!(f, "port {p}"),
                Test::Host(a) => write!(f, "host {a}"),
                Test::Conn(c) => write!(f, "conn {c}"),
                Test::Type(t) => write!(f, "type {t}"),
                Test::State(s) => write!(f, "state {s}"),
                Test::ConnState(s) => write!(f, "conn_state {s}"),
                Test::Event(e) => write!(f, "event {e}"),
                Test::Method(m) => write!(f, "method \"{m}\""),
                Test::Status(lo, hi) if lo == hi => write!(f, "status {lo}"),
                Test::Status(lo, _) => write!(f, "status {}xx", lo / 100),
                Test::Request => write!(f, "request"),
                Test::Response => write!(f, "response"),
            },
            Where::Not(e) => write!(f, "not ({e})"),
            Where::And(a, b) => write!(f, "({a}) and ({b})"),
            Where::Or(a, b) => write!(f, "({a}) or ({b})"),
        }
    }
}

/// Parse a `--where` expression.
pub fn parse(text: &str) -> Result<Where, WhereError> {
    let err = |what: String| WhereError {
        expr: text.to_string(),
        what,
    };
    let tokens = tokenize(text).map_err(err)?;
    if tokens.is_empty() {
        return Err(err("empty expression".into()));
    }
    let mut p = Parser(Tokens::new(tokens));
    let e = p.or().map_err(err)?;
    if let Some(t) = p.peek() {
        return Err(err(format!("unexpected {t:?} after a complete expression")));
    }
    Ok(e)
}

/// Words, numbers, addresses and quoted strings; `(`, `)`, `!`, `&&`, `||`, `==` apart.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            out.push(c.to_string());
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some(q) if q == c => break,
                    Some(x) => s.push(x),
                    None => return Err(format!("unterminated quote {c}")),
                }
            }
            out.push(format!("\"{s}"));
        } else if "!&|=".contains(c) {
            chars.next();
            let two = chars.peek().copied();
            match (c, two) {
                ('&', Some('&')) | ('|', Some('|')) | ('=', Some('=')) => {
                    chars.next();
                    out.push(format!("{c}{c}"));
                }
                ('!', Some('=')) => {
                    return Err("\"!=\" is not supported; write not (A == B)".into())
                }
                ('!', _) => out.push("!".into()),
                _ => return Err(format!("unexpected {c:?}")),
            }
        } else {
            let mut s = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() || "()!&|=\"'".contains(x) {
                    break;
                }
                s.push(x);
                chars.next();
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// The grammar of the module doc over the capture filter's token cursor.
struct Parser(Tokens);

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.0.peek()
    }
    fn next(&mut self) -> Option<String> {
        self.0.take()
    }
    fn eat(&mut self, words: &[&str]) -> bool {
        self.0.eat(words)
    }

    fn or(&mut self) -> Result<Where, String> {
        let mut e = self.and()?;
        while self.eat(&["or", "||"]) {
            e = Where::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Where, String> {
        let mut e = self.factor()?;
        while self.eat(&["and", "&&"]) {
            e = Where::And(Box::new(e), Box::new(self.factor()?));
        }
        Ok(e)
    }

    fn factor(&mut self) -> Result<Where, String> {
        if self.eat(&["not", "!"]) {
            return Ok(Where::Not(Box::new(self.factor()?)));
        }
        if self.eat(&["("]) {
            let e = self.or()?;
            if !self.eat(&[")"]) {
                return Err(match self.peek() {
                    Some(t) => format!("expected \")\" but found {t:?}"),
                    None => "missing \")\"".into(),
                });
            }
            return Ok(e);
        }
        self.test().map(Where::Test)
    }

    /// The value after a keyword (`port 80`) or after `==` (`tcp.port == 80`).
    fn value(&mut self, key: &str, tshark: bool) -> Result<String, String> {
        if tshark && !self.eat(&["==", "eq"]) {
            return Err(match self.peek() {
                Some(t) => format!("{key}: expected \"==\" but found {t:?} (only == is supported)"),
                None => format!("{key}: expected \"== VALUE\""),
            });
        }
        match self.next() {
            Some(v) if !["(", ")", "!", "&&", "||", "=="].contains(&v.as_str()) => {
                Ok(v.strip_prefix('"').map(str::to_string).unwrap_or(v))
            }
            Some(v) => Err(format!("{key}: expected a value but found {v:?}")),
            None => Err(format!("{key}: missing value")),
        }
    }

    fn test(&mut self) -> Result<Test, String> {
        let Some(word) = self.next() else {
            return Err("expression ends where a test was expected".into());
        };
        let key = word.to_ascii_lowercase();
        let tshark = key.contains('.');
        let num = |key: &str, v: &str| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{key}: {v:?} is not a number"))
        };
        let one_of = |key: &str, v: &str, set: &[&'static str]| -> Result<&'static str, String> {
            set.iter()
                .find(|s| s.eq_ignore_ascii_case(v))
                .copied()
                .ok_or_else(|| format!("{key}: unknown value {v:?} (one of {})", set.join(" ")))
        };
        if let Some(ev) = key.strip_prefix("tcp.analysis.") {
            let name = match ev {
                "duplicate_ack" => "dup_ack",
                "keep_alive" => "keep_alive",
                other => other,
            };
            return one_of(&word, name, &EVENTS).map(Test::Event);
        }
        Ok(match key.as_str() {
            "port" | "tcp.port" => {
                let v = self.value(&word, tshark)?;
                let n = num(&word, &v)?;
                Test::Port(u16::try_from(n).map_err(|_| format!("{word}: {n} is not a port"))?)
            }
            "host" | "ip.addr" | "ipv6.addr" => {
                let v = self.value(&word, tshark)?;
                Test::Host(
                    v.parse()
                        .map_err(|_| format!("{word}: {v:?} is not a numeric IP address"))?,
                )
            }
            "conn" | "tcp.stream" => {
                let v = self.value(&word, tshark)?;
                Test::Conn(num(&word, &v)?)
            }
            "type" => Test::Type(one_of(&word, &self.value(&word, false)?, &TYPES)?),
            "state" => {
                let states = State::ALL.map(State::as_str);
                Test::State(one_of(&word, &self.value(&word, false)?, &states)?)
            }
            "conn_state" => {
                Test::ConnState(one_of(&word, &self.value(&word, false)?, &CONN_STATES)?)
            }
            "event" => Test::Event(one_of(&word, &self.value(&word, false)?, &EVENTS)?),
            "method" | "http.request.method" => {
                Test::Method(self.value(&word, tshark)?.to_ascii_uppercase())
            }
            "status" | "http.response.code" => {
                let v = self.value(&word, tshark)?;
                let lower = v.to_ascii_lowercase();
                match lower.strip_suffix("xx") {
                    Some(d) if !tshark && d.len() == 1 && ("1"..="5").contains(&d) => {
                        let lo = num(&word, d)? as u16 * 100;
                        Test::Status(lo, lo + 99)
                    }
                    _ => {
                        let n = num(&word, &v)?;
                        let n = u16::try_from(n)
                            .map_err(|_| format!("{word}: {n} is not a status code"))?;
                        Test::Status(n, n)
                    }
                }
            }
            "request" | "http.request" => Test::Request,
            "response" | "http.response" => Test::Response,
            _ => return Err(format!("unsupported token {word:?}")),
        })
    }
}

/// The state of [`Where::matches`] across records: each connection's endpoints, learned from
/// its packet records, for `http` and `ws` records (which carry none), forgotten at its `conn`
/// record.
pub struct Ends {
    /// Only when the expression looks at addresses.
    track: bool,
    by_conn: HashMap<u64, (SocketAddr, SocketAddr)>,
}

impl Ends {
    pub fn new(expr: &Where) -> Ends {
        Ends {
            track: expr.uses_addresses(),
            by_conn: HashMap::new(),
        }
    }
}

impl Where {
    /// Whether any test needs addresses (`port`, `host`): then `http`/`ws` records need their
    /// connection's packet records to be judged.
    pub fn uses_addresses(&self) -> bool {
        match self {
            Where::Test(t) => matches!(t, Test::Port(_) | Test::Host(_)),
            Where::Not(e) => e.uses_addresses(),
            Where::And(a, b) | Where::Or(a, b) => a.uses_addresses() || b.uses_addresses(),
        }
    }

    /// Whether `rec` passes. `ends` remembers what earlier records showed.
    pub fn matches(&self, rec: &Record, ends: &mut Ends) -> bool {
        let conn_ends = |c: &ConnRec| -> Option<(SocketAddr, SocketAddr)> {
            Some((c.client.parse().ok()?, c.server.parse().ok()?))
        };
        let pair = match rec {
            Record::Packet(p) => {
                if ends.track {
                    ends.by_conn.entry(p.conn).or_insert((p.src.0, p.dst.0));
                }
                Some((p.src.0, p.dst.0))
            }
            Record::Conn(c) => {
                ends.by_conn.remove(&c.conn);
                conn_ends(c)
            }
            Record::Http(h) => ends.by_conn.get(&h.conn).copied(),
            Record::Ws(w) => ends.by_conn.get(&w.conn).copied(),
            Record::Tls(t) => ends.by_conn.get(&t.conn).copied(),
            Record::TlsMsg(m) => ends.by_conn.get(&m.conn).copied(),
            Record::H2(f) => ends.by_conn.get(&f.conn).copied(),
            Record::Lab(_) => None,
        };
        self.eval(rec, pair)
    }

    fn eval(&self, rec: &Record, pair: Option<(SocketAddr, SocketAddr)>) -> bool {
        match self {
            Where::Not(e) => !e.eval(rec, pair),
            Where::And(a, b) => a.eval(rec, pair) && b.eval(rec, pair),
            Where::Or(a, b) => a.eval(rec, pair) || b.eval(rec, pair),
            Where::Test(t) => test(t, rec, pair),
        }
    }
}

fn test(t: &Test, rec: &Record, pair: Option<(SocketAddr, SocketAddr)>) -> bool {
    let conn = match rec {
        Record::Packet(p) => Some(p.conn),
        Record::Conn(c) => Some(c.conn),
        Record::Http(h) => Some(h.conn),
        Record::Ws(w) => Some(w.conn),
        Record::Tls(t) => Some(t.conn),
        Record::TlsMsg(m) => Some(m.conn),
        Record::H2(f) => Some(f.conn),
        Record::Lab(_) => None,
    };
    match t {
        Test::Port(n) => pair.is_some_and(|(a, b)| a.port() == *n || b.port() == *n),
        Test::Host(ip) => pair.is_some_and(|(a, b)| a.ip() == *ip || b.ip() == *ip),
        Test::Conn(n) => conn == Some(*n),
        Test::Type(ty) => {
            *ty == match rec {
                Record::Packet(_) => "packet",
                Record::Conn(_) => "conn",
                Record::Http(_) => "http",
                Record::Ws(_) => "ws",
                Record::Tls(_) => "tls",
                Record::TlsMsg(_) => "tls_msg",
                Record::H2(_) => "h2",
                Record::Lab(_) => "lab",
            }
        }
        Test::State(s) => match rec {
            Record::Packet(p) => p.client_state == *s || p.server_state == *s,
            Record::Conn(c) => c.client_state == *s || c.server_state == *s,
            _ => false,
        },
        Test::ConnState(s) => matches!(rec, Record::Conn(c) if c.conn_state == *s),
        Test::Event(e) => match rec {
            Record::Packet(p) => p.analysis.iter().any(|a| a == e),
            Record::Conn(c) => c.analysis_counts.contains_key(*e),
            _ => false,
        },
        Test::Method(m) => {
            matches!(rec, Record::Http(h) if h.method.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(m)))
        }
        Test::Status(lo, hi) => {
            matches!(rec, Record::Http(h) if h.status.is_some_and(|s| (*lo..=*hi).contains(&s)))
        }
        Test::Request => matches!(rec, Record::Http(h) if h.method.is_some()),
        Test::Response => matches!(rec, Record::Http(h) if h.status.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Addr, HttpRec, PacketRec};
    use std::borrow::Cow;

    fn packet(
        conn: u64,
        src: &str,
        dst: &str,
        analysis: &[&'static str],
        cs: &'static str,
    ) -> Record {
        Record::Packet(PacketRec {
            conn,
            src: src.parse::<Addr>().unwrap(),
            dst: dst.parse::<Addr>().unwrap(),
            analysis: analysis.iter().map(|a| Cow::Borrowed(*a)).collect(),
            client_state: Cow::Borrowed(cs),
            server_state: Cow::Borrowed("ESTABLISHED"),
            ..PacketRec::default()
        })
    }

    fn http(conn: u64, method: Option<&'static str>, status: Option<u16>) -> Record {
        Record::Http(Box::new(HttpRec {
            conn,
            method: method.map(Cow::Borrowed),
            status,
            ..HttpRec::default()
        }))
    }

    fn conn(n: u64, client: &str, server: &str, state: &'static str, zeek: &'static str) -> Record {
        Record::Conn(ConnRec {
            conn: n,
            client: client.into(),
            server: server.into(),
            client_state: Cow::Borrowed(state),
            server_state: Cow::Borrowed("CLOSED"),
            conn_state: Cow::Borrowed(zeek),
            ..ConnRec::default()
        })
    }

    fn m(expr: &str, rec: &Record) -> bool {
        let w = parse(expr).unwrap();
        w.matches(rec, &mut Ends::new(&w))
    }

    #[test]
    fn tests_apply_to_their_records() {
        let p = packet(
            3,
            "10.0.0.1:5000",
            "10.0.0.2:443",
            &["retransmission"],
            "CLOSE_WAIT",
        );
        assert!(m("port 443", &p));
        assert!(!m("port 80", &p));
        assert!(m("host 10.0.0.1 and conn 3", &p));
        assert!(m("state CLOSE_WAIT", &p));
        assert!(m("event retransmission", &p));
        assert!(!m("event dup_ack", &p));
        assert!(!m("method GET", &p));
        let c = conn(3, "10.0.0.1:5000", "10.0.0.2:443", "CLOSE_WAIT", "REJ");
        assert!(m("conn_state REJ and state close_wait", &c));
        assert!(m("port 443 and type conn", &c));
        assert!(!m("conn_state SF", &c));
        let get = http(3, Some("GET"), None);
        let nf = http(3, None, Some(404));
        assert!(m("method get and request", &get));
        assert!(!m("response", &get));
        assert!(m("status 404", &nf) && m("status 4xx", &nf) && !m("status 5xx", &nf));
        assert!(m("not (method POST or status 200)", &get));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let get = http(0, Some("GET"), None);
        // (method GET) or (status 200 and conn 9)
        assert!(m("method GET or status 200 and conn 9", &get));
        assert!(!m("(method GET or status 200) and conn 9", &get));
    }

    #[test]
    fn http_records_take_their_connections_endpoints() {
        let w = parse("port 8080 and request").unwrap();
        let mut ends = Ends::new(&w);
        assert!(
            !w.matches(&http(1, Some("GET"), None), &mut ends),
            "endpoints not known yet"
        );
        let p = packet(1, "127.0.0.1:4000", "127.0.0.1:8080", &[], "ESTABLISHED");
        assert!(!w.matches(&p, &mut ends));
        assert!(w.matches(&http(1, Some("GET"), None), &mut ends));
        assert!(!w.matches(&http(2, Some("GET"), None), &mut ends));
        w.matches(
            &conn(1, "127.0.0.1:4000", "127.0.0.1:8080", "CLOSED", "SF"),
            &mut ends,
        );
        assert!(ends.by_conn.is_empty(), "forgotten at the conn record");
    }

    #[test]
    fn tshark_forms_mean_the_same() {
        for (ts, ours) in [
            (
                "tcp.port == 80 && tcp.analysis.retransmission",
                "port 80 and event retransmission",
            ),
            (
                "ip.addr == 10.0.0.1 || tcp.stream eq 4",
                "host 10.0.0.1 or conn 4",
            ),
            ("tcp.analysis.duplicate_ack", "event dup_ack"),
            ("http.request.method == \"GET\"", "method GET"),
            ("!http.response.code == 404", "not status 404"),
            ("http.request", "request"),
        ] {
            assert_eq!(parse(ts).unwrap(), parse(ours).unwrap(), "{ts}");
        }
    }

    #[test]
    fn errors_name_the_token() {
        for (bad, names) in [
            ("portt 80", "\"portt\""),
            ("port eighty", "\"eighty\""),
            ("state OPEN", "\"OPEN\""),
            ("tcp.port > 80", "\">\""),
            ("tcp.len == 0", "\"tcp.len\""),
            ("event retransmision", "\"retransmision\""),
            ("port 80 and", "test was expected"),
            ("(port 80", "missing \")\""),
            ("port 80 port 81", "\"port\""),
            ("tcp.port != 80", "!="),
            ("", "empty"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(names), "{bad:?}: {e}");
            assert!(e.starts_with("--where "), "{e}");
            assert_eq!(e.lines().count(), 1);
        }
    }

    proptest::proptest! {
        /// Any text either parses to a tree that prints and parses back to itself, or is an
        /// error: never a panic.
        #[test]
        fn parse_never_panics_and_round_trips(s in "[a-z0-9 ().:!&|=_\"]{0,40}") {
            if let Ok(e) = parse(&s) {
                let again = parse(&e.to_string()).unwrap();
                proptest::prop_assert_eq!(again, e);
            }
        }
    }
}
