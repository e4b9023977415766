//! Echoes every WebSocket text and binary message on any path, so the WebSocket layer
//! can be conformance-tested on its own:
//! `cargo run --release -p reactor --example echo -- 127.0.0.1:9001 [--tls 127.0.0.1:9443]`
//! (the TLS listener uses a self-signed localhost certificate).

use std::sync::Arc;

use reactor::{Config, ConnId, Flow, Handler, Remote, Request, Response, Server, WsMessage};

struct Echo;

impl Handler for Echo {
    fn request(&self, _req: Request, _remote: &Remote) -> Response {
        Response::new(426, "text/plain", "WebSocket only\n")
    }

    fn message(&self, conn: ConnId, msg: WsMessage, remote: &Remote) -> Flow {
        match msg {
            WsMessage::Text(t) => remote.send_text(conn, t),
            WsMessage::Binary(b) => remote.send_binary(conn, b),
        }
        Flow::Done
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().map_or("127.0.0.1:9001", String::as_str);
    let tls = args.iter().position(|a| a == "--tls").and_then(|i| args.get(i + 1));
    let (Ok(addr), Ok(tls_addr)) = (addr.parse(), tls.map(|t| t.parse()).transpose()) else {
        eprintln!("usage: echo [ADDR:PORT] [--tls ADDR:PORT]");
        std::process::exit(2);
    };
    // Autobahn sends messages up to 16 MiB.
    let config = Config {
        listen: Some(addr),
        tls_listen: tls_addr,
        tls: tls_addr.map(|_| reactor::TlsSource::SelfSigned),
        ws_max_message_bytes: 64 << 20,
        output_cap_bytes: 256 << 20,
        ..Config::default()
    };
    let server = match Server::bind(config, Arc::new(Echo)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::exit(1);
        }
    };
    let remote = server.remote();
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    remote.shutdown();
                }
            });
        }
        Err(e) => eprintln!("echo: no signal handling: {e}"),
    }
    eprintln!("echo: listening on ws://{addr}");
    if let Err(e) = server.run() {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}
