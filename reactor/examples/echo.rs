//! Echoes every WebSocket text and binary message on any path, so the WebSocket layer
//! can be conformance-tested on its own:
//! `cargo run --release -p reactor --example echo -- 127.0.0.1:9001`

use std::sync::Arc;

use reactor::{Config, ConnId, Handler, Remote, Request, Response, Server, WsMessage};

struct Echo;

impl Handler for Echo {
    fn request(&self, _req: Request, _remote: &Remote) -> Response {
        Response::new(426, "text/plain", "WebSocket only\n")
    }

    fn message(&self, conn: ConnId, msg: WsMessage, remote: &Remote) {
        match msg {
            WsMessage::Text(t) => remote.send_text(conn, t),
            WsMessage::Binary(b) => remote.send_binary(conn, b),
        }
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let Ok(addr) = addr.parse() else {
        eprintln!("usage: echo [ADDR:PORT]");
        std::process::exit(2);
    };
    // Autobahn sends messages up to 16 MiB.
    let config = Config {
        listen: Some(addr),
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
