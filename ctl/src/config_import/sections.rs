//! One translator per section of TwinDB's config: what TwinDB did with each key, written
//! as twindb's keys or as a comment saying why it cannot be carried over.

use std::path::Path;

use super::ini::{boolean, shell_split, unquote, Entry, Ini, Section};
use super::{Keys, Out, KNOWN, RUN_TYPES, TWINDB_RETENTION, TWINDB_RS_RETENTION_LOCAL};

pub(super) fn source_section(out: &mut Out, section: Option<&Section>) {
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
        super::tar_options::tar_options(out, e);
    }
    keys.drop_rest(out, "unknown key; TwinDB ignored it");
}

pub(super) fn destination_section(out: &mut Out, section: Option<&Section>) {
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

pub(super) fn ssh(out: &mut Out, section: Option<&Section>, is_destination: bool) {
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

pub(super) fn s3(out: &mut Out, section: Option<&Section>) {
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

pub(super) fn gcs(out: &mut Out, section: Option<&Section>) {
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

pub(super) fn az(out: &mut Out, section: Option<&Section>) {
    let Some(section) = section else { return };
    out.header("az");
    let mut keys = Keys::of(section);
    if let Some(v) = keys.take("connection_string").and_then(|e| out.string(e)) {
        out.secret("connection_string", v);
    }
    for key in ["container_name", "remote_path"] {
        if let Some(v) = keys.take(key).and_then(|e| out.string(e)) {
            out.set(key, v, None);
        }
    }
    if let Some(e) = keys.take("chunk_size") {
        out.drop(
            e,
            "TwinDB failed whenever chunk_size was set; twindb's block size is block_size \
             (default 16MiB)",
        );
    }
    keys.drop_rest(
        out,
        "unknown key: twindb has no such [az] key (TwinDB refused it too, with a TypeError)",
    );
}

pub(super) fn mysql(out: &mut Out, section: Option<&Section>) {
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

pub(super) fn compression(out: &mut Out, section: Option<&Section>) {
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

pub(super) fn gpg(out: &mut Out, section: Option<&Section>) {
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

pub(super) fn retention(out: &mut Out, section: Option<&Section>) {
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

pub(super) fn retention_local(out: &mut Out, section: Option<&Section>, keep_local: bool) {
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

pub(super) fn intervals(out: &mut Out, section: Option<&Section>) {
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

pub(super) fn export(out: &mut Out, section: Option<&Section>) {
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

pub(super) fn unknown_section(out: &mut Out, section: &Section, ini: &Ini) {
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
