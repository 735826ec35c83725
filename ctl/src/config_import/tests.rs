//! One test per section: TwinDB INI in, TOML out, parsed values equal what TwinDB did.

use std::path::Path;

use toml::{Table, Value};

use super::{translate, Import};

fn import(ini: &str) -> (Table, Import) {
    let i = translate(Path::new("/etc/twindb/twindb-backup.cfg"), ini).unwrap();
    let table: Table =
        toml::from_str(&i.toml).unwrap_or_else(|e| panic!("output is not TOML: {e}\n{}", i.toml));
    (table, i)
}

fn get<'a>(t: &'a Table, section: &str, key: &str) -> Option<&'a Value> {
    t.get(section)?.as_table()?.get(key)
}

fn s(v: &str) -> Value {
    Value::from(v)
}

/// Whether the comments of the output say `text` (comments are wrapped over lines).
fn comments_say(i: &Import, text: &str) -> bool {
    let comments: Vec<&str> = i
        .toml
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .collect();
    comments.join(" ").contains(text)
}

#[test]
fn source_splits_backup_dirs_like_a_shell_and_reads_booleans() {
    let (t, i) = import(
        "[source]\nbackup_dirs=/etc '/srv/my data' \"/var/x y\"\nbackup_mysql=YES\ntar_options = --exclude-vcs-ignores\n",
    );
    assert_eq!(
        get(&t, "source", "backup_dirs"),
        Some(&Value::from(vec!["/etc", "/srv/my data", "/var/x y"]))
    );
    assert_eq!(
        get(&t, "source", "backup_mysql"),
        Some(&Value::Boolean(true))
    );
    assert_eq!(get(&t, "source", "tar_options"), None);
    assert_eq!(i.dropped, ["[source] tar_options"]);
    assert!(comments_say(&i, "tar_options = \"--exclude-vcs-ignores\""));
    assert!(comments_say(&i, "no equivalent for --exclude-vcs-ignores"));

    let (t, i) = import("[source]\nbackup_dirs=/etc\nbackup_mysql=maybe\n");
    assert_eq!(get(&t, "source", "backup_mysql"), None);
    assert_eq!(i.dropped, ["[source] backup_mysql"]);
}

#[test]
fn tar_options_become_exclude_keys_and_a_comment_for_the_rest() {
    let (t, i) = import(
        "[source]\nbackup_dirs=/srv\ntar_options = --exclude=*.tmp --exclude var/cache --exclude-caches --one-file-system --exclude-vcs --sparse\n",
    );
    let exclude = get(&t, "source", "exclude").unwrap().as_array().unwrap();
    assert_eq!(exclude[0], s("*.tmp"));
    assert_eq!(exclude[1], s("**/var/cache"));
    assert!(exclude.contains(&s(".git/")), "{exclude:?}");
    assert_eq!(
        get(&t, "source", "exclude_caches"),
        Some(&Value::Boolean(true))
    );
    assert_eq!(
        get(&t, "source", "one_file_system"),
        Some(&Value::Boolean(true))
    );
    assert_eq!(i.dropped, ["[source] tar_options"]);
    assert!(comments_say(&i, "no equivalent for --sparse"));

    let (t, i) = import("[source]\nbackup_dirs=/srv\ntar_options = --exclude-caches-all\n");
    assert_eq!(
        get(&t, "source", "exclude_caches"),
        Some(&Value::Boolean(true))
    );
    assert!(i.dropped.is_empty());
    assert!(comments_say(&i, "--exclude-caches-all: twindb does what"));
}

#[test]
fn destination_and_keep_local_path() {
    let (t, i) =
        import("[destination]\nbackup_destination = \"s3\"\nkeep_local_path: /var/backup/local\n");
    assert_eq!(get(&t, "destination", "backup_destination"), Some(&s("s3")));
    assert_eq!(
        get(&t, "destination", "keep_local_path"),
        Some(&s("/var/backup/local"))
    );
    assert!(i.dropped.is_empty());
}

