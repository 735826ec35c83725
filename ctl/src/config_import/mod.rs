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

use std::path::Path;

use toml::Value;

pub use self::ini::IniError;
use self::ini::{boolean, shell_split, unquote, Entry, Ini, Section};

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

fn source_section(out: &mut Out, section: Option<&Section>) {
    out.header("source");
    let Some(section) = section else {
        out.comment(
            "TwinDB's config has no [source] section, which TwinDB required too: list the \
             folders to back up here.",
        );
        return;
    };
    let mut keys = Keys::of(section);
    if let Some(e) = keys.take("backup_dirs") {
        // shlex, not unquote: TwinDB split this value like a shell does.
        match shell_split(&e.value) {
            Ok(dirs) => {
                if dirs.iter().any(|d| !d.starts_with('/')) {
                    out.comment(
                        "backup_dirs: relative paths: TwinDB resolved them against its working \
                         directory, twindb against this file's folder. Write them absolute.",
                    );
                }
                out.set("backup_dirs", dirs, None);
            }
            Err(msg) => out.drop(e, &format!("cannot split it as TwinDB did (shlex): {msg}")),
        }
    }
    if let Some(e) = keys.take("backup_mysql") {
        if let Some(b) = out.boolean(e) {
            out.set("backup_mysql", b, None);
        }
    }
    if let Some(e) = keys.take("tar_options") {
        out.drop(
            e,
            "twindb has no tar options or exclude patterns yet; copies will include what these options excluded",
        );
    }
    keys.drop_rest(out, "unknown key; TwinDB ignored it");
}

fn destination_section(out: &mut Out, section: Option<&Section>) {
    out.header("destination");
    let Some(section) = section else {
        out.comment(
            "TwinDB's config has no [destination] section, which TwinDB required too: set \
             backup_destination here.",
        );
        return;
    };
    let mut keys = Keys::of(section);
    if let Some(e) = keys.take("backup_destination") {
        if let Some(d) = out.string(e) {
            if d == "az" {
                out.comment(
                    "backup_destination: twindb cannot store copies in Azure Blob Storage; \
                     choose ssh, s3, gcs or local. --check-config fails until you do.",
                );
            }
            out.set("backup_destination", d, None);
        }
    }
    if let Some(e) = keys.take("keep_local_path") {
        if let Some(p) = out.path(e) {
            out.set("keep_local_path", p, None);
        }
    }
    keys.drop_rest(out, "unknown key; TwinDB ignored it");
}

fn ssh(out: &mut Out, section: Option<&Section>, is_destination: bool) {
    let Some(section) = section else {
        if is_destination {
            // TwinDB ran with its defaults; twindb wants them written.
            out.header("ssh");
            out.comment("TwinDB's config has no [ssh] section; TwinDB used these defaults.");
            out.set("backup_host", "127.0.0.1", Some("TwinDB's default"));
            out.set("backup_dir", "/var/backup", Some("TwinDB's default"));
            accept_new_host_keys(out);
        }
        return;
    };
    out.header("ssh");
    let mut keys = Keys::of(section);
    for (key, default) in [("backup_host", "127.0.0.1"), ("backup_dir", "/var/backup")] {
        match keys.take(key).and_then(|e| out.string(e)) {
            Some(v) => out.set(key, v, None),
            None if is_destination => out.set(key, default, Some("TwinDB's default")),
            None => {}
        }
    }
    if let Some(e) = keys.take("ssh_user") {
        if let Some(v) = out.string(e) {
            out.set("ssh_user", v, None);
        }
    }
    // TwinDB's code read `port`; its docs said `ssh_port`. `port` wins, as in TwinDB.
    let port = keys.take("port");
    let ssh_port = keys.take("ssh_port");
    if let (Some(_), Some(e)) = (port, ssh_port) {
        out.drop(e, "`port` is set too; TwinDB read `port`");
    }
    if let Some(e) = port.or(ssh_port) {
        if let Some(n) = out.int(e) {
            out.set("ssh_port", n, None);
        }
    }
    if let Some(e) = keys.take("ssh_key") {
        if let Some(p) = out.path(e) {
            out.set("ssh_key", p, None);
        }
    }
    if is_destination {
        accept_new_host_keys(out);
    }
    keys.drop_rest(
        out,
        "unknown key: twindb has no such [ssh] key (TwinDB refused it too, with a TypeError)",
    );
}

