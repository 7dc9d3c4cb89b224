//! Capture filter expressions: the common cases of tcpdump's syntax, parsed into a tree that
//! [`super::bpf`] compiles into a classic BPF program for the kernel.
//!
//! Supported, with tcpdump's meaning:
//!
//! ```text
//! expr  := unary { ("and" | "&&" | "or" | "||") unary }
//! unary := ("not" | "!") unary | "(" expr ")" | prim
//! prim  := "tcp" | "udp" | "ip" | "ip6"
//!        | ["src" | "dst"] "host" ADDR                  (IPv4 or IPv6, numeric)
//!        | ["tcp" | "udp"] ["src" | "dst"] "port" N     (no protocol: TCP, UDP or SCTP)
//! ```
//!
//! `and` and `or` have equal precedence and group from the left, as in tcpdump (pcap-filter(7)):
//! `tcp port 80 or tcp port 443 and host 10.0.0.1` means `(... or ...) and host 10.0.0.1`. Anything else (host names, `net`, `portrange`,
//! byte offsets, `ether`, `vlan` ...) is a clear error listing what is supported: a filter that
//! silently meant something else would hide traffic.

use std::fmt;
use std::net::IpAddr;

/// Which end of a packet a `host` or `port` primitive looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
    /// Either end (tcpdump's default).
    Any,
}

/// A transport protocol a primitive names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number (IPv4 `protocol`, IPv6 `next header`).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// One test on a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prim {
    /// `tcp`, `udp`: over IPv4 or IPv6.
    Proto(Proto),
    /// `ip`: any IPv4 packet.
    Ip4,
    /// `ip6`: any IPv6 packet.
    Ip6,
    Host {
        side: Side,
        addr: IpAddr,
    },
    /// `proto: None` means TCP, UDP or SCTP, as tcpdump's bare `port` does.
    Port {
        proto: Option<Proto>,
        side: Side,
        port: u16,
    },
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Prim(Prim),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    pub fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }
    pub fn or(a: Expr, b: Expr) -> Expr {
        Expr::Or(Box::new(a), Box::new(b))
    }
}

impl Expr {
    /// Whether a TCP segment between these endpoints passes, with the meaning the BPF program
    /// gives the same expression in the kernel: how `replay` applies `--port`, `--host` and
    /// `--filter` to segments already decoded (fragments reassembled, IPv6 extension headers
    /// walked), so a capture file narrows as the live interface would have.
    pub fn matches_tcp(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> bool {
        match self {
            Expr::Prim(p) => match *p {
                Prim::Proto(proto) => proto == Proto::Tcp,
                Prim::Ip4 => src.is_ipv4(),
                Prim::Ip6 => src.is_ipv6(),
                Prim::Host { side, addr } => match side {
                    Side::Src => src == addr,
                    Side::Dst => dst == addr,
                    Side::Any => src == addr || dst == addr,
                },
                Prim::Port { proto, side, port } => {
                    proto != Some(Proto::Udp)
                        && match side {
                            Side::Src => sport == port,
                            Side::Dst => dport == port,
                            Side::Any => sport == port || dport == port,
                        }
                }
            },
            Expr::Not(e) => !e.matches_tcp(src, dst, sport, dport),
            Expr::And(a, b) => {
                a.matches_tcp(src, dst, sport, dport) && b.matches_tcp(src, dst, sport, dport)
            }
            Expr::Or(a, b) => {
                a.matches_tcp(src, dst, sport, dport) || b.matches_tcp(src, dst, sport, dport)
            }
        }
    }
}

/// What the filter language accepts, for error messages.
pub const SUPPORTED: &str = "supported: tcp, udp, ip, ip6, [src|dst] host ADDR, \
     [tcp|udp] [src|dst] port N, joined with and/or/not and parentheses";

/// A filter expression that could not be parsed. Displayed as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {expr:?}: {what} ({SUPPORTED})")]
pub struct FilterError {
    pub expr: String,
    pub what: String,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn side(s: Side) -> &'static str {
            match s {
                Side::Src => "src ",
                Side::Dst => "dst ",
                Side::Any => "",
            }
        }
        match self {
            Expr::Prim(Prim::Proto(Proto::Tcp)) => write!(f, "tcp"),
            Expr::Prim(Prim::Proto(Proto::Udp)) => write!(f, "udp"),
            Expr::Prim(Prim::Ip4) => write!(f, "ip"),
            Expr::Prim(Prim::Ip6) => write!(f, "ip6"),
            Expr::Prim(Prim::Host { side: s, addr }) => write!(f, "{}host {addr}", side(*s)),
            Expr::Prim(Prim::Port {
                proto,
                side: s,
                port,
            }) => {
                match proto {
                    Some(Proto::Tcp) => write!(f, "tcp ")?,
                    Some(Proto::Udp) => write!(f, "udp ")?,
                    None => {}
                }
                write!(f, "{}port {port}", side(*s))
            }
            Expr::Not(e) => write!(f, "not ({e})"),
            Expr::And(a, b) => write!(f, "({a}) and ({b})"),
            Expr::Or(a, b) => write!(f, "({a}) or ({b})"),
        }
    }
}