#[test]
fn ssh_port_key_defaults_and_host_keys() {
    let (t, i) = import(
        "[destination]\nbackup_destination=ssh\n[ssh]\nport=2222\nssh_user='backup'\nssh_key=\"/root/.ssh/id_ed25519\"\nbogus=1\n",
    );
    assert_eq!(get(&t, "ssh", "ssh_port"), Some(&Value::Integer(2222)));
    assert_eq!(get(&t, "ssh", "port"), None);
    assert_eq!(get(&t, "ssh", "ssh_user"), Some(&s("backup")));
    assert_eq!(get(&t, "ssh", "ssh_key"), Some(&s("/root/.ssh/id_ed25519")));
    // TwinDB's defaults for the two keys twindb requires.
    assert_eq!(get(&t, "ssh", "backup_host"), Some(&s("127.0.0.1")));
    assert_eq!(get(&t, "ssh", "backup_dir"), Some(&s("/var/backup")));
    // TwinDB accepted any host key; twindb records the first one.
    assert_eq!(
        get(&t, "ssh", "accept_new_host_keys"),
        Some(&Value::Boolean(true))
    );
    assert_eq!(i.dropped, ["[ssh] bogus"]);

    // The docs' `ssh_port` spelling is read too; with both, `port` wins as in TwinDB.
    let (t, _) = import("[ssh]\nbackup_host=h\nssh_port=22\n");
    assert_eq!(get(&t, "ssh", "ssh_port"), Some(&Value::Integer(22)));
    let (t, i) = import("[ssh]\nbackup_host=h\nssh_port=22\nport=23\n");
    assert_eq!(get(&t, "ssh", "ssh_port"), Some(&Value::Integer(23)));
    assert_eq!(i.dropped, ["[ssh] ssh_port"]);
    // Not the destination: carried as written, no defaults added.
    assert_eq!(get(&t, "ssh", "backup_dir"), None);
    assert_eq!(get(&t, "ssh", "accept_new_host_keys"), None);

    // An ssh destination without [ssh]: TwinDB ran on its defaults.
    let (t, _) = import("[destination]\nbackup_destination=ssh\n");
    assert_eq!(get(&t, "ssh", "backup_host"), Some(&s("127.0.0.1")));
    assert_eq!(get(&t, "ssh", "backup_dir"), Some(&s("/var/backup")));
}

#[test]
fn s3_keys_are_case_insensitive_and_the_secret_is_reported() {
    let (t, i) = import(
        "[s3]\nAWS_ACCESS_KEY_ID=AKIAX\nAWS_SECRET_ACCESS_KEY=\"s3cr3t/+\"\nAWS_DEFAULT_REGION=eu-west-1\nBUCKET=twindb-backups\n",
    );
    assert_eq!(get(&t, "s3", "aws_access_key_id"), Some(&s("AKIAX")));
    assert_eq!(get(&t, "s3", "aws_secret_access_key"), Some(&s("s3cr3t/+")));
    assert_eq!(get(&t, "s3", "aws_default_region"), Some(&s("eu-west-1")));
    assert_eq!(get(&t, "s3", "bucket"), Some(&s("twindb-backups")));
    assert_eq!(i.secrets, ["[s3] aws_secret_access_key"]);
    assert!(i.dropped.is_empty());

    // An unknown key is a comment without its value when it may be a secret.
    let (_, i) = import("[s3]\nbucket=b\nsession_password=hunter2\n");
    assert_eq!(i.dropped, ["[s3] session_password"]);
    assert!(!i.toml.contains("hunter2"));
}

#[test]
fn gcs_maps_the_sample_spelling_and_leaves_out_the_unused_encryption_key() {
    let (t, i) = import(
        "[gcs]\nGCS_CREDENTIALS_FILE=/etc/twindb/gcs.json\nGC_ENCRYPTION_KEY=c2VjcmV0\nBUCKET=b\n",
    );
    assert_eq!(
        get(&t, "gcs", "gc_credentials_file"),
        Some(&s("/etc/twindb/gcs.json"))
    );
    assert_eq!(get(&t, "gcs", "bucket"), Some(&s("b")));
    assert_eq!(get(&t, "gcs", "gc_encryption_key"), None);
    assert_eq!(i.dropped, ["[gcs] gc_encryption_key"]);
    assert!(
        !i.toml.contains("c2VjcmV0"),
        "the key's value is not copied"
    );
    // An empty key (the docs' sample) is nothing to drop.
    let (_, i) = import("[gcs]\nGC_ENCRYPTION_KEY=\nbucket=b\n");
    assert!(i.dropped.is_empty(), "{:?}", i.dropped);
}

#[test]
fn az_section() {
    let conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5Cg==;EndpointSuffix=core.windows.net";
    let (t, i) = import(&format!(
        "[destination]\nbackup_destination=az\n[az]\nconnection_string=\"{conn}\"\n\
         container_name=backups\nremote_path=/twindb\nchunk_size=4194304\n"
    ));
    assert_eq!(get(&t, "destination", "backup_destination"), Some(&s("az")));
    assert_eq!(get(&t, "az", "connection_string"), Some(&s(conn)));
    assert_eq!(get(&t, "az", "container_name"), Some(&s("backups")));
    assert_eq!(get(&t, "az", "remote_path"), Some(&s("/twindb")));
    assert_eq!(i.secrets, ["[az] connection_string"]);
    assert_eq!(i.dropped, ["[az] chunk_size"]);
    assert!(i.toml.contains("block_size"), "{}", i.toml);
}

