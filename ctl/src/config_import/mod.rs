//! `twindbctl config import`: TwinDB Backup's INI config to a twindb TOML config.
//!
//! The translation follows what TwinDB *did* with each key (its code, not only its
//! docs), so a host keeps behaving the same after the switch: TwinDB's defaults that
//! differ from twindb's are written out, and every key that cannot be carried over gets
//! a comment saying why. Values are checked only as far as TOML types go; the result is
//! meant to be checked with `twindbd --check-config`, which knows the rest.
//!
//! Runs locally: no daemon, no socket. The only look at the disk is `[gpg]
//! secret_keyring` (see `gpg`).

mod ini;
mod sections;
mod tar_options;

use std::path::Path;

use toml::Value;

pub use self::ini::IniError;
use self::ini::{boolean, unquote, Entry, Section};
use self::sections::{
    az, compression, destination_section, export, gcs, gpg, intervals, mysql, retention,
    retention_local, s3, source_section, ssh, unknown_section,
};

/// The result of an import.
#[derive(Debug)]
pub struct Import {
    pub toml: String,
    /// `[section] key` of every secret written into `toml`.
    pub secrets: Vec<String>,
    /// `[section] key` of every key not carried over (the reasons are in `toml`).
    pub dropped: Vec<String>,
}

const RUN_TYPES: [&str; 5] = ["hourly", "daily", "weekly", "monthly", "yearly"];
/// TwinDB's `RetentionPolicy` defaults, which `[retention_local]` also fell back to.
const TWINDB_RETENTION: [i64; 5] = [24, 7, 4, 12, 3];
/// twindb's own `[retention_local]` defaults (docs/config.md).
const TWINDB_RS_RETENTION_LOCAL: [i64; 5] = [1, 1, 0, 0, 0];

/// Sections translated here, in output order.
const KNOWN: [&str; 13] = [
    "source",
    "destination",
    "ssh",
    "s3",
    "gcs",
    "az",
    "mysql",
    "compression",
    "gpg",
    "retention",
    "retention_local",
    "intervals",
    "export",
];

