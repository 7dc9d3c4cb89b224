use super::*;

/// A TLS 1.2-style ClientHello handshake message (header included) offering one suite, with
/// SNI `name` and, if `ticket`, a non-empty SessionTicket extension.
fn client_hello(name: &str, session_id: &[u8], ticket: bool) -> Vec<u8> {
    let mut ext = Vec::new();
    let n = name.as_bytes();
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&((n.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
    ext.extend_from_slice(n);
    if ticket {
        ext.extend_from_slice(&[0, 35, 0, 3, 1, 2, 3]);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(session_id.len() as u8);
    body.extend_from_slice(session_id);
    body.extend_from_slice(&[0, 2, 0xc0, 0x2c, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    handshake(1, &body)
}

/// A ServerHello (TLS 1.2) choosing suite 0xc02c with `session_id`.
fn server_hello(session_id: &[u8]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[9; 32]);
    body.push(session_id.len() as u8);
    body.extend_from_slice(session_id);
    body.extend_from_slice(&[0xc0, 0x2c, 0, 0, 0]);
    handshake(2, &body)
}

fn handshake(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![t];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// One record of type `ctype` around `body`.
fn record(ctype: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![ctype, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

/// Feed `bytes` of `dir` in pieces of `piece` bytes, frame numbers counting from `frame`.
fn feed(t: &mut TlsConn, dir: Dir, bytes: &[u8], piece: usize, frame: u64) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, p) in bytes.chunks(piece).enumerate() {
        t.on_data(dir, p, frame + i as u64, Timestamp(0), &mut out);
    }
    out
}

fn msgs(recs: &[Record]) -> Vec<(u64, String)> {
    recs.iter()
        .map(|r| match r {
            Record::TlsMsg(m) => (m.frame, m.msg.to_string()),
            r => panic!("{r:?}"),
        })
        .collect()
}

#[test]
fn detection_takes_handshakes_and_sslv2_hellos_only() {
    assert!(looks_like_tls(&[22, 3, 1, 0, 200]));
    assert!(looks_like_tls(&[22, 3, 4]));
    assert!(!looks_like_tls(&[22, 3, 5]));
    assert!(
        !looks_like_tls(&[23, 3, 3, 0, 10]),
        "application data is not a start"
    );
    assert!(!looks_like_tls(b"GET / HTTP/1.1\r\n"));
    assert!(!looks_like_tls(b"HTTP/1.1 200 OK\r\n"));
    assert!(!looks_like_tls(&[22, 3]), "too short to tell");
    assert!(!looks_like_tls(&[]));
    // SSLv2-format ClientHello offering SSLv3 / TLS 1.0, and one offering SSLv2.
    assert!(looks_like_tls(&[0x80, 0x2e, 1, 3, 1, 0, 0x15]));
    assert!(looks_like_tls(&[0x80, 0x2e, 1, 0, 2, 0, 0x15]));
    assert!(
        !looks_like_tls(&[0x80, 0x2e, 2, 3, 1]),
        "not a CLIENT-HELLO"
    );
    assert!(!looks_like_tls(&[0x00, 0x2e, 1, 3, 1]), "no length bit");
}

#[test]
fn alerts_are_named_as_the_rfc_names_them() {
    assert_eq!(alert_text(2, 70), "fatal protocol_version");
    assert_eq!(alert_text(1, 0), "warning close_notify");
    assert_eq!(alert_text(2, 40), "fatal handshake_failure");
    assert_eq!(alert_text(3, 250), "level_3 alert_250");
}

/// Messages that span records and segments come out once, at the frame that completed them,
/// however the bytes were cut.
#[test]
fn messages_are_the_same_however_the_stream_is_cut() {
    let ch = client_hello("example.com", &[], false);
    // The ClientHello split over two records, then a second message in one record.
    let (a, b) = ch.split_at(10);
    let mut stream = record(22, a);
    stream.extend(record(22, b));
    let whole_len = stream.len();
    let mut t = TlsConn::new(0);
    let whole = feed(&mut t, Dir::C2s, &stream, whole_len, 1);
    assert_eq!(msgs(&whole), [(1, "client_hello".to_string())]);
    let mut t1 = TlsConn::new(0);
    let bytes = feed(&mut t1, Dir::C2s, &stream, 1, 1);
    // The last byte arrived in the stream's last "frame".
    assert_eq!(
        msgs(&bytes),
        [(whole_len as u64, "client_hello".to_string())]
    );
    let (rec, diags) = t1.finish();
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(rec.sni.as_deref(), Some("example.com"));
    assert_eq!(rec.setup, None, "no ServerHello, no setup");
}

/// TLS 1.2: the server echoing the client's session ID is a resumption, by ticket when the
/// client offered one; a fresh ID is a full handshake. After change-cipher-spec, handshake
/// records are encrypted and alerts too.
#[test]
fn resumption_is_read_from_the_hellos() {
    let id = [5u8; 32];
    for (client_id, ticket, server_id, want) in [
        (&id[..], false, &id[..], "resumed_id"),
        (&id[..], true, &id[..], "resumed_ticket"),
        (&id[..], true, &[6u8; 32][..], "full"),
        (&[][..], false, &[6u8; 32][..], "full"),
        (&[][..], false, &[][..], "full"),
    ] {
        let mut t = TlsConn::new(3);
        let c = feed(
            &mut t,
            Dir::C2s,
            &record(22, &client_hello("a", client_id, ticket)),
            1000,
            4,
        );
        let mut s_stream = record(22, &server_hello(server_id));
        s_stream.extend(record(20, &[1]));
        s_stream.extend(record(22, &[0xaa; 40]));
        s_stream.extend(record(21, &[0xbb; 26]));
        s_stream.extend(record(23, &[0xcc; 100]));
        let s = feed(&mut t, Dir::S2c, &s_stream, 7, 6);
        assert_eq!(msgs(&c), [(4, "client_hello".to_string())]);
        let names: Vec<String> = msgs(&s).into_iter().map(|(_, n)| n).collect();
        assert_eq!(
            names,
            [
                "server_hello",
                "change_cipher_spec",
                "encrypted_handshake",
                "encrypted_alert"
            ]
        );
        let (rec, _) = t.finish();
        assert_eq!(
            rec.setup.as_deref(),
            Some(want),
            "{client_id:?} {ticket} {server_id:?}"
        );
        assert_eq!(rec.version.as_deref(), Some("TLSv1.2"));
        assert_eq!(rec.cipher_id, Some(0xc02c));
        assert_eq!(
            rec.cipher.as_deref(),
            Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
        );
        assert_eq!(rec.alerts, ["encrypted"]);
        assert_eq!(rec.app_records, [0, 1]);
    }
}

/// Bytes that are not TLS records, gaps and oversized messages stop a direction with a
/// diagnostic, keeping what came before; nothing panics.
#[test]
fn bad_input_stops_a_direction_and_says_why() {
    let mut t = TlsConn::new(0);
    let mut stream = record(22, &client_hello("x", &[], false));
    stream.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let out = feed(&mut t, Dir::C2s, &stream, 9, 1);
    assert_eq!(out.len(), 1);
    t.on_gap(Dir::S2c, 10, 9);
    let big = record(22, &[11, 0xff, 0xff, 0xff, 0]);
    let mut t2 = TlsConn::new(1);
    assert!(feed(&mut t2, Dir::S2c, &big, 3, 1).is_empty());
    let (rec, diags) = t.finish();
    assert_eq!(rec.sni.as_deref(), Some("x"));
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert!(diags[0].contains("not TLS"), "{diags:?}");
    assert!(diags[1].contains("10 bytes missing"), "{diags:?}");
    let (_, diags) = t2.finish();
    assert!(diags[0].contains("over the cap"), "{diags:?}");
    // Garbage of every length never panics.
    for n in 0..64u8 {
        let mut t = TlsConn::new(0);
        let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
        let mut data = vec![22, 3, 3, 0, n];
        data.extend_from_slice(&junk);
        feed(&mut t, Dir::C2s, &data, 5, 1);
        let _ = t.finish();
    }
}

/// A counting parser makes the connection's record and no message records.
#[test]
fn counting_makes_no_message_records() {
    let mut t = TlsConn::counting(0);
    let out = feed(
        &mut t,
        Dir::C2s,
        &record(22, &client_hello("y", &[], false)),
        50,
        1,
    );
    assert!(out.is_empty());
    assert_eq!(t.finish().0.sni.as_deref(), Some("y"));
}

/// With a key log: protected records without a secret are counted `no_key`, a record cut by a
/// gap `gap`, and nothing of either reaches the plaintext. Without one, no count appears.
#[test]
fn records_not_decrypted_are_counted_by_reason() {
    let keys = std::sync::Arc::new(keylog::KeyStore::from_log(keylog::KeyLog::default()));
    let mut t = TlsConn::new(0).with_keys(keys);
    feed(
        &mut t,
        Dir::C2s,
        &record(22, &client_hello("a", &[], false)),
        7,
        1,
    );
    feed(&mut t, Dir::S2c, &record(22, &server_hello(&[])), 7, 2);
    // Both change-cipher-specs, then a Finished and two application-data records.
    feed(&mut t, Dir::C2s, &record(20, &[1]), 100, 3);
    feed(&mut t, Dir::C2s, &record(22, &[0; 40]), 100, 4);
    feed(&mut t, Dir::S2c, &record(20, &[1]), 100, 5);
    let app = record(23, &[0; 40]);
    feed(&mut t, Dir::S2c, &app, 3, 6);
    feed(&mut t, Dir::S2c, &app[..10], 100, 20);
    t.on_gap(Dir::S2c, 100, 21);
    assert!(t.plaintext().unwrap().is_empty());
    assert!(t.footprint() > std::mem::size_of::<TlsConn>());
    let (rec, _) = t.finish();
    assert_eq!(rec.decrypted, Some([0, 0]));
    let want: std::collections::BTreeMap<String, u64> =
        [("no_key".to_string(), 2), ("gap".to_string(), 1)].into();
    assert_eq!(rec.not_decrypted, want);

    // Control: the same stream without a key log counts nothing of the sort.
    let mut t = TlsConn::new(0);
    feed(
        &mut t,
        Dir::C2s,
        &record(22, &client_hello("a", &[], false)),
        7,
        1,
    );
    feed(&mut t, Dir::S2c, &record(22, &server_hello(&[])), 7, 2);
    feed(&mut t, Dir::S2c, &record(20, &[1]), 100, 5);
    feed(&mut t, Dir::S2c, &app, 3, 6);
    assert!(t.plaintext().is_none());
    let (rec, _) = t.finish();
    assert_eq!(rec.decrypted, None);
    assert!(rec.not_decrypted.is_empty());
}

mod decrypting_garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// With the connection's master secret known, protected records of any content, cut
        /// anywhere, never panic: each one either opens or is counted (here, `auth_failed`: the
        /// bytes were never sealed with that key), and no plaintext comes out.
        #[test]
        fn garbage_records_are_counted_never_decrypted(
            records in proptest::collection::vec((20u8..=24, proptest::collection::vec(any::<u8>(), 0..80)), 1..12),
            piece in 1usize..40,
        ) {
            let mut log = keylog::KeyLog::default();
            log.add_text(&format!("CLIENT_RANDOM {} {}\n", "07".repeat(32), "ab".repeat(48)));
            let keys = std::sync::Arc::new(keylog::KeyStore::from_log(log));
            let mut t = TlsConn::new(0).with_keys(keys);
            feed(&mut t, Dir::C2s, &record(22, &client_hello("a", &[], false)), 7, 1);
            feed(&mut t, Dir::S2c, &record(22, &server_hello(&[])), 7, 2);
            feed(&mut t, Dir::S2c, &record(20, &[1]), 100, 3);
            let mut bytes = Vec::new();
            for (ctype, body) in &records {
                bytes.extend_from_slice(&record(*ctype, body));
            }
            feed(&mut t, Dir::S2c, &bytes, piece, 4);
            prop_assert!(t.plaintext().unwrap().is_empty());
            let (rec, _) = t.finish();
            prop_assert_eq!(rec.decrypted, Some([0, 0]));
            prop_assert!(rec.not_decrypted.keys().all(|k| k == "auth_failed"));
        }
    }
}
