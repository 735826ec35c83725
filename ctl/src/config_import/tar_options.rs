//! `[source] tar_options`: TwinDB put these words into `tar cf - [tar_options] DIR`.
//! The common exclusion options have twindb keys; the rest become a comment.

use super::ini::Entry;
use super::Out;

/// What GNU tar's `--exclude-vcs` leaves out (tar's manual, "exclude-vcs").
const VCS: &[&str] = &[
    "CVS/",
    "RCS/",
    "SCCS/",
    ".git/",
    ".gitignore",
    ".gitattributes",
    ".gitmodules",
    ".arch-ids/",
    "{arch}/",
    "=RELEASE-ID",
    "=meta-update",
    "=update",
    ".bzr",
    ".bzrignore",
    ".bzrtags",
    ".hg",
    ".hgignore",
    ".hgtags",
    "_darcs",
    ".svn/",
];

pub(super) fn tar_options(out: &mut Out, e: &Entry) {
    // TwinDB split the value on spaces (str.split), not like a shell.
    let words: Vec<&str> = e.value.split_whitespace().collect();
    let mut exclude: Vec<String> = Vec::new();
    let mut caches = false;
    let mut one_fs = false;
    let mut notes: Vec<String> = Vec::new();
    let mut left: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        i += 1;
        let pattern = if let Some(p) = w.strip_prefix("--exclude=") {
            Some(p.to_string())
        } else if w == "--exclude" && i < words.len() {
            i += 1;
            Some(words[i - 1].to_string())
        } else {
            None
        };
        if let Some(p) = pattern {
            let p = unquote(&p);
            if p.contains('*') && p.trim_end_matches('/').contains('/') {
                notes.push(format!(
                    "{p}: in tar '*' also matches '/', in twindb it stops at '/' (use '**/')"
                ));
            }
            exclude.push(translate_pattern(&p));
            continue;
        }
        match w {
            "--exclude-caches" => caches = true,
            "--exclude-caches-under" | "--exclude-caches-all" => {
                caches = true;
                notes.push(format!(
                    "{w}: twindb does what --exclude-caches does: it keeps the cache folder and \
                     its CACHEDIR.TAG and leaves out the rest"
                ));
            }
            "--one-file-system" => one_fs = true,
            "--exclude-vcs" => exclude.extend(VCS.iter().map(|p| p.to_string())),
            _ => left.push(w),
        }
    }
    if !exclude.is_empty() {
        out.set("exclude", exclude, None);
    }
    if caches {
        out.set("exclude_caches", true, None);
    }
    if one_fs {
        out.set("one_file_system", true, None);
    }
    for n in notes {
        out.comment(&format!("tar_options {n}"));
    }
    if !left.is_empty() {
        out.drop(
            e,
            &format!(
                "twindb has no equivalent for {}; copies will include what they excluded",
                left.join(" ")
            ),
        );
    }
}

fn unquote(p: &str) -> String {
    let q = |c| p.len() >= 2 && p.starts_with(c) && p.ends_with(c);
    if q('\'') || q('"') {
        p[1..p.len() - 1].to_string()
    } else {
        p.to_string()
    }
}

/// GNU tar matches an exclude pattern unanchored (after any '/'); twindb anchors a
/// pattern with an inner '/' at the backup dir, so such a pattern gets a leading `**/`.
/// A pattern without '/' or with a leading one means the same in both.
fn translate_pattern(p: &str) -> String {
    let inner = p.trim_end_matches('/');
    if p.starts_with('/') || !inner.contains('/') {
        p.to_string()
    } else {
        format!("**/{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::translate_pattern;

    #[test]
    fn patterns_keep_tar_s_unanchored_meaning() {
        assert_eq!(translate_pattern("*.log"), "*.log");
        assert_eq!(translate_pattern("cache/"), "cache/");
        assert_eq!(translate_pattern("/home/a/tmp"), "/home/a/tmp");
        assert_eq!(translate_pattern("var/tmp"), "**/var/tmp");
    }
}
