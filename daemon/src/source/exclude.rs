//! What a files copy leaves out: `[source] exclude` patterns, cache folders tagged with
//! `CACHEDIR.TAG` and other file systems. docs/config.md#excludes is the user's contract;
//! the pattern language is ours, small and fully specified there, rather than a glob
//! crate's whose corner cases (dot files, `**`, escapes) we would have to document anyway.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The first bytes of a valid `CACHEDIR.TAG` (https://bford.info/cachedir/), which GNU
/// tar's `--exclude-caches` checks too: a file of that name without them is no tag.
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// What the files source leaves out, validated once from `[source]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Excludes {
    pub patterns: Vec<Pattern>,
    /// GNU tar's `--exclude-caches`: a folder holding a valid CACHEDIR.TAG is stored
    /// with its tag only.
    pub caches: bool,
    /// GNU tar's `--one-file-system`: a folder on another file system is stored empty.
    pub one_file_system: bool,
}

impl Excludes {
    /// Whether `path` (below `top`, the backup dir) is matched by a pattern.
    pub fn matches(&self, top: &Path, path: &Path, is_dir: bool) -> bool {
        let Ok(rel) = path.strip_prefix(top) else {
            return false;
        };
        if rel.as_os_str().is_empty() {
            // The backup dir itself is never left out: the config lists it.
            return false;
        }
        self.patterns.iter().any(|p| p.matches(path, rel, is_dir))
    }
}

/// One `exclude` pattern; see docs/config.md#excludes for the language.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    text: String,
    absolute: bool,
    dir_only: bool,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// `**`: zero or more whole path parts.
    AnyDepth,
    Name(Vec<Tok>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Char(char),
    /// `*`: any run of characters within one path part.
    Star,
    /// `?`: one character within one path part.
    One,
    /// `[...]`: one character in (or, with `!`/`^`, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Pattern {
    /// Parses a pattern; the error says what is wrong with it, for the config check.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("an empty pattern".into());
        }
        let absolute = text.starts_with('/');
        let dir_only = text.ends_with('/');
        let body = text.trim_start_matches('/').trim_end_matches('/');
        if body.is_empty() {
            return Err(format!(
                "{text:?} matches nothing (no name after the slashes)"
            ));
        }
        let mut parts = Vec::new();
        for part in body.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err(format!(
                    "{text:?}: '.' and '..' are not allowed in a pattern"
                ));
            }
            if part == "**" {
                if parts.last() != Some(&Part::AnyDepth) {
                    parts.push(Part::AnyDepth);
                }
                continue;
            }
            if part.contains("**") {
                return Err(format!(
                    "{text:?}: '**' must be a whole path part (\"a/**/b\"); use '*' within a name"
                ));
            }
            parts.push(Part::Name(
                tokens(part).map_err(|e| format!("{text:?}: {e}"))?,
            ));
        }
        // Without a slash (but for a trailing one) a pattern names an entry at any
        // depth, as GNU tar's `--exclude=*.tmp` and .gitignore do.
        if !absolute && !body.contains('/') {
            parts.insert(0, Part::AnyDepth);
        }
        Ok(Pattern {
            text: text.to_string(),
            absolute,
            dir_only,
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_absolute(&self) -> bool {
        self.absolute
    }

    /// The leading parts without wildcards of an absolute pattern, as a path
    /// (`/home/*/x` -> `/home`), for the check that it can match inside a backup dir.
    pub fn literal_prefix(&self) -> PathBuf {
        let mut p = PathBuf::from("/");
        for part in &self.parts {
            match part {
                Part::Name(toks) if toks.iter().all(|t| matches!(t, Tok::Char(_))) => {
                    p.push(
                        toks.iter()
                            .map(|t| match t {
                                Tok::Char(c) => *c,
                                _ => unreachable!(),
                            })
                            .collect::<String>(),
                    );
                }
                _ => break,
            }
        }
        p
    }

    /// Whether the pattern is all literal (no wildcard at all).
    pub fn is_literal(&self) -> bool {
        self.parts
            .iter()
            .all(|p| matches!(p, Part::Name(t) if t.iter().all(|t| matches!(t, Tok::Char(_)))))
    }

    fn matches(&self, path: &Path, rel: &Path, is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            return false;
        }
        let names = if self.absolute {
            names_of(path)
        } else {
            names_of(rel)
        };
        match_parts(&self.parts, &names)
    }
}

fn names_of(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

fn tokens(part: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = part.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            '\\' => Tok::Char(chars.next().ok_or("a trailing '\\' escapes nothing")?),
            '[' => class(&mut chars)?,
            c => Tok::Char(c),
        });
    }
    Ok(out)
}

