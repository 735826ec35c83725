//! `[gcs]`: Google Cloud Storage, or an emulator at `endpoint`.

use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

use super::secret::{readable_by_others, Secret};
use super::Validator;

/// GCS wants resumable-upload chunks in multiples of 256 KiB.
pub const CHUNK_ALIGN: u64 = 256 << 10;
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsSection {
    pub gc_credentials_file: Option<String>,
    pub gc_encryption_key: Option<String>,
    pub gc_encryption_key_file: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub chunk_size: Option<toml::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GcsConfig {
    pub bucket: String,
    /// A service account's JSON key. None: Application Default Credentials, or no
    /// authentication at all when `endpoint` is set.
    pub credentials_file: Option<PathBuf>,
    /// A customer-supplied AES-256 key (base64), checked to be 32 bytes.
    pub encryption_key: Option<Secret>,
    /// E.g. an emulator at `http://127.0.0.1:9023`.
    pub endpoint: Option<String>,
    /// Bytes sent per resumable-upload request, a multiple of 256 KiB.
    pub chunk_size: u64,
    /// `[destination] download_ranges`: ranges of a large object read at once.
    pub download_ranges: usize,
}

impl Validator<'_> {
    pub(super) fn gcs(&mut self, s: Option<GcsSection>) -> GcsConfig {
        let s = s.unwrap_or_else(|| {
            self.error(
                "gcs",
                "",
                "backup_destination = \"gcs\" needs a [gcs] section with bucket",
            );
            GcsSection::default()
        });
        let bucket = s.bucket.unwrap_or_default();
        self.bucket_name("gcs", &bucket, "");
        let endpoint = self.endpoint_url("gcs", s.endpoint.as_deref());
        let credentials_file = s.gc_credentials_file.map(|f| {
            let path = self.path(&f);
            self.check_service_account(&path);
            path
        });
        let encryption_key = self.secret(
            "gcs",
            "gc_encryption_key",
            s.gc_encryption_key,
            s.gc_encryption_key_file,
        );
        if let Some(key) = &encryption_key {
            let decoded = base64::engine::general_purpose::STANDARD.decode(key.expose().trim());
            if !decoded.is_ok_and(|k| k.len() == 32) {
                // Never echo the value.
                self.error(
                    "gcs",
                    "gc_encryption_key",
                    "not a base64-encoded 256-bit AES key (e.g. `openssl rand -base64 32`)",
                );
            }
        }
        let chunk_size = self
            .byte_size("gcs", "chunk_size", s.chunk_size)
            .unwrap_or(DEFAULT_CHUNK_SIZE);
        let chunk_ok = chunk_size.is_multiple_of(CHUNK_ALIGN) && chunk_size <= MAX_CHUNK_SIZE;
        if !chunk_ok {
            self.error(
                "gcs",
                "chunk_size",
                format!("{chunk_size} bytes: must be a multiple of 256KiB, at most 1GiB"),
            );
        }
        GcsConfig {
            bucket,
            credentials_file,
            encryption_key,
            endpoint,
            chunk_size: if chunk_ok {
                chunk_size
            } else {
                DEFAULT_CHUNK_SIZE
            },
            download_ranges: super::sections::DEFAULT_DOWNLOAD_RANGES,
        }
    }

    /// The file must be a service account key: what gcp_auth and URL signing read.
    fn check_service_account(&mut self, path: &std::path::Path) {
        let key = "gc_credentials_file";
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.error("gcs", key, format!("{}: {e}", path.display()));
                return;
            }
        };
        let json: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                self.error("gcs", key, format!("{} is not JSON: {e}", path.display()));
                return;
            }
        };
        let missing: Vec<&str> = ["client_email", "private_key", "token_uri"]
            .into_iter()
            .filter(|f| !json.get(f).is_some_and(serde_json::Value::is_string))
            .collect();
        if !missing.is_empty() {
            self.error(
                "gcs",
                key,
                format!(
                    "{} is not a service account key (missing {}); create one with \
                     `gcloud iam service-accounts keys create`",
                    path.display(),
                    missing.join(", ")
                ),
            );
        }
        if readable_by_others(path) {
            self.warnings.push(format!(
                "{}: [gcs] {key}: {} holds a private key and is readable by other users: chmod 600 it",
                self.file.display(),
                path.display()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, DestinationConfig};

    const HEAD: &str =
        "[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\nbackup_destination = \"gcs\"\n\n";

    #[test]
    fn emulator_config_and_key_checks() {
        let c = parse(
            Path::new("/etc/twindb/t.toml"),
            &format!("{HEAD}[gcs]\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9023\"\n"),
        )
        .unwrap();
        let DestinationConfig::Gcs(g) = c.destination else {
            panic!()
        };
        assert_eq!(g.chunk_size, 16 << 20);
        assert!(g.credentials_file.is_none() && g.encryption_key.is_none());

        let err = parse(
            Path::new("/etc/twindb/t.toml"),
            &format!(
                "{HEAD}[gcs]\nbucket = \"b\"\ngc_encryption_key = \"c2hvcnQ=\"\nchunk_size = \"300KiB\"\ngc_credentials_file = \"/nonexistent/key.json\"\n"
            ),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("c2hvcnQ="), "{text}");
        assert!(
            text.contains(":9: [gcs] gc_encryption_key: not a base64"),
            "{text}"
        );
        assert!(text.contains(":10: [gcs] chunk_size"), "{text}");
        assert!(
            text.contains(":11: [gcs] gc_credentials_file: /nonexistent/key.json"),
            "{text}"
        );
    }
}
