//! The TLS listener: ECDSA P-256 and RSA certificates load (PKCS#8, SEC1, PKCS#1
//! keys), a reload swaps the certificate for new handshakes without touching live
//! connections (through `Remote` and through SIGHUP to the real binary), and a bad
//! file stops the start with a clear error.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn tls_config(cert: &str, key: &str) -> String {
    format!(
        "[tls]\ncert = \"{FIXTURES}/{cert}\"\nkey = \"{FIXTURES}/{key}\"\nself_signed = false\n"
    )
}

/// The DER of the first certificate in a PEM file.
fn cert_der(file: &str) -> Vec<u8> {
    let pem = std::fs::read(format!("{FIXTURES}/{file}")).expect("fixture");
    let mut reader = std::io::BufReader::new(pem.as_slice());
    let cert = rustls_pemfile::certs(&mut reader).next().expect("a cert").expect("pem");
    cert.as_ref().to_vec()
}

/// The certificate the server presents on a new TLS connection.
fn presented(s: &impl Listening) -> (Stream, Vec<u8>) {
    let mut stream = connect(s, Via::Tls);
    stream.write_all(b"GET /im/health HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    assert_eq!(read_reply(&mut stream).status, 200);
    let Stream::Tls(tls) = &stream else { unreachable!("asked for TLS") };
    let der = tls.conn.peer_certificates().expect("certs")[0].as_ref().to_vec();
    (stream, der)
}

#[test]
fn ecdsa_and_rsa_certificates_load() {
    for (cert, key) in [
        ("ecdsa-cert.pem", "ecdsa-key.pem"),
        ("ecdsa-cert.pem", "ecdsa-key-sec1.pem"),
        ("rsa-cert.pem", "rsa-key.pem"),
        ("rsa-cert.pem", "rsa-key-pkcs1.pem"),
    ] {
        let s = TestServer::start_with(&tls_config(cert, key));
        let (_, der) = presented(&s);
        assert_eq!(der, cert_der(cert), "{cert} with {key}");
        // The WebSocket goes through the same listener.
        let u = User::new("tlsuser");
        u.register(&s);
        Session::login(&s, Via::Tls, &u);
    }
}

#[test]
fn reload_swaps_the_certificate_for_new_handshakes_only() {
    let s = TestServer::start_with(&tls_config("ecdsa-cert.pem", "ecdsa-key.pem"));
    let (mut old, der) = presented(&s);
    assert_eq!(der, cert_der("ecdsa-cert.pem"));
    let source = reactor::TlsSource::Files {
        cert: format!("{FIXTURES}/rsa-cert.pem").into(),
        key: format!("{FIXTURES}/rsa-key.pem").into(),
    };
    s.remote().reload_tls(source).expect("reload");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (_, der) = presented(&s);
    assert_eq!(der, cert_der("rsa-cert.pem"));
    // The connection made before the reload still works.
    old.write_all(b"GET /im/health HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    assert_eq!(read_reply(&mut old).status, 200);
    // A broken file is refused and the current certificate stays.
    let broken = reactor::TlsSource::Files {
        cert: format!("{FIXTURES}/README.md").into(),
        key: format!("{FIXTURES}/rsa-key.pem").into(),
    };
    assert!(s.remote().reload_tls(broken).is_err());
    let (_, der) = presented(&s);
    assert_eq!(der, cert_der("rsa-cert.pem"));
}

/// One heartbeat round trip on a live session.
#[track_caller]
fn heartbeat(s: &mut Session) {
    s.ws.send_json(&serde_json::json!({"type": "heartbeat"}));
    let v = s.ws.recv();
    assert_eq!(v["type"], "heartbeat", "{v}");
    assert_code(&v, 200, "Success");
}

#[test]
fn sighup_reloads_the_certificate_files_of_the_running_daemon() {
    let dir = temp_dir();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let install = |c: &str, k: &str| {
        std::fs::copy(format!("{FIXTURES}/{c}"), &cert).expect("copy cert");
        std::fs::copy(format!("{FIXTURES}/{k}"), &key).expect("copy key");
    };
    install("ecdsa-cert.pem", "ecdsa-key.pem");
    let d = ChildDaemon::spawn(
        &dir,
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nself_signed = false\n",
            cert.display(),
            key.display()
        ),
    );
    let (mut old, der) = presented(&d);
    assert_eq!(der, cert_der("ecdsa-cert.pem"));
    let u = User::new("hup");
    u.register(&d);
    let mut session = Session::login(&d, Via::Tls, &u);
    heartbeat(&mut session);

    // Renewed files, then SIGHUP: new handshakes get the RSA certificate.
    install("rsa-cert.pem", "rsa-key.pem");
    d.signal("HUP");
    let wait = Duration::from_secs(10);
    assert!(d.log_line("SIGHUP: TLS certificate reloaded", wait).is_some(), "{:#?}", d.log());
    let (_, der) = presented(&d);
    assert_eq!(der, cert_der("rsa-cert.pem"));
    // The session and the keep-alive connection made before it live on, untouched.
    heartbeat(&mut session);
    old.write_all(b"GET /im/health HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    assert_eq!(read_reply(&mut old).status, 200);
    let list = get(&d, Via::Tls, &format!("/im/friends/list?{}", session.auth()));
    assert_code(&list, 200, "Success");

    // A broken key, then a key that does not match its certificate: each SIGHUP is
    // refused with an error in the log, and the RSA certificate stays in service.
    let broken = [("ecdsa-cert.pem", "README.md"), ("ecdsa-cert.pem", "rsa-key.pem")];
    for (n, (c, k)) in broken.into_iter().enumerate() {
        install(c, k);
        d.signal("HUP");
        let deadline = std::time::Instant::now() + wait;
        while d.log_count("SIGHUP: TLS certificate not reloaded") <= n {
            assert!(
                std::time::Instant::now() < deadline,
                "no error logged for {k}: {:#?}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let (_, der) = presented(&d);
        assert_eq!(der, cert_der("rsa-cert.pem"), "after {c} with {k}");
        assert_eq!(http(&d, Via::Plain, "GET", "/im/health", "").status, 200);
        heartbeat(&mut session);
    }
    assert_eq!(d.log_count("SIGHUP: TLS certificate reloaded"), 1);
    drop(session);
    assert!(d.stop().success(), "imd exits 0 on SIGTERM");
}

#[test]
fn a_bad_certificate_stops_the_start_with_one_line() {
    let dir = temp_dir();
    for (cert, key, needle) in [
        ("missing.pem", "ecdsa-key.pem", "missing.pem"),
        ("README.md", "ecdsa-key.pem", "no CERTIFICATE"),
        ("ecdsa-cert.pem", "README.md", "no PRIVATE KEY"),
        ("ecdsa-cert.pem", "rsa-key.pem", "rejected"),
    ] {
        let config = config(&dir, &tls_config(cert, key));
        let err = match imd::Daemon::bind(config) {
            Ok(_) => panic!("{cert}/{key} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{cert}/{key}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