fn accept_new_host_keys(out: &mut Out) {
    out.comment(
        "TwinDB accepted any host key without checking. twindb checks the server's key \
         against known_hosts (default /root/.ssh/known_hosts); with this key it records the \
         key on first connection and refuses a changed one. Safer: add the key with \
         `ssh-keyscan -p PORT HOST >> /root/.ssh/known_hosts` after checking its \
         fingerprint, then set this to false.",
    );
    out.set("accept_new_host_keys", true, None);
}

fn s3(out: &mut Out, section: Option<&Section>) {
    let Some(section) = section else { return };
    out.header("s3");
    let mut keys = Keys::of(section);
    for key in ["aws_access_key_id", "aws_default_region", "bucket"] {
        if let Some(v) = keys.take(key).and_then(|e| out.string(e)) {
            out.set(key, v, None);
        }
    }
    if let Some(v) = keys
        .take("aws_secret_access_key")
        .and_then(|e| out.string(e))
    {
        out.secret("aws_secret_access_key", v);
    }
    keys.drop_rest(
        out,
        "unknown key: twindb has no such [s3] key (TwinDB refused it too, with a TypeError)",
    );
}

fn gcs(out: &mut Out, section: Option<&Section>) {
    let Some(section) = section else { return };
    out.header("gcs");
    let mut keys = Keys::of(section);
    if let Some(v) = keys.take("bucket").and_then(|e| out.string(e)) {
        out.set("bucket", v, None);
    }
    let file = keys.take("gc_credentials_file");
    // The sample config TwinDB shipped spelled it so; TwinDB then silently ignored it.
    let misspelled = keys.take("gcs_credentials_file");
    match (file, misspelled) {
        (Some(e), other) => {
            if let Some(p) = out.path(e) {
                out.set("gc_credentials_file", p, None);
            }
            if let Some(m) = other {
                out.drop(m, "a misspelling of gc_credentials_file, which is set too");
            }
        }
        (None, Some(e)) => {
            if let Some(p) = out.path(e) {
                out.comment(
                    "gc_credentials_file: TwinDB's sample spelled it gcs_credentials_file, \
                     which TwinDB ignored (it used Google's default credentials instead). \
                     twindb uses this file.",
                );
                out.set("gc_credentials_file", p, None);
            }
        }
        (None, None) => {}
    }
    if let Some(e) = keys.take("gc_encryption_key") {
        if !unquote(&e.value).is_empty() {
            out.drop(
                e,
                "TwinDB accepted this key but never used it, so existing copies are not \
                 encrypted with it; twindb would encrypt every new copy with it. Add it back \
                 only if that is what you want (see docs/config.md, [gcs]).",
            );
        }
    }
    keys.drop_rest(out, "unknown key; TwinDB ignored it");
}

fn az(out: &mut Out, section: Option<&Section>) {
    let Some(section) = section else { return };
    out.text.push('\n');
    out.section = "az".into();
    out.comment(&format!(
        "[az] (line {}): twindb has no Azure Blob Storage destination.",
        section.line
    ));
    Keys::of(section).drop_rest(out, "no Azure destination in twindb");
}

fn mysql(out: &mut Out, section: Option<&Section>) {
    let Some(section) = section else { return };
    out.header("mysql");
    let mut keys = Keys::of(section);
    if let Some(p) = keys.take("mysql_defaults_file").and_then(|e| out.path(e)) {
        out.set("mysql_defaults_file", p, None);
    }
    if let Some(v) = keys.take("full_backup").and_then(|e| out.string(e)) {
        out.set("full_backup", v, None);
    }
    if let Some(n) = keys.take("expire_log_days").and_then(|e| out.int(e)) {
        out.set("expire_log_days", n, None);
    }
    for key in ["xtrabackup_binary", "xbstream_binary"] {
        if let Some(v) = keys.take(key).and_then(|e| out.string(e)) {
            out.set(key, v, None);
        }
    }
    keys.drop_rest(out, "unknown key; TwinDB ignored it");
}

