//! The docs tell the truth about the command line: every command and flag is in
//! docs/operations.md's table and in the man page twindbctl(1), every `twindbctl ...`
//! line in the README and docs/ parses with the real CLI, and twindb.toml(5) holds
//! every key of docs/config.md.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};

use super::Cli;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README and every Markdown page in docs/.
fn pages() -> Vec<(PathBuf, String)> {
    let mut paths = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths.into_iter().map(|p| (p.clone(), read(&p))).collect()
}

/// Leaf commands as paths ("restore file") with their long flags, without the global
/// ones; hidden commands (`man`, for the package build) left out.
fn leaves(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, Vec<String>)>) {
    for sub in cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
    {
        let path = format!("{prefix}{}", sub.get_name()).trim().to_string();
        if sub.has_subcommands() {
            leaves(sub, &format!("{path} "), out);
        } else {
            let flags = sub
                .get_arguments()
                .filter(|a| !a.is_global_set())
                .filter_map(|a| a.get_long())
                .filter(|l| *l != "help")
                .map(|l| format!("--{l}"))
                .collect();
            out.push((path, flags));
        }
    }
}

/// The first cell of each table row in the section `## twindbctl` of operations.md.
fn command_table() -> Vec<String> {
    let ops = read(&repo().join("docs/operations.md"));
    let section = ops
        .split("\n## ")
        .find(|s| s.starts_with("twindbctl\n"))
        .expect("operations.md has a `## twindbctl` section");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l[2..].split(" | ").next().unwrap().replace("\\|", "|"))
        .collect()
}

#[test]
fn every_command_and_flag_is_in_the_operations_table() {
    let rows = command_table();
    let mut all = Vec::new();
    leaves(&Cli::command(), "", &mut all);
    let mut missing = Vec::new();
    for (path, flags) in &all {
        // A command may have several rows (`ls` and `ls --pitr`).
        let rows: Vec<&String> = rows
            .iter()
            .filter(|r| {
                let r = r.trim_start_matches('`');
                r == format!("{path}`") || r.starts_with(&format!("{path} "))
            })
            .collect();
        if rows.is_empty() {
            missing.push(format!("command `{path}`"));
            continue;
        }
        for flag in flags {
            let found = rows.iter().any(|row| {
                row.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .any(|w| w == flag)
            });
            if !found {
                missing.push(format!("`{path} {flag}`"));
            }
        }
    }
    let section = read(&repo().join("docs/operations.md"));
    for global in Cli::command().get_arguments().filter_map(|a| a.get_long()) {
        if global != "help" && global != "version" && !section.contains(&format!("--{global}")) {
            missing.push(format!("global flag --{global}"));
        }
    }
    assert!(
        missing.is_empty(),
        "missing from docs/operations.md's twindbctl table: {missing:#?}"
    );
    // And the other way round: no row names a command that does not exist.
    for row in &rows {
        let words: Vec<&str> = row.trim_matches('`').split_whitespace().collect();
        let known = all.iter().any(|(path, _)| {
            let n = path.split(' ').count();
            words.len() >= n && words[..n].join(" ") == *path
        });
        assert!(known, "operations.md documents an unknown command: {row}");
    }
}

/// The tags of a man page's entries: the line after each `.TP`.
fn tags(roff: &str) -> Vec<&str> {
    let lines: Vec<&str> = roff.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .map(|w| w[1])
        .collect()
}

#[test]
fn every_command_and_flag_is_in_the_man_page() {
    let page = String::from_utf8(crate::man::twindbctl(Cli::command())).unwrap();
    // roff writes a literal `-` as `\-`, and options in bold.
    let page = page.replace("\\-", "-");
    let mut all = Vec::new();
    leaves(&Cli::command(), "", &mut all);
    assert!(all.len() > 15, "only {} commands", all.len());
    let mut missing = Vec::new();
    for (path, flags) in &all {
        let heading = format!(".SS \"twindbctl {path}\"\n");
        let Some(start) = page.find(&heading) else {
            missing.push(format!("command `{path}`"));
            continue;
        };
        // The command's subsection: up to the next heading.
        let body = &page[start + heading.len()..];
        let body = &body[..body.find("\n.S").unwrap_or(body.len())];
        // Each flag has its own entry (a `.TP` tag), not just a place in the synopsis.
        let tags = tags(body);
        for flag in flags {
            if !tags.iter().any(|t| t.contains(&format!("\\fB{flag}\\fR"))) {
                missing.push(format!("`{path} {flag}`"));
            }
        }
    }
    let options = &page[page.find(".SH OPTIONS").expect("an OPTIONS section")..];
    let options = &options[..options.find(".SH COMMANDS").expect("a COMMANDS section")];
    let tags = tags(options);
    for global in Cli::command().get_arguments().filter_map(|a| a.get_long()) {
        if !tags
            .iter()
            .any(|t| t.contains(&format!("\\fB--{global}\\fR")))
        {
            missing.push(format!("global flag --{global}"));
        }
    }
    assert!(
        missing.is_empty(),
        "missing from twindbctl(1): {missing:#?}"
    );
}

