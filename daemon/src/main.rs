//! `twindbd`: the twindb daemon.
//!
//! Exit codes: 0 clean shutdown (or a valid config with --check-config), 1 runtime
//! failure, 78 invalid config (EX_CONFIG, as TwinDB used).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use twindb::config;
use twindb::daemon::{init_logging, shutdown_signal, Daemon};

#[derive(Parser)]
#[command(name = "twindbd", version, about = "twindb backup daemon")]
struct Args {
    /// Config file.
    #[arg(long, short, default_value = config::DEFAULT_CONFIG, env = "TWINDB_CONFIG")]
    config: PathBuf,
    /// Validate the config and exit: 0 when valid, 78 with the errors otherwise.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("twindbd: invalid config:\n{errors}");
            return ExitCode::from(78);
        }
    };
    if args.check_config {
        for w in &config.warnings {
            eprintln!("twindbd: warning: {w}");
        }
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    init_logging(&config.daemon.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("twindbd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let daemon = Daemon::new(config)?;
        let listener = daemon.bind()?;
        daemon.serve(listener, shutdown_signal()).await
    });
    // Not a plain drop, which waits for every blocking task: a job left behind (a
    // thread stuck in a read of a hung mount) must not keep twindbd from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("twindbd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
