//! [`Key`]: a destination key, checked once where an operation starts.
//!
//! A key is relative to the destination root and '/'-separated. It may not be empty,
//! start with '/', hold a NUL, or have an empty, `.`, `..` or dot-prefixed component:
//! so no key escapes the root, and none hides as a temp file (`.NAME.twindb-partial`)
//! or other hidden name that `list` skips.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::sync::Arc;

use super::DestinationError;

/// A key that passed [`Key::new`]. Cheap to clone (spawned part uploads hold one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(Arc<str>);

impl Key {
    /// `key` if it is valid, else an `InvalidInput` error naming it.
    pub fn new(key: &str) -> io::Result<Key> {
        let bad = key.is_empty()
            || key.starts_with('/')
            || key.contains('\0')
            || key.split('/').any(|part| {
                part.is_empty() || part == "." || part == ".." || part.starts_with('.')
            });
        if bad {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid key {key:?}"),
            ))
        } else {
            Ok(Key(key.into()))
        }
    }

    /// [`Key::new`] as the error of `action` on `destination`, for the first line of a
    /// trait method.
    pub fn checked(
        destination: &str,
        action: &'static str,
        key: &str,
    ) -> Result<Key, DestinationError> {
        Key::new(key).map_err(|e| DestinationError::new(destination, action, Some(key), e))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Key {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Rejects keys that could escape the destination root or hide as temp files.
pub fn validate_key(key: &str) -> io::Result<()> {
    Key::new(key).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        assert!(validate_key("db1/daily/files/_etc-2026.tar.zst").is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "a/.partial", "./a"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_checked_key_names_the_destination_and_action() {
        let k = Key::checked("s3://b", "storing", "h/daily/x.tar").unwrap();
        assert_eq!(&*k, "h/daily/x.tar");
        let e = Key::checked("s3://b", "storing", "h/../x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "s3://b: storing h/../x: invalid key \"h/../x\""
        );
        assert_eq!(e.kind, crate::destination::ErrorKind::Other);
    }
}
