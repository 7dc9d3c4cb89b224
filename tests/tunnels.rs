//! Tunnels and link types from real networks: every fixture's connection is found inside its
//! encapsulation (per-packet agreement with tshark is `tests/replay.rs`/`tests/decode.rs`), the
//! `conn` record names the path, and the same inner connection in two tunnels is two
//! connections.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn conns(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let out = Command::new(env!("CARGO_BIN_EXE_statescope"))
        .args(["replay", "--format", "jsonl"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "conn")
        .collect()
}

fn encap(c: &Value) -> Vec<String> {
    c["encap"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn each_tunnel_is_named_innermost_first() {
    let cases: &[(&str, usize, &[&str])] = &[
        (
            "tunnel-vxlan.pcap",
            2,
            &["vxlan vni=42", "ipv4 10.9.0.1>10.9.0.2"],
        ),
        (
            "tunnel-geneve.pcap",
            1,
            &["geneve vni=43", "ipv4 192.0.2.1>192.0.2.2"],
        ),
        (
            "tunnel-gre-ip4.pcap",
            1,
            &["gre key=77", "ipv4 192.0.2.1>192.0.2.2"],
        ),
        (
            "tunnel-gre-ip6.pcap",
            2,
            &["gre", "ipv4 192.0.2.1>192.0.2.2"],
        ),
        (
            "tunnel-gretap.pcap",
            1,
            &["gre ethernet", "ipv4 192.0.2.1>192.0.2.2"],
        ),
        (
            "tunnel-gre-wccp.pcap",
            1,
            &["gre wccp", "ipv4 192.0.2.1>192.0.2.2"],
        ),
        ("tunnel-ipip.pcap", 1, &["ipv4 192.0.2.1>192.0.2.2"]),
        ("tunnel-6in4.pcap", 2, &["ipv4 192.0.2.1>192.0.2.2"]),
        // Link-level encapsulations are not tunnels: nothing to name, nothing to key on.
        ("tunnel-mpls.pcap", 1, &[]),
        ("linktype-pppoe.pcap", 1, &[]),
        ("linktype-ppp.pcap", 1, &[]),
        ("linktype-juniper-ether.pcap", 1, &[]),
        ("linktype-ipoib.pcap", 1, &[]),
        ("linktype-arcnet.pcap", 1, &[]),
    ];
    for (file, n, path) in cases {
        let c = conns(file);
        assert_eq!(c.len(), *n, "{file}: connections");
        for conn in &c {
            assert_eq!(encap(conn), *path, "{file}: encap");
            assert!(
                conn["packets_c2s"].as_u64().unwrap() > 3,
                "{file}: packets found inside"
            );
        }
    }
}

/// The same inner connection (same addresses, ports and sequence numbers) carried in VXLAN
/// segments 42 and 43: two connections, neither a retransmission of the other. tshark 4.0 puts
/// both in one `tcp.stream` and flags the second copy's segments; this is a deliberate
/// difference (README, "Correctness"), so the fixture has no tshark oracle.
#[test]
fn the_same_connection_in_two_tunnels_is_two_connections() {
    let c = conns("tunnel-vxlan-2vni.pcap");
    assert_eq!(c.len(), 2, "{c:?}");
    let mut vnis: Vec<String> = c.iter().map(|c| encap(c)[0].clone()).collect();
    vnis.sort();
    assert_eq!(vnis, ["vxlan vni=42", "vxlan vni=43"]);
    for conn in &c {
        assert_eq!(conn["client"], c[0]["client"]);
        let counts = &conn["analysis_counts"];
        assert!(
            counts.get("retransmission").is_none() && counts.get("duplicate_ack").is_none(),
            "one tunnel's copy taken for the other's retransmission: {counts}"
        );
        assert_eq!(conn["conn_state"], "SF");
    }
    // Control: the single-tunnel capture of the same exchange stays one connection.
    assert_eq!(conns("tunnel-gre-ip4.pcap").len(), 1);
}