/// `twindbctl config import FILE [--output OUT]`. The TOML goes to stdout (or OUT);
/// stderr gets a summary that names keys, never values.
pub fn run(file: &Path, output: Option<&Path>) -> std::process::ExitCode {
    use std::io::Write as _;
    use std::process::ExitCode;

    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("twindbctl: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let import = match translate(file, &text) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("twindbctl: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let written = match output {
        None => std::io::stdout().write_all(import.toml.as_bytes()),
        Some(out) => {
            use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
            // 0600 before any byte is written: the file may hold secrets. `mode` only
            // applies to a new file, so an existing one is narrowed first.
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(out)
                .and_then(|mut f| {
                    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                    f.write_all(import.toml.as_bytes())
                })
        }
    };
    if let Err(e) = written {
        let to = output.map_or("stdout".into(), |p| p.display().to_string());
        eprintln!("twindbctl: cannot write {to}: {e}");
        return ExitCode::FAILURE;
    }
    if !import.dropped.is_empty() {
        eprintln!(
            "twindbctl: not carried over (see the comments in the output): {}",
            import.dropped.join(", ")
        );
    }
    if !import.secrets.is_empty() {
        let hint = match output {
            Some(p) => format!("{} has mode 0600; keep it so", p.display()),
            None => "chmod 600 the file you write it to".into(),
        };
        eprintln!(
            "twindbctl: the output holds secrets ({}): {hint}",
            import.secrets.join(", ")
        );
    }
    eprintln!("twindbctl: check the result with `twindbd --check-config --config FILE`");
    ExitCode::SUCCESS
}

/// Translates the TwinDB config `text`, read from `source` (named in the header).
pub fn translate(source: &Path, text: &str) -> Result<Import, IniError> {
    let ini = ini::parse(text)?;
    let mut out = Out::default();
    out.comment(&format!(
        "twindb config translated from {} by `twindbctl config import`.",
        source.display()
    ));
    out.comment(
        "Check it with `twindbd --check-config --config FILE`. Comments starting with \
         \"not carried over\" name each TwinDB key this file leaves out, and why.",
    );
    out.comment(
        "[daemon] is new in twindb and left at its defaults: hourly to yearly runs fire as \
         TwinDB's cron entries did (@hourly ... @yearly), but in UTC where cron used the \
         host's time zone; set [daemon] schedule_* to change that.",
    );
    out.comment("If cron also ran `twindb-backup backup --binlogs-only`, set in [daemon]:");
    out.comment("schedule_binlog = \"*/5 * * * *\"");

    let destination = ini
        .section("destination")
        .and_then(|s| s.entries.iter().find(|e| e.key == "backup_destination"))
        .map(|e| unquote(&e.value).to_string());
    let keep_local = ini
        .section("destination")
        .is_some_and(|s| s.entries.iter().any(|e| e.key == "keep_local_path"));

    for name in KNOWN {
        let section = ini.section(name);
        match name {
            "source" => source_section(&mut out, section),
            "destination" => destination_section(&mut out, section),
            "ssh" => ssh(&mut out, section, destination.as_deref() == Some("ssh")),
            "s3" => s3(&mut out, section),
            "gcs" => gcs(&mut out, section),
            "az" => az(&mut out, section),
            "mysql" => mysql(&mut out, section),
            "compression" => compression(&mut out, section),
            "gpg" => gpg(&mut out, section),
            "retention" => retention(&mut out, section),
            "retention_local" => retention_local(&mut out, section, keep_local),
            "intervals" => intervals(&mut out, section),
            "export" => export(&mut out, section),
            _ => unreachable!("every known section has a translation"),
        }
    }
    for section in ini
        .sections
        .iter()
        .filter(|s| !KNOWN.contains(&s.name.as_str()))
    {
        unknown_section(&mut out, section, &ini);
    }
    Ok(Import {
        toml: out.text,
        secrets: out.secrets,
        dropped: out.dropped,
    })
}

/// The TOML text being written, and what the summary on stderr needs.
#[derive(Default)]
struct Out {
    text: String,
    section: String,
    secrets: Vec<String>,
    dropped: Vec<String>,
}

impl Out {
    fn header(&mut self, name: &str) {
        self.text.push_str(&format!("\n[{name}]\n"));
        self.section = name.to_string();
    }

    /// `# text`, wrapped at about 90 columns.
    fn comment(&mut self, text: &str) {
        let mut line = String::from("#");
        for word in text.split_whitespace() {
            if line.len() + 1 + word.len() > 90 && line.len() > 1 {
                self.text.push_str(&line);
                self.text.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        self.text.push_str(&line);
        self.text.push('\n');
    }

    fn set(&mut self, key: &str, value: impl Into<Value>, note: Option<&str>) {
        let value: Value = value.into();
        match note {
            Some(n) => self.text.push_str(&format!("{key} = {value}  # {n}\n")),
            None => self.text.push_str(&format!("{key} = {value}\n")),
        }
    }

    fn secret(&mut self, key: &str, value: String) {
        self.secrets.push(format!("[{}] {key}", self.section));
        self.set(key, value, None);
    }

    /// A TwinDB key left out, with its old value when it is not a secret.
    fn drop(&mut self, e: &Entry, reason: &str) {
        let shown = if looks_secret(&e.key) {
            "(value not shown)".to_string()
        } else {
            Value::from(e.value.as_str()).to_string()
        };
        self.comment(&format!(
            "not carried over: {} = {shown} (line {}): {reason}",
            e.key, e.line
        ));
        self.dropped.push(format!("[{}] {}", self.section, e.key));
    }

    /// A string value, unquoted as TwinDB did; empty values are left out.
    fn string(&mut self, e: &Entry) -> Option<String> {
        let v = unquote(&e.value);
        if v.is_empty() {
            self.drop(e, "empty value; twindb's default applies");
            return None;
        }
        Some(v.to_string())
    }

    /// A path: carried as written, with a warning when it is relative.
    fn path(&mut self, e: &Entry) -> Option<String> {
        let v = self.string(e)?;
        if !v.starts_with('/') {
            self.comment(&format!(
                "{}: a relative path: TwinDB resolved it against its working directory \
                 (root's home under cron), twindb resolves it against this file's folder. \
                 Write it as an absolute path.",
                e.key
            ));
        }
        Some(v)
    }

    /// Python's `int()`, which TwinDB used for numbers.
    fn int(&mut self, e: &Entry) -> Option<i64> {
        let v = unquote(&e.value).trim().replace('_', "");
        match v.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.drop(e, "not a whole number (TwinDB failed on it too)");
                None
            }
        }
    }

    /// configparser's `getboolean`.
    fn boolean(&mut self, e: &Entry) -> Option<bool> {
        let b = boolean(unquote(&e.value).trim());
        if b.is_none() {
            self.drop(
                e,
                "not a boolean: TwinDB accepted yes/no, true/false, on/off, 1/0 and failed on anything else",
            );
        }
        b
    }
}

fn looks_secret(key: &str) -> bool {
    const SECRETS: [&str; 7] = [
        "secret_access_key",
        "password",
        "token",
        "api_key",
        "app_key",
        "encryption_key",
        "connection_string",
    ];
    SECRETS.iter().any(|s| key.contains(s)) && !key.ends_with("_file")
}

/// The entries of one section, each taken at most once; what is left is dropped.
struct Keys<'a> {
    entries: Vec<&'a Entry>,
}

impl<'a> Keys<'a> {
    fn of(section: &'a Section) -> Self {
        Keys {
            entries: section.entries.iter().collect(),
        }
    }

    fn take(&mut self, key: &str) -> Option<&'a Entry> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(i))
    }

    fn drop_rest(self, out: &mut Out, reason: &str) {
        for e in self.entries {
            out.drop(e, reason);
        }
    }
}

#[cfg(test)]
mod tests;