/// Parse a tcpdump-like expression (see the module doc).
pub fn parse(text: &str) -> Result<Expr, FilterError> {
    let tokens = tokenize(text);
    let err = |what: String| FilterError {
        expr: text.to_string(),
        what,
    };
    if tokens.is_empty() {
        return Err(err("empty expression".into()));
    }
    let mut p = Tokens::new(tokens);
    let e = p.expr().map_err(err)?;
    if let Some(t) = p.peek() {
        return Err(err(format!("unexpected {t:?}")));
    }
    Ok(e)
}

/// The filter for `live`'s options: any of the `--port`s, and any of the `--host`s, and the
/// `--filter` expression; `None` when nothing was asked (capture everything).
pub fn from_options(
    ports: &[u16],
    hosts: &[IpAddr],
    filter: Option<&str>,
) -> Result<Option<Expr>, FilterError> {
    let any_of = |prims: Vec<Prim>| {
        prims
            .into_iter()
            .map(Expr::Prim)
            .reduce(Expr::or)
            .map(Some)
            .unwrap_or(None)
    };
    let ports = any_of(
        ports
            .iter()
            .map(|&port| Prim::Port {
                proto: Some(Proto::Tcp),
                side: Side::Any,
                port,
            })
            .collect(),
    );
    let hosts = any_of(
        hosts
            .iter()
            .map(|&addr| Prim::Host {
                side: Side::Any,
                addr,
            })
            .collect(),
    );
    let expr = filter.map(parse).transpose()?;
    Ok([ports, hosts, expr].into_iter().flatten().reduce(Expr::and))
}

fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let single = match c {
            '(' | ')' => Some(c.to_string()),
            '!' => Some("!".to_string()),
            '&' | '|' if chars.peek() == Some(&c) => {
                chars.next();
                Some(format!("{c}{c}"))
            }
            _ => None,
        };
        if c.is_whitespace() || single.is_some() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.extend(single);
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A cursor over an expression's tokens, for this parser and `--where`'s
/// (`crate::select`).
pub struct Tokens {
    tokens: Vec<String>,
    pos: usize,
}