fn compression(out: &mut Out, section: Option<&Section>) {
    out.header("compression");
    let mut keys = section.map(Keys::of);
    let mut take = |key: &str| keys.as_mut().and_then(|k| k.take(key));
    let program = take("program");
    let level = take("level");
    if program.is_none() || level.is_none() {
        out.comment(
            "TwinDB's defaults (gzip, level 9) are written out: twindb's own are zstd level \
             3. gzip keeps new copies readable by TwinDB's tools; switch to zstd (faster, \
             smaller) once you no longer need them.",
        );
    }
    match program.and_then(|e| out.string(e)) {
        Some(p) => out.set("program", p, None),
        None => out.set("program", "gzip", Some("TwinDB's default")),
    }
    match level.and_then(|e| out.int(e)) {
        Some(n) => out.set("level", n, None),
        None => out.set("level", 9, Some("TwinDB's default")),
    }
    if let Some(n) = take("threads").and_then(|e| out.int(e)) {
        out.set("threads", n, None);
    }
    if let Some(keys) = keys {
        keys.drop_rest(
            out,
            "unknown key: twindb has no such [compression] key (TwinDB ignored it)",
        );
    }
}

fn gpg(out: &mut Out, section: Option<&Section>) {
    let Some(section) = section else { return };
    out.header("gpg");
    let mut keys = Keys::of(section);
    if let Some(v) = keys.take("recipient").and_then(|e| out.string(e)) {
        out.set("recipient", v, None);
    }
    if let Some(p) = keys.take("keyring").and_then(|e| out.path(e)) {
        out.set("keyring", p, None);
    }
    if let Some(e) = keys.take("secret_keyring") {
        // The one look at the disk: TwinDB read this file only on restore, and GnuPG
        // 2.1+ ignores it, so TwinDB configs often name a file that never existed, which
        // twindb's check would refuse.
        let path = unquote(&e.value);
        if path.starts_with('/') && !Path::new(path).exists() {
            out.drop(
                e,
                "this file does not exist on this host (GnuPG 2.1+ ignores secret keyrings, \
                 and TwinDB read it only on restore). Without it twindb decrypts with the \
                 secret keys of gpg's home (GNUPGHOME, or [gpg] homedir).",
            );
        } else if let Some(p) = out.path(e) {
            out.set("secret_keyring", p, None);
        }
    }
    keys.drop_rest(out, "unknown key; TwinDB ignored it");
}

fn retention(out: &mut Out, section: Option<&Section>) {
    let Some(section) = section else { return };
    out.header("retention");
    let mut keys = Keys::of(section);
    for (i, run_type) in RUN_TYPES.iter().enumerate() {
        let key = format!("{run_type}_copies");
        match keys.take(&key).and_then(|e| out.int(e)) {
            Some(n) => out.set(&key, n, None),
            None => out.set(&key, TWINDB_RETENTION[i], Some("TwinDB's default")),
        }
    }
    keys.drop_rest(out, "unknown key; TwinDB ignored it");
}

fn retention_local(out: &mut Out, section: Option<&Section>, keep_local: bool) {
    if section.is_none() && !keep_local {
        return;
    }
    out.header("retention_local");
    let mut keys = section.map(Keys::of);
    let all_set = keys.as_ref().is_some_and(|k| {
        RUN_TYPES
            .iter()
            .all(|r| k.entries.iter().any(|e| e.key == format!("{r}_copies")))
    });
    if !all_set {
        out.comment(
            "A key TwinDB did not find here fell back to the remote defaults (24/7/4/12/3), \
             not to smaller local ones; those fallbacks are written out so local copies are \
             kept as before.",
        );
    }
    for (i, run_type) in RUN_TYPES.iter().enumerate() {
        let key = format!("{run_type}_copies");
        match keys
            .as_mut()
            .and_then(|k| k.take(&key))
            .and_then(|e| out.int(e))
        {
            Some(n) => out.set(&key, n, None),
            None => out.set(
                &key,
                TWINDB_RETENTION[i],
                Some(
                    format!(
                        "TwinDB's fallback; twindb's own default is {}",
                        TWINDB_RS_RETENTION_LOCAL[i]
                    )
                    .as_str(),
                ),
            ),
        }
    }
    if let Some(keys) = keys {
        keys.drop_rest(out, "unknown key; TwinDB ignored it");
    }
}