#[test]
fn mysql_section() {
    let (t, i) = import(
        "[mysql]\nmysql_defaults_file='/etc/twindb/my.cnf'\nfull_backup=weekly\nexpire_log_days = 3\nxtrabackup_binary=/usr/bin/mariabackup\nxbstream_binary=mbstream\n",
    );
    assert_eq!(
        get(&t, "mysql", "mysql_defaults_file"),
        Some(&s("/etc/twindb/my.cnf"))
    );
    assert_eq!(get(&t, "mysql", "full_backup"), Some(&s("weekly")));
    assert_eq!(
        get(&t, "mysql", "expire_log_days"),
        Some(&Value::Integer(3))
    );
    assert_eq!(
        get(&t, "mysql", "xtrabackup_binary"),
        Some(&s("/usr/bin/mariabackup"))
    );
    assert_eq!(get(&t, "mysql", "xbstream_binary"), Some(&s("mbstream")));
    assert!(i.dropped.is_empty());
    let (_, i) = import("[mysql]\nexpire_log_days=a week\n");
    assert_eq!(i.dropped, ["[mysql] expire_log_days"]);
}

#[test]
fn compression_writes_twindb_defaults_out() {
    // No section: TwinDB compressed with gzip -9.
    let (t, _) = import("[source]\nbackup_dirs=/etc\n");
    assert_eq!(get(&t, "compression", "program"), Some(&s("gzip")));
    assert_eq!(get(&t, "compression", "level"), Some(&Value::Integer(9)));
    assert_eq!(get(&t, "compression", "threads"), None);

    let (t, _) = import("[compression]\nprogram=pigz\nthreads=4\n");
    assert_eq!(get(&t, "compression", "program"), Some(&s("pigz")));
    assert_eq!(get(&t, "compression", "level"), Some(&Value::Integer(9)));
    assert_eq!(get(&t, "compression", "threads"), Some(&Value::Integer(4)));

    let (t, _) = import("[compression]\nprogram=bzip2\nlevel=6\n");
    assert_eq!(get(&t, "compression", "program"), Some(&s("bzip2")));
    assert_eq!(get(&t, "compression", "level"), Some(&Value::Integer(6)));
}

#[test]
fn gpg_section_and_a_missing_secret_keyring() {
    let exists = std::env::current_exe().unwrap().display().to_string();
    let (t, i) = import(&format!(
        "[gpg]\nkeyring = /root/.gnupg/pubring.gpg\nsecret_keyring = {exists}\nrecipient = backupuser@yourdomain.com\n"
    ));
    assert_eq!(
        get(&t, "gpg", "recipient"),
        Some(&s("backupuser@yourdomain.com"))
    );
    assert_eq!(
        get(&t, "gpg", "keyring"),
        Some(&s("/root/.gnupg/pubring.gpg"))
    );
    assert_eq!(get(&t, "gpg", "secret_keyring"), Some(&s(&exists)));
    assert!(i.dropped.is_empty());

    let (t, i) =
        import("[gpg]\nrecipient=r\nkeyring=/k\nsecret_keyring=/nonexistent/secring.gpg\n");
    assert_eq!(get(&t, "gpg", "secret_keyring"), None);
    assert_eq!(i.dropped, ["[gpg] secret_keyring"]);
}

#[test]
fn retention_writes_every_key() {
    let (t, _) = import("[retention]\nhourly_copies=48\ndaily_copies = 14\n");
    let r = |k: &str| get(&t, "retention", k).and_then(Value::as_integer);
    assert_eq!(
        ["hourly", "daily", "weekly", "monthly", "yearly"].map(|p| r(&format!("{p}_copies"))),
        [Some(48), Some(14), Some(4), Some(12), Some(3)]
    );
    // No section: TwinDB's and twindb's defaults agree, nothing to write.
    let (t, _) = import("[source]\nbackup_dirs=/etc\n");
    assert!(t.get("retention").is_none());
}

#[test]
fn retention_local_falls_back_to_the_remote_defaults_as_twindb_did() {
    let (t, _) = import("[retention_local]\nhourly_copies=1\ndaily_copies=2\n");
    let r = |k: &str| get(&t, "retention_local", k).and_then(Value::as_integer);
    assert_eq!(
        ["hourly", "daily", "weekly", "monthly", "yearly"].map(|p| r(&format!("{p}_copies"))),
        [Some(1), Some(2), Some(4), Some(12), Some(3)]
    );
    // keep_local_path without the section: every key falls back.
    let (t, _) = import("[destination]\nbackup_destination=ssh\nkeep_local_path=/var/l\n");
    let r = |k: &str| get(&t, "retention_local", k).and_then(Value::as_integer);
    assert_eq!(
        ["hourly", "daily", "weekly", "monthly", "yearly"].map(|p| r(&format!("{p}_copies"))),
        [Some(24), Some(7), Some(4), Some(12), Some(3)]
    );
    // No local copies, no section.
    let (t, _) = import("[destination]\nbackup_destination=ssh\n");
    assert!(t.get("retention_local").is_none());
}