impl Tokens {
    pub fn new(tokens: Vec<String>) -> Tokens {
        Tokens { tokens, pos: 0 }
    }
    /// The next token, not taken.
    pub fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }
    /// The next token, taken.
    pub fn take(&mut self) -> Option<String> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    /// Take the next token if it is one of `words` (any case).
    pub fn eat(&mut self, words: &[&str]) -> bool {
        let hit = self
            .peek()
            .is_some_and(|t| words.iter().any(|w| w.eq_ignore_ascii_case(t)));
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// `and` and `or` have equal precedence and group from the left, as in pcap-filter(7):
    /// `a and b or c and d` is `((a and b) or c) and d`.
    fn expr(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        loop {
            if self.eat(&["and", "&&"]) {
                e = Expr::and(e, self.unary()?);
            } else if self.eat(&["or", "||"]) {
                e = Expr::or(e, self.unary()?);
            } else {
                return Ok(e);
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat(&["not", "!"]) {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat(&["("]) {
            let e = self.expr()?;
            if !self.eat(&[")"]) {
                return Err("missing ')'".into());
            }
            return Ok(e);
        }
        self.prim().map(Expr::Prim)
    }

    fn prim(&mut self) -> Result<Prim, String> {
        let proto = if self.eat(&["tcp"]) {
            Some(Proto::Tcp)
        } else if self.eat(&["udp"]) {
            Some(Proto::Udp)
        } else {
            None
        };
        let side = if self.eat(&["src"]) {
            Some(Side::Src)
        } else if self.eat(&["dst"]) {
            Some(Side::Dst)
        } else {
            None
        };
        let Some(word) = self.take() else {
            return match (proto, side) {
                (Some(p), None) => Ok(Prim::Proto(p)),
                _ => Err("unexpected end of expression".into()),
            };
        };
        match word.to_ascii_lowercase().as_str() {
            "port" => {
                let n = self.take().ok_or("'port' needs a number")?;
                let port = n
                    .parse::<u16>()
                    .map_err(|_| format!("{n:?} is not a port number (0-65535)"))?;
                Ok(Prim::Port {
                    proto,
                    side: side.unwrap_or(Side::Any),
                    port,
                })
            }
            "host" if proto.is_none() => {
                let a = self.take().ok_or("'host' needs an address")?;
                let addr = a
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{a:?} is not a numeric IPv4 or IPv6 address"))?;
                Ok(Prim::Host {
                    side: side.unwrap_or(Side::Any),
                    addr,
                })
            }
            "ip" if proto.is_none() && side.is_none() => Ok(Prim::Ip4),
            "ip6" if proto.is_none() && side.is_none() => Ok(Prim::Ip6),
            // A bare `tcp`/`udp` followed by a connective or a parenthesis: put the word back.
            "and" | "&&" | "or" | "||" | ")" if proto.is_some() && side.is_none() => {
                self.pos -= 1;
                Ok(Prim::Proto(proto.expect("checked above")))
            }
            _ => Err(format!("unsupported {word:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn port(proto: Option<Proto>, side: Side, port: u16) -> Expr {
        Expr::Prim(Prim::Port { proto, side, port })
    }

    #[test]
    fn common_cases_parse() {
        assert_eq!(parse("tcp").unwrap(), Expr::Prim(Prim::Proto(Proto::Tcp)));
        assert_eq!(
            parse("tcp port 80").unwrap(),
            port(Some(Proto::Tcp), Side::Any, 80)
        );
        assert_eq!(parse("port 8080").unwrap(), port(None, Side::Any, 8080));
        assert_eq!(
            parse("host 127.0.0.1").unwrap(),
            Expr::Prim(Prim::Host {
                side: Side::Any,
                addr: "127.0.0.1".parse().unwrap()
            })
        );
        assert_eq!(
            parse("dst host ::1").unwrap(),
            Expr::Prim(Prim::Host {
                side: Side::Dst,
                addr: "::1".parse().unwrap()
            })
        );
        assert_eq!(
            parse("udp src port 53").unwrap(),
            port(Some(Proto::Udp), Side::Src, 53)
        );
    }

    #[test]
    fn and_and_or_group_from_the_left_like_tcpdump() {
        let e = parse("tcp port 1 or tcp port 2 and host 10.0.0.1").unwrap();
        let Expr::And(a, b) = e else { panic!("{e:?}") };
        assert!(matches!(*a, Expr::Or(..)));
        assert!(matches!(*b, Expr::Prim(Prim::Host { .. })));
        let e = parse("tcp and port 1 or port 2").unwrap();
        assert!(matches!(e, Expr::Or(..)), "{e:?}");
    }

    #[test]
    fn parentheses_not_and_symbols() {
        let e = parse("!(port 1||port 2)&&tcp").unwrap();
        let Expr::And(a, b) = e else { panic!("{e:?}") };
        assert!(matches!(*a, Expr::Not(_)));
        assert_eq!(*b, Expr::Prim(Prim::Proto(Proto::Tcp)));
        assert_eq!(
            parse("tcp and (port 1)").unwrap(),
            Expr::and(
                Expr::Prim(Prim::Proto(Proto::Tcp)),
                port(None, Side::Any, 1)
            )
        );
        assert_eq!(parse("TCP PORT 80").unwrap(), parse("tcp port 80").unwrap());
    }

    #[test]
    fn unsupported_syntax_is_a_clear_error() {
        for (text, what) in [
            ("", "empty"),
            ("host localhost", "not a numeric"),
            ("port http", "not a port number"),
            ("port 70000", "not a port number"),
            ("net 10.0.0.0/8", "unsupported \"net\""),
            ("tcp[13] & 2 != 0", "unsupported"),
            ("portrange 1-2", "unsupported"),
            ("tcp port 80 and", "end of expression"),
            ("(tcp", "missing ')'"),
            ("tcp port 80 )", "unexpected \")\""),
            ("tcp host 1.2.3.4", "unsupported \"host\""),
            ("src", "end of expression"),
        ] {
            let e = parse(text).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(what), "{text:?}: {msg}");
            assert!(msg.contains("supported: tcp"), "{msg}");
            assert!(!msg.contains('\n'));
        }
    }

    /// Decoded segments are judged as the kernel's program judges their frames.
    #[test]
    fn matches_tcp_follows_tcpdump() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let six: IpAddr = "::1".parse().unwrap();
        let m = |f: &str, src, dst, sp, dp| parse(f).unwrap().matches_tcp(src, dst, sp, dp);
        assert!(m("tcp port 80", a, b, 5000, 80));
        assert!(m("port 80", a, b, 80, 5000));
        assert!(!m("udp port 80", a, b, 5000, 80));
        assert!(!m("src port 80", a, b, 5000, 80));
        assert!(m("dst port 80 and src host 10.0.0.1", a, b, 5000, 80));
        assert!(!m("host 10.0.0.3", a, b, 1, 2));
        assert!(m("not host 10.0.0.3", a, b, 1, 2));
        assert!(m("ip6 and host ::1", six, six, 1, 2));
        assert!(!m("ip", six, six, 1, 2));
        assert!(m("udp or tcp", a, b, 1, 2));
    }

    #[test]
    fn options_combine_with_and_ports_with_or() {
        let e = from_options(&[80, 443], &["::1".parse().unwrap()], Some("tcp")).unwrap();
        assert_eq!(
            e.unwrap().to_string(),
            "(((tcp port 80) or (tcp port 443)) and (host ::1)) and (tcp)"
        );
        assert_eq!(from_options(&[], &[], None).unwrap(), None);
        assert!(from_options(&[], &[], Some("bogus")).is_err());
    }

    proptest! {
        /// Whatever the input, parsing returns (never panics), and what parses prints back to
        /// an expression that parses to the same tree.
        #[test]
        fn parse_never_panics_and_round_trips(s in "[a-z0-9 ().:!&|]{0,40}") {
            if let Ok(e) = parse(&s) {
                prop_assert_eq!(parse(&e.to_string()).unwrap(), e);
            }
        }
    }
}