fn intervals(out: &mut Out, section: Option<&Section>) {
    let Some(section) = section else { return };
    out.header("intervals");
    let mut keys = Keys::of(section);
    let entries: Vec<Option<&Entry>> = RUN_TYPES
        .iter()
        .map(|r| keys.take(&format!("run_{r}")))
        .collect();
    let missing: Vec<String> = RUN_TYPES
        .iter()
        .zip(&entries)
        .filter(|(_, e)| e.is_none())
        .map(|(r, _)| format!("run_{r}"))
        .collect();
    if missing.is_empty() {
        for (r, e) in RUN_TYPES.iter().zip(&entries) {
            if let Some(b) = e.and_then(|e| out.boolean(e)) {
                out.set(&format!("run_{r}"), b, None);
            }
        }
    } else {
        // TwinDB read all five or none: one missing key made it run every type.
        out.comment(&format!(
            "TwinDB ignored this whole section because it lacks {}, and ran every run \
             type; that is written here. Set the ones you want off to false.",
            missing.join(", ")
        ));
        for (r, e) in RUN_TYPES.iter().zip(&entries) {
            if let Some(e) = e {
                if boolean(unquote(&e.value).trim()) == Some(false) {
                    out.drop(e, "TwinDB ignored it (see above)");
                }
            }
            out.set(&format!("run_{r}"), true, None);
        }
    }
    keys.drop_rest(out, "unknown key; TwinDB ignored it");
}

fn export(out: &mut Out, section: Option<&Section>) {
    let Some(section) = section else { return };
    let mut keys = Keys::of(section);
    let Some(transport) = keys.take("transport").and_then(|e| {
        let t = unquote(&e.value);
        (!t.is_empty()).then(|| t.to_string())
    }) else {
        out.text.push('\n');
        out.section = "export".into();
        out.comment(&format!(
            "[export] (line {}) has no transport; TwinDB failed on it. Set transport = \
             \"datadog\" or \"statsd\" in an [export] section to export metrics.",
            section.line
        ));
        keys.drop_rest(out, "[export] without transport");
        return;
    };
    out.header("export");
    out.set("transport", transport.as_str(), None);
    match transport.as_str() {
        "datadog" => {
            for key in ["api_key", "app_key"] {
                if let Some(v) = keys.take(key).and_then(|e| out.string(e)) {
                    out.secret(key, v);
                }
            }
            keys.drop_rest(
                out,
                "not a datadog key; twindb refuses keys of the other transport",
            );
        }
        "statsd" => {
            if let Some(v) = keys.take("statsd_host").and_then(|e| out.string(e)) {
                out.set("statsd_host", v, None);
            }
            if let Some(n) = keys.take("statsd_port").and_then(|e| out.int(e)) {
                out.set("statsd_port", n, None);
            }
            keys.drop_rest(
                out,
                "not a statsd key; twindb refuses keys of the other transport",
            );
        }
        _ => keys.drop_rest(out, "unknown transport (TwinDB failed on it too)"),
    }
}

fn unknown_section(out: &mut Out, section: &Section, ini: &Ini) {
    out.text.push('\n');
    out.section = section.name.clone();
    let lower = section.name.to_lowercase();
    let why = if section.name == "DEFAULT" {
        "configparser's defaults section; its values were used only through %(name)s, \
         which this import already expanded"
            .to_string()
    } else if lower != section.name
        && ini.section(&lower).is_none()
        && KNOWN.contains(&lower.as_str())
    {
        format!("TwinDB reads section names as written, so it ignored it (it reads [{lower}])")
    } else {
        "an unknown section; TwinDB ignored it".to_string()
    };
    out.comment(&format!(
        "[{}] (line {}) is not carried over: {why}.",
        section.name, section.line
    ));
    Keys::of(section).drop_rest(out, "in a section TwinDB did not read");
}

#[cfg(test)]
mod tests;
