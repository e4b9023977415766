//! The imd daemon: `imd [--config PATH] [--check-config] [--version] [--help]`.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: imd [--config PATH] [--check-config] [--version] [--help]
  --config PATH    configuration file (default conf/imd.conf)
  --check-config   check the configuration and exit (0 = valid)
  --version        print `imd <version>` and exit
  --help, -h       this text";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        // tungstenite traces whole frames: login frames and replies hold passwords and
        // tokens, so it never logs below info, whatever RUST_LOG says.
        .filter_module("tungstenite", log::LevelFilter::Info)
        .init();

    let mut config_path = PathBuf::from("conf/imd.conf");
    let mut check_only = false;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--config") => match args.next() {
                Some(p) => config_path = PathBuf::from(p),
                None => return usage_error("--config needs a path"),
            },
            Some("--check-config") => check_only = true,
            Some("--version" | "-V") => {
                println!("imd {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            Some("--help" | "-h") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => return usage_error(&format!("unknown argument {}", arg.to_string_lossy())),
        }
    }

    let config = match imd::Config::load(&config_path, &mut |w| log::warn!("config: {w}")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imd: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!("imd: {}: ok", config_path.display());
        return ExitCode::SUCCESS;
    }

    match imd::run(config, &config_path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imd: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("imd: {msg}\n{USAGE}");
    ExitCode::from(2)
}