#[test]
fn every_config_key_is_in_the_config_man_page() {
    let page = String::from_utf8(crate::man::config())
        .unwrap()
        .replace("\\-", "-");
    let tags = tags(&page);
    let reference = read(&repo().join("docs/config.md"));
    let mut keys = 0;
    for row in reference.lines().filter(|l| l.starts_with("| `")) {
        // A key cell may name two keys: `smtp_user`, `smtp_password`.
        let cell = row[2..].split(" | ").next().unwrap();
        for key in cell.split('`').skip(1).step_by(2) {
            keys += 1;
            let bold = format!("\\fB{key}\\fR");
            assert!(
                tags.iter().any(|t| t.contains(&bold)),
                "twindb.toml(5) has no entry for {key} of the row {row}"
            );
        }
    }
    assert!(keys > 80, "only {keys} keys found in docs/config.md");
}

/// A synopsis placeholder and a value that parses in its place.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("RUN_TYPE", "daily"),
    ("R", "daily"),
    ("H", "db1"),
    ("ID", "42"),
    ("COPY", "db1/daily/files/_etc-2026-11-25_00_00_03.tar.zst"),
    ("DIR", "/tmp/dir"),
    ("FILE", "/tmp/file"),
    ("OUT", "/tmp/out"),
    ("PATH", "/tmp/socket"),
    ("COMMAND", "status"),
];

/// Words of a shell line: quotes removed, a `#` comment and a `>` redirection dropped.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, '#') if word.is_none() => break,
            (None, '>') if word.is_none() => break,
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// A synopsis with `[optional]` parts gives two lines: with all of them (the first
/// alternative of `a|b`), and with none.
fn expand(line: &str) -> Vec<String> {
    if !line.contains('[') && !line.contains('|') {
        return vec![line.to_string()];
    }
    let with: String = line.chars().filter(|c| *c != '[' && *c != ']').collect();
    let with = with
        .split(' ')
        .map(|w| w.split('|').next().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let mut without = String::new();
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => without.push(c),
            _ => {}
        }
    }
    vec![with, without]
}

/// Lines of code blocks that run twindbctl, continuation lines joined, with any
/// `VAR=value` prefix dropped: (line number, command line).
fn command_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_code = false;
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        if let Some((start, mut cmd)) = pending.take() {
            cmd.push(' ');
            cmd.push_str(line.trim().trim_end_matches('\\'));
            if line.trim_end().ends_with('\\') {
                pending = Some((start, cmd));
            } else {
                out.push((start, cmd));
            }
            continue;
        }
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let mut cmd = line.trim_start().trim_start_matches("$ ");
        while let Some((first, rest)) = cmd.split_once(' ') {
            if first.contains('=') && !first.starts_with('-') {
                cmd = rest.trim_start();
            } else {
                break;
            }
        }
        if !in_code || !cmd.starts_with("twindbctl ") {
            continue;
        }
        if cmd.trim_end().ends_with('\\') {
            pending = Some((n + 1, cmd.trim_end().trim_end_matches('\\').to_string()));
        } else {
            out.push((n + 1, cmd.to_string()));
        }
    }
    out
}

#[test]
fn every_twindbctl_line_in_the_docs_parses() {
    // clone mysql needs the password; the docs pass it in this variable.
    std::env::set_var("TWINDB_REPLICATION_PASSWORD", "secret");
    let mut failures = Vec::new();
    let mut checked = 0;
    for (path, text) in pages() {
        for (n, line) in command_lines(&text) {
            for variant in expand(&line) {
                let args: Vec<String> = shell_words(&variant)
                    .into_iter()
                    .map(|w| {
                        PLACEHOLDERS
                            .iter()
                            .find(|(p, _)| w == *p)
                            .map_or(w, |(_, v)| v.to_string())
                    })
                    .collect();
                checked += 1;
                if let Err(e) = Cli::try_parse_from(&args) {
                    failures.push(format!(
                        "{}:{n}: {line}\n  as {args:?}: {}",
                        path.display(),
                        e.render()
                    ));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} twindbctl lines found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
