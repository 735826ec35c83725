//! Man pages for the Debian package, generated so that they cannot drift from the code:
//! twindbctl(1) from the clap definitions, with every command and its flags, and
//! twindb.toml(5) from docs/config.md, the config reference (compiled in, so a build
//! always carries the reference of its own source tree).
//!
//! The package build runs the hidden `twindbctl man PAGE`; twindbd(8) comes from
//! `twindbd --man`, where its own clap definitions live.

use std::io::Write;

use clap::Command;

/// docs/config.md, the source of twindb.toml(5).
const CONFIG_REFERENCE: &str = include_str!("../../docs/config.md");

/// The manual's name in every page's header, as in twindbd(8).
const MANUAL: &str = "twindb";

/// One section of clap_mangen's rendering.
type Render = fn(&clap_mangen::Man, &mut dyn Write) -> std::io::Result<()>;

/// twindbctl(1): clap_mangen's header, synopsis and global options, then one
/// subsection per command (clap_mangen alone lists subcommands without their flags).
pub fn twindbctl(cli: Command) -> Vec<u8> {
    // Our own title line: clap_mangen writes an empty date as nothing, which shifts
    // the other fields of `.TH`.
    let mut out = title("TWINDBCTL", "1").into_bytes();
    let man = clap_mangen::Man::new(cli.clone());
    let sections: [Render; 4] = [
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
    ];
    for render in sections {
        render(&man, &mut out).expect("writing to a Vec");
    }
    out.extend_from_slice(b".SH COMMANDS\n");
    let mut leaves = Vec::new();
    leaf_commands(&cli, "twindbctl", &mut leaves);
    for (path, cmd) in leaves {
        let cmd = cmd.bin_name(&path).disable_help_flag(true);
        let man = clap_mangen::Man::new(cmd);
        out.extend_from_slice(format!(".SS \"{path}\"\n").as_bytes());
        for (i, render) in [
            clap_mangen::Man::render_synopsis_section,
            clap_mangen::Man::render_description_section,
            clap_mangen::Man::render_options_section,
        ]
        .into_iter()
        .enumerate()
        {
            let mut part = Vec::new();
            render(&man, &mut part).expect("writing to a Vec");
            // Each part starts with its own `.SH`: here they are paragraphs of one
            // subsection.
            let lines: Vec<&str> = std::str::from_utf8(&part)
                .expect("roff is UTF-8")
                .lines()
                .filter(|l| !l.starts_with(".SH "))
                .collect();
            if i > 0 && lines.iter().any(|l| !l.starts_with('.')) {
                out.extend_from_slice(b".PP\n");
            }
            for line in lines {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
    }
    out.extend_from_slice(TWINDBCTL_TAIL.as_bytes());
    out
}

/// The `.TH` line: no date, so that a build is reproducible.
fn title(name: &str, section: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    format!(".TH {name} {section} \"\" \"twindb {version}\" \"{MANUAL}\"\n")
}

/// Commands without subcommands, depth first, with their full names ("twindbctl
/// restore file"); hidden ones and `help` left out.
fn leaf_commands(cmd: &Command, path: &str, out: &mut Vec<(String, Command)>) {
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let path = format!("{path} {}", sub.get_name());
        if sub.has_subcommands() {
            leaf_commands(sub, &path, out);
        } else {
            out.push((path, sub.clone()));
        }
    }
}

const TWINDBCTL_TAIL: &str = r#".SH EXIT STATUS
.TP
0
Success. A followed job succeeded.
.TP
1
A followed job failed or was cancelled, the daemon refused the request, or
\fBcheck\fR found a destination unhealthy.
.TP
2
Bad command\-line arguments.
.TP
69
twindbd is not running, or the caller may not use its socket.
.SH FILES
.TP
/run/twindb/twindbd.sock
twindbd's API socket (\fB[daemon] socket\fR in twindb.toml(5)).
.SH SEE ALSO
twindbd(8), twindb.toml(5), /usr/share/doc/twindb/operations.md
"#;

/// twindb.toml(5): docs/config.md turned into roff.
pub fn config() -> Vec<u8> {
    let mut out = title("TWINDB.TOML", "5");
    out.push_str(
        ".SH NAME\ntwindb.toml \\- configuration file of twindbd\n\
         .SH SYNOPSIS\n/etc/twindb/twindb.toml\n.SH DESCRIPTION\n",
    );
    out.push_str(&markdown_to_roff(CONFIG_REFERENCE));
    out.push_str(
        ".SH SEE ALSO\ntwindbd(8), twindbctl(1); the other pages of the reference in \
         /usr/share/doc/twindb/\n",
    );
    out.into_bytes()
}

/// The Markdown of docs/ as roff: headings, paragraphs, lists, code blocks and tables
/// (each table row becomes a tagged paragraph, its first cell the tag). The page's
/// `# title` is dropped: the caller writes the NAME section.
pub fn markdown_to_roff(md: &str) -> String {
    let mut out = String::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("```") {
            out.push_str(".PP\n.RS 4\n.nf\n");
            for code in lines.by_ref() {
                if code.starts_with("```") {
                    break;
                }
                out.push_str(&text_line(&escape(code)));
            }
            out.push_str(".fi\n.RE\n");
        } else if let Some(h) = line.strip_prefix("## ") {
            out.push_str(&format!(".SH \"{}\"\n", heading(&h.to_uppercase())));
        } else if let Some(h) = line
            .strip_prefix("### ")
            .or_else(|| line.strip_prefix("#### "))
        {
            out.push_str(&format!(".SS \"{}\"\n", heading(h)));
        } else if line.starts_with("# ") || line.trim().is_empty() {
            // The title (the caller's NAME section), or the end of a paragraph.
            continue;
        } else if line.starts_with('|') {
            let header = cells(line);
            lines.next(); // the |---| line
            while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
                out.push_str(&table_row(&header, &cells(row)));
            }
        } else {
            // A paragraph or a list item, with its continuation lines.
            let item = list_marker(line);
            let start = match item {
                Some(("-", _)) => ".IP \\(bu 2\n".to_string(),
                Some((marker, _)) => format!(".IP {marker} 4\n"),
                None => ".PP\n".to_string(),
            };
            out.push_str(&start);
            let first = item.map_or(line, |(_, rest)| rest);
            out.push_str(&text_line(&inline(first)));
            while let Some(next) = lines.next_if(|l| {
                !l.trim().is_empty()
                    && !l.starts_with("```")
                    && !l.starts_with('#')
                    && !l.starts_with('|')
                    && list_marker(l).is_none()
            }) {
                out.push_str(&text_line(&inline(next.trim())));
            }
        }
    }
    out
}

