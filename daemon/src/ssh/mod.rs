//! An SSH client, spoken with russh (no `ssh` program is run): what the ssh destination
//! and `clone mysql` share.
//!
//! What it promises:
//!
//! - A [`Client`] keeps one connection to its [`Target`], opened on first use and shared
//!   by every command of the client and its clones. A dropped connection is
//!   re-established by the next command; one unused for [`Limits::idle_close`] is closed.
//!   Connecting (TCP, key exchange, authentication) takes at most [`CONNECT_TIMEOUT`]; a
//!   silent server is declared gone after 3 unanswered keepalives, 15 s apart.
//! - Host keys are checked against `known_hosts` ([`host_key`]): an unknown key is refused
//!   unless `accept_new_host_keys`, a changed key always; both errors show the SHA256
//!   fingerprint the server offered. The private key must have no passphrase.
//! - [`Client::exec`] starts a command on a channel of its own; [`Client::output`] runs one
//!   to its end and [`Client::run`] runs a short one in a long-lived shell of the
//!   connection ([`shell`]); both return its [`Output`]: stdout, exit status or signal, and the
//!   [`Tail`](crate::process::Tail) of its stderr. [`Output::result`] turns an unsuccessful
//!   end into an `io::Error` whose kind reflects the cause (missing file, permission,
//!   full disk, lost connection). A caller that stops waiting for [`Client::output`] (a
//!   cancelled job) closes its channel.
//! - With a stall limit ([`Limits::stall`]), a wait on a server that makes no progress
//!   for that long fails and the connection is dropped, so a job can always end.
//! - Errors are `io::Error`s in words an operator can act on, naming the host and never
//!   a secret; callers add what they were doing.
//! - [`quote`] makes one shell word of any string: commands run under the remote user's
//!   POSIX shell.

mod command;
pub mod host_key;
mod session;
mod shell;

pub use self::command::Output;
pub use self::session::{Client, Exec, Limits, Target, CONNECT_TIMEOUT, IDLE_CLOSE};

use std::io;

/// `s` as one shell word: single-quoted, with `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// io::ErrorKind for a russh failure: the connection-level ones are worth a retry.
pub fn connection_kind(e: &russh::Error) -> io::ErrorKind {
    use russh::Error as E;
    match e {
        E::IO(io) => match io.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => {
                io::ErrorKind::ConnectionAborted
            }
            kind => kind,
        },
        E::Disconnect
        | E::HUP
        | E::SendError
        | E::RecvError
        | E::KeepaliveTimeout
        | E::InactivityTimeout
        | E::ConnectionTimeout
        | E::Elapsed(_)
        | E::ChannelOpenFailure(_) => io::ErrorKind::ConnectionAborted,
        _ => io::ErrorKind::Other,
    }
}

/// A failure of an established connection, in words an operator can act on.
pub fn lost(when: &str, e: &russh::Error) -> io::Error {
    let kind = connection_kind(e);
    if kind == io::ErrorKind::ConnectionAborted {
        io::Error::new(kind, format!("the SSH connection was lost {when} ({e})"))
    } else {
        io::Error::new(kind, format!("{when}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_spaces_quotes_and_dollars() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME `x`"), "'$HOME `x`'");
        // The shell gives back exactly the original string.
        let nasty = "d/it's a \"file\" $(rm -rf x) `y` \\ z\n'";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote(nasty)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), nasty);
    }

    #[test]
    fn connection_failures_are_worth_a_retry_others_not() {
        let e = lost("while sending", &russh::Error::Disconnect);
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        assert!(e
            .to_string()
            .starts_with("the SSH connection was lost while sending"));
        let e = lost("sending", &russh::Error::WrongChannel);
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert!(e.to_string().starts_with("sending: "), "{e}");
    }
}