#[test]
fn intervals_all_or_nothing_as_twindb() {
    let (t, i) = import(
        "[intervals]\nrun_hourly=no\nrun_daily=yes\nrun_weekly=on\nrun_monthly=0\nrun_yearly=TRUE\n",
    );
    let r = |k: &str| get(&t, "intervals", k).and_then(Value::as_bool);
    assert_eq!(
        ["hourly", "daily", "weekly", "monthly", "yearly"].map(|p| r(&format!("run_{p}"))),
        [Some(false), Some(true), Some(true), Some(false), Some(true)]
    );
    assert!(i.dropped.is_empty());

    // One key missing: TwinDB ignored the section and ran everything.
    let (t, i) = import("[intervals]\nrun_hourly=no\nrun_daily=yes\n");
    let r = |k: &str| get(&t, "intervals", k).and_then(Value::as_bool);
    assert_eq!(
        ["hourly", "daily", "weekly", "monthly", "yearly"].map(|p| r(&format!("run_{p}"))),
        [Some(true); 5]
    );
    assert_eq!(i.dropped, ["[intervals] run_hourly"]);
    assert!(comments_say(
        &i,
        "it lacks run_weekly, run_monthly, run_yearly"
    ));
}

#[test]
fn export_datadog_and_statsd() {
    let (t, i) = import("[export]\ntransport=datadog\napp_key=APP\napi_key=API\nstatsd_port=1\n");
    assert_eq!(get(&t, "export", "transport"), Some(&s("datadog")));
    assert_eq!(get(&t, "export", "api_key"), Some(&s("API")));
    assert_eq!(get(&t, "export", "app_key"), Some(&s("APP")));
    assert_eq!(get(&t, "export", "statsd_port"), None);
    assert_eq!(i.secrets, ["[export] api_key", "[export] app_key"]);
    assert_eq!(i.dropped, ["[export] statsd_port"]);

    let (t, i) = import("[export]\ntransport=statsd\nstatsd_host=10.0.0.1\nstatsd_port=8126\n");
    assert_eq!(get(&t, "export", "statsd_host"), Some(&s("10.0.0.1")));
    assert_eq!(
        get(&t, "export", "statsd_port"),
        Some(&Value::Integer(8126))
    );
    assert!(i.secrets.is_empty());

    let (t, i) = import("[export]\napi_key=API\n");
    assert!(t.get("export").is_none());
    assert_eq!(i.dropped, ["[export] api_key"]);
    assert!(!i.toml.contains("API"));
}

#[test]
fn unknown_sections_and_wrong_case_headers_become_comments() {
    let (t, i) = import("[Source]\nbackup_dirs=/etc\n[extra]\nk=v\n");
    assert!(t.get("Source").is_none() && t.get("extra").is_none());
    assert_eq!(i.dropped, ["[Source] backup_dirs", "[extra] k"]);
    assert!(comments_say(&i, "it reads [source]"));
}

#[test]
fn values_with_toml_specials_survive() {
    let (t, _) = import("[s3]\nbucket=b\naws_secret_access_key=a\"b\\c#d'\n");
    // TwinDB stripped quote characters at both ends only.
    assert_eq!(
        get(&t, "s3", "aws_secret_access_key"),
        Some(&s("a\"b\\c#d"))
    );
}

#[test]
fn a_broken_ini_is_an_error_with_its_line() {
    let e = translate(Path::new("x.cfg"), "[source]\nbackup_dirs\n").unwrap_err();
    assert_eq!(e.line, 2);
}

/// TwinDB's `--binlogs-only` cron line has no INI key: the header says to stream the
/// binary logs instead, as a comment, and the commented section is valid TOML.
#[test]
fn the_binlogs_only_cron_line_maps_to_binlog_streaming_in_a_comment() {
    let (t, i) = import("[source]\nbackup_mysql=yes\n");
    assert!(comments_say(&i, "--binlogs-only"), "{}", i.toml);
    assert!(t.get("binlog").is_none(), "only a comment");
    let commented: String = i
        .toml
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .skip_while(|l| *l != "[binlog]")
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    let table: Table = toml::from_str(&commented).unwrap();
    assert_eq!(
        get(&table, "binlog", "enabled"),
        Some(&Value::Boolean(true))
    );
}