/// `- item` or `1. item` at the start of a line: (marker, rest).
fn list_marker(line: &str) -> Option<(&str, &str)> {
    if let Some(rest) = line.strip_prefix("- ") {
        return Some(("-", rest));
    }
    let (num, rest) = line.split_once(". ")?;
    (!num.is_empty() && num.chars().all(|c| c.is_ascii_digit()))
        .then_some((&line[..num.len() + 1], rest))
}

/// A table row: the first cell as the tag; the other cells as "column: value", the
/// column called "meaning" as the paragraph below them.
fn table_row(header: &[String], row: &[String]) -> String {
    let mut facts = Vec::new();
    let mut meaning = None;
    for (name, cell) in header.iter().zip(row).skip(1) {
        if name == "meaning" || name == "content" || name == "what it does" {
            meaning = Some(inline(cell));
        } else {
            facts.push(format!("{}: {}", inline(name), inline(cell)));
        }
    }
    let mut out = format!(".TP\n{}", text_line(&inline(&row[0])));
    if !facts.is_empty() {
        out.push_str(&text_line(&facts.join("; ")));
    }
    if let Some(m) = meaning {
        if !facts.is_empty() {
            out.push_str(".br\n");
        }
        out.push_str(&text_line(&m));
    }
    out
}

/// The cells of a table line; `\|` is a `|` inside a cell.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// A heading's text for a quoted `.SH`/`.SS` argument: no fonts, no quotes.
fn heading(h: &str) -> String {
    escape(&h.replace('`', "")).replace('"', "\\(dq")
}

/// One roff text line: a line starting with `.` or `'` would be a request.
fn text_line(text: &str) -> String {
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}\n")
    } else {
        format!("{text}\n")
    }
}

/// Characters roff would interpret: the escape character, and `-` (a plain `-` may
/// print as a hyphen, which breaks copied options and paths).
fn escape(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// Inline Markdown: `code` and **strong** in bold, [text](link) as its text.
fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['`', '*', '[']) {
        out.push_str(&escape(&rest[..i]));
        let tail = &rest[i..];
        if let Some(code) = tail.strip_prefix('`') {
            if let Some(end) = code.find('`') {
                out.push_str(&format!("\\fB{}\\fR", escape(&code[..end])));
                rest = &code[end + 1..];
                continue;
            }
        } else if let Some(strong) = tail.strip_prefix("**") {
            if let Some(end) = strong.find("**") {
                out.push_str(&format!("\\fB{}\\fR", inline(&strong[..end])));
                rest = &strong[end + 2..];
                continue;
            }
        } else if let Some((text, after)) = link(tail) {
            out.push_str(&inline(text));
            rest = after;
            continue;
        }
        // Not markup: the character itself.
        out.push_str(&escape(&tail[..1]));
        rest = &tail[1..];
    }
    out.push_str(&escape(rest));
    out
}

/// `[text](target)` at the start of `s`: (text, what follows). Brackets in the text
/// may nest one level (`[`[mysql]`](#mysql)`).
fn link(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    let after = s[i + 1..].strip_prefix('(')?;
                    let end = after.find(')')?;
                    return Some((&s[1..i], &after[end + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_roff() {
        let md = "# Title\n\nSome `a-b` text\nwith [a link](x.md#y) and **bold**.\n\n\
                  - item one\n  continued\n- item two\n\n1. first\n\n\
                  ```\n.dot line\n\\back\n```\n\n\
                  | key | type | meaning |\n|---|---|---|\n| `k` | string | A \\| B. |\n";
        let roff = markdown_to_roff(md);
        assert_eq!(
            roff,
            ".PP\nSome \\fBa\\-b\\fR text\nwith a link and \\fBbold\\fR.\n\
             .IP \\(bu 2\nitem one\ncontinued\n.IP \\(bu 2\nitem two\n.IP 1. 4\nfirst\n\
             .PP\n.RS 4\n.nf\n\\&.dot line\n\\eback\n.fi\n.RE\n\
             .TP\n\\fBk\\fR\ntype: string\n.br\nA | B.\n"
        );
    }
}
