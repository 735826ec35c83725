//! `twindbd`: the twindb daemon.
//!
//! Exit codes: 0 clean shutdown (or a valid config with --check-config), 1 runtime
//! failure, 78 invalid config (EX_CONFIG, as TwinDB used).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use twindb::config;
use twindb::daemon::{init_logging, shutdown_signal, Daemon};

#[derive(Parser)]
#[command(
    name = "twindbd",
    version,
    about = "twindb backup daemon",
    long_about = "twindb backup daemon: backs up folders and MySQL/MariaDB servers on its own \
                  schedule to a local folder, an SSH server, S3, GCS or Azure, and restores them. \
                  twindbctl(1) talks to it over a Unix socket; twindb.toml(5) is its config."
)]
struct Args {
    /// Config file.
    #[arg(long, short, default_value = config::DEFAULT_CONFIG, env = "TWINDB_CONFIG")]
    config: PathBuf,
    /// Validate the config and exit: 0 when valid, 78 with the errors otherwise.
    #[arg(long)]
    check_config: bool,
    /// Print the man page twindbd(8) in roff and exit. The Debian package build runs it
    /// (packaging/build-deb.sh), so the page is made from these definitions.
    #[arg(long, hide = true)]
    man: bool,
}

/// What twindbd(8) says beyond the options: exit codes, signals, files.
const MAN_TAIL: &str = r#".SH EXIT STATUS
.TP
0
Clean shutdown, or a valid config with \fB\-\-check\-config\fR.
.TP
1
Runtime failure, e.g. another twindbd holds the same state_dir, or the destination
cannot be reached at start.
.TP
78
Invalid config (EX_CONFIG); the errors are printed one per line as
\fIFILE\fR:\fILINE\fR: [\fIsection\fR] \fIkey\fR: \fImessage\fR.
.SH SIGNALS
.TP
SIGHUP
Re\-read the config (\fBsystemctl reload twindbd\fR). A bad config is rejected and the
running one stays.
.TP
SIGTERM, SIGINT
Cancel queued and running jobs, wait for them to clean up, exit 0.
.SH FILES
.TP
/etc/twindb/twindb.toml
The config, see twindb.toml(5).
.TP
/run/twindb/twindbd.sock
The API socket twindbctl(1) talks to.
.TP
/var/lib/twindb
The state_dir: lock, job history, this daemon's writer id.
.TP
/usr/lib/systemd/system/twindbd.service
The systemd unit; \fBsystemctl enable \-\-now twindbd\fR starts it at boot.
.SH ENVIRONMENT
.TP
TWINDB_CONFIG
The config file, instead of \fB\-\-config\fR.
.TP
RUST_LOG
A log filter that replaces \fB[daemon] log\fR.
.SH SEE ALSO
twindbctl(1), twindb.toml(5), /usr/share/doc/twindb/operations.md
"#;

/// twindbd(8): clap_mangen's sections from `Args`, then `MAN_TAIL`.
fn man_page() -> std::io::Result<()> {
    let man = clap_mangen::Man::new(Args::command());
    // Our own title line: clap_mangen writes an empty date (none, for reproducible
    // builds) as nothing, which shifts the other fields of `.TH`.
    let version = env!("CARGO_PKG_VERSION");
    let mut out = format!(".TH TWINDBD 8 \"\" \"twindb {version}\" \"twindb\"\n").into_bytes();
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(MAN_TAIL.as_bytes());
    std::io::Write::write_all(&mut std::io::stdout(), &out)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.man {
        return match man_page() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("twindbd: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