/// After '[': `[abc]`, `[a-z]`, `[!0-9]` (or `^`); a ']' first is a member.
fn class(chars: &mut std::str::Chars) -> Result<Tok, String> {
    let mut negated = false;
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = chars.next().ok_or("'[' without its closing ']'")?;
        match c {
            '!' | '^' if first && !negated => {
                negated = true;
                continue;
            }
            ']' if !first => break,
            _ => {}
        }
        first = false;
        let lo = if c == '\\' {
            chars.next().ok_or("a trailing '\\' escapes nothing")?
        } else {
            c
        };
        let mut ahead = chars.clone();
        if ahead.next() == Some('-') {
            match ahead.next() {
                Some(']') | None => ranges.push((lo, lo)),
                Some(hi) => {
                    if hi < lo {
                        return Err(format!("the range {lo}-{hi} is backwards"));
                    }
                    chars.next();
                    chars.next();
                    ranges.push((lo, hi));
                }
            }
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok(Tok::Class { negated, ranges })
}

fn match_parts(parts: &[Part], names: &[String]) -> bool {
    match parts.split_first() {
        None => names.is_empty(),
        Some((Part::AnyDepth, rest)) => (0..=names.len()).any(|i| match_parts(rest, &names[i..])),
        Some((Part::Name(toks), rest)) => match names.split_first() {
            Some((name, more)) => {
                let chars: Vec<char> = name.chars().collect();
                match_name(toks, &chars) && match_parts(rest, more)
            }
            None => false,
        },
    }
}

fn match_name(toks: &[Tok], name: &[char]) -> bool {
    match toks.split_first() {
        None => name.is_empty(),
        Some((Tok::Star, rest)) => (0..=name.len()).any(|i| match_name(rest, &name[i..])),
        Some((tok, rest)) => match name.split_first() {
            Some((c, more)) => one(tok, *c) && match_name(rest, more),
            None => false,
        },
    }
}

fn one(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Char(x) => *x == c,
        Tok::One => true,
        Tok::Class { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
        Tok::Star => unreachable!("handled by match_name"),
    }
}

/// Whether `dir` holds a valid CACHEDIR.TAG: a regular file that starts with the
/// signature. Unreadable counts as no tag: the folder is then backed up whole.
pub fn is_cache_dir(dir: &Path) -> bool {
    let tag = dir.join(CACHEDIR_TAG);
    match std::fs::symlink_metadata(&tag) {
        Ok(m) if m.is_file() => {}
        _ => return false,
    }
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    File::open(&tag)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == CACHEDIR_SIGNATURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Excludes {
        Excludes {
            patterns: patterns
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
            ..Excludes::default()
        }
    }

    fn m(patterns: &[&str], path: &str, is_dir: bool) -> bool {
        ex(patterns).matches(Path::new("/srv/data"), Path::new(path), is_dir)
    }

    #[test]
    fn a_name_without_slash_matches_at_any_depth() {
        assert!(m(&["*.tmp"], "/srv/data/a.tmp", false));
        assert!(m(&["*.tmp"], "/srv/data/x/y/.b.tmp", false));
        assert!(!m(&["*.tmp"], "/srv/data/a.tmpx", false));
        assert!(m(&["cache"], "/srv/data/x/cache", true));
        assert!(!m(&["cache"], "/srv/data/x/cachex", true));
    }

    #[test]
    fn a_slash_inside_anchors_at_the_backup_dir() {
        assert!(m(&["x/*.log"], "/srv/data/x/a.log", false));
        assert!(!m(&["x/*.log"], "/srv/data/y/x/a.log", false));
        assert!(
            !m(&["x/*.log"], "/srv/data/x/sub/a.log", false),
            "* stops at /"
        );
        assert!(m(&["x/**/a.log"], "/srv/data/x/a.log", false));
        assert!(m(&["x/**/a.log"], "/srv/data/x/p/q/a.log", false));
        assert!(m(&["**/logs/*"], "/srv/data/p/logs/z", false));
    }

    #[test]
    fn a_leading_slash_is_a_full_path() {
        assert!(m(&["/srv/data/x"], "/srv/data/x", false));
        assert!(!m(&["/data/x"], "/srv/data/x", false));
        assert!(m(&["/srv/*/x"], "/srv/data/x", false));
        assert!(
            !m(&["/srv/data"], "/srv/data", true),
            "never the backup dir itself"
        );
    }

    #[test]
    fn a_trailing_slash_matches_folders_only() {
        assert!(m(&["build/"], "/srv/data/a/build", true));
        assert!(!m(&["build/"], "/srv/data/a/build", false));
    }

    #[test]
    fn classes_question_marks_and_escapes() {
        assert!(m(&["file[0-9].txt"], "/srv/data/file7.txt", false));
        assert!(!m(&["file[!0-9].txt"], "/srv/data/file7.txt", false));
        assert!(m(&["file[!0-9].txt"], "/srv/data/filex.txt", false));
        assert!(m(&["[]]x"], "/srv/data/]x", false));
        assert!(m(&["?.c"], "/srv/data/é.c", false));
        assert!(m(&["\\*"], "/srv/data/*", false));
        assert!(!m(&["\\*"], "/srv/data/a", false));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, why) in [
            ("", "empty"),
            ("/", "matches nothing"),
            ("a**", "whole path part"),
            ("[a-", "closing"),
            ("a\\", "escapes nothing"),
            ("a/../b", "'..'"),
            ("[z-a]", "backwards"),
        ] {
            let e = Pattern::parse(p).unwrap_err();
            assert!(e.contains(why), "{p:?}: {e}");
        }
    }

    #[test]
    fn literal_prefix_of_absolute_patterns() {
        let p = Pattern::parse("/home/*/x").unwrap();
        assert_eq!(p.literal_prefix(), Path::new("/home"));
        assert!(!p.is_literal());
        assert!(Pattern::parse("/home/a/").unwrap().is_literal());
    }

    #[test]
    fn cachedir_tag_needs_the_signature() {
        let t = tempfile::tempdir().unwrap();
        assert!(!is_cache_dir(t.path()));
        std::fs::write(t.path().join(CACHEDIR_TAG), "hello").unwrap();
        assert!(!is_cache_dir(t.path()));
        let mut good = CACHEDIR_SIGNATURE.to_vec();
        good.extend_from_slice(b"\n# a cache\n");
        std::fs::write(t.path().join(CACHEDIR_TAG), good).unwrap();
        assert!(is_cache_dir(t.path()));
    }
}
