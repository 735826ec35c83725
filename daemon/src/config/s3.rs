//! `[s3]`: Amazon S3 and S3-compatible servers.

use serde::Deserialize;

use super::secret::Secret;
use super::Validator;

/// S3's own limits on multipart uploads.
pub const MIN_PART_SIZE: u64 = 5 << 20;
pub const MAX_PART_SIZE: u64 = 5 << 30;
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;
pub const DEFAULT_REGION: &str = "us-east-1";

/// Storage classes S3 documents. GLACIER and DEEP_ARCHIVE copies must be restored in S3
/// before twindb can read them; see docs/config.md.
const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "EXPRESS_ONEZONE",
    "SNOW",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_secret_access_key_file: Option<String>,
    pub aws_default_region: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub part_size: Option<toml::Value>,
    pub upload_concurrency: Option<u32>,
    pub server_side_encryption: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// An S3-compatible server, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub credentials: S3Credentials,
    /// Size of the first parts of a multipart upload; later parts grow.
    pub part_size: u64,
    /// Parts uploaded at the same time.
    pub upload_concurrency: usize,
    /// `[destination] download_ranges`: ranges of a large object read at once.
    pub download_ranges: usize,
    /// "AES256", "aws:kms" or "aws:kms:dsse".
    pub server_side_encryption: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum S3Credentials {
    Static {
        access_key_id: String,
        secret_access_key: Secret,
    },
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, then the shared
    /// credentials file, read when a request needs them.
    Environment,
}

impl Validator<'_> {
    pub(super) fn s3(&mut self, s: Option<S3Section>) -> S3Config {
        let s = s.unwrap_or_else(|| {
            self.error(
                "s3",
                "",
                "backup_destination = \"s3\" needs an [s3] section with bucket",
            );
            S3Section::default()
        });
        let bucket = s.bucket.unwrap_or_default();
        self.bucket_name("s3", &bucket, "; keys already start with the host name");
        let region = s
            .aws_default_region
            .unwrap_or_else(|| DEFAULT_REGION.into());
        if region.is_empty() {
            self.error("s3", "aws_default_region", "must not be empty");
        }
        let endpoint = self.endpoint_url("s3", s.endpoint.as_deref());
        // S3-compatible servers are usually reached by address, where virtual-host
        // style (bucket.host) cannot work.
        let force_path_style = s.force_path_style.unwrap_or(endpoint.is_some());

        let secret = self.secret(
            "s3",
            "aws_secret_access_key",
            s.aws_secret_access_key,
            s.aws_secret_access_key_file,
        );
        let credentials = match (s.aws_access_key_id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() => S3Credentials::Static {
                access_key_id: id,
                secret_access_key: secret,
            },
            (None, None) => S3Credentials::Environment,
            (Some(_), None) => {
                self.error(
                    "s3",
                    "aws_secret_access_key",
                    "aws_access_key_id is set: set aws_secret_access_key (or aws_secret_access_key_file) too",
                );
                S3Credentials::Environment
            }
            (_, Some(_)) => {
                self.error(
                    "s3",
                    "aws_access_key_id",
                    "required with aws_secret_access_key",
                );
                S3Credentials::Environment
            }
        };

        let part_size = self
            .byte_size("s3", "part_size", s.part_size)
            .unwrap_or(DEFAULT_PART_SIZE);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            self.error(
                "s3",
                "part_size",
                format!("{part_size} bytes is out of S3's range 5MiB..=5GiB"),
            );
        }
        let upload_concurrency = s
            .upload_concurrency
            .map_or(DEFAULT_UPLOAD_CONCURRENCY, |n| n as usize);
        if !(1..=64).contains(&upload_concurrency) {
            self.error(
                "s3",
                "upload_concurrency",
                format!("{upload_concurrency} is out of range 1..=64"),
            );
        }

        if let Some(sse) = &s.server_side_encryption {
            if !["AES256", "aws:kms", "aws:kms:dsse"].contains(&sse.as_str()) {
                self.error(
                    "s3",
                    "server_side_encryption",
                    format!("unknown value {sse:?}: expected \"AES256\", \"aws:kms\" or \"aws:kms:dsse\""),
                );
            }
        }
        if s.sse_kms_key_id.is_some()
            && !s
                .server_side_encryption
                .as_deref()
                .is_some_and(|v| v.starts_with("aws:kms"))
        {
            self.error(
                "s3",
                "sse_kms_key_id",
                "needs server_side_encryption = \"aws:kms\" (or \"aws:kms:dsse\")",
            );
        }
        if let Some(class) = &s.storage_class {
            if !STORAGE_CLASSES.contains(&class.as_str()) {
                self.error(
                    "s3",
                    "storage_class",
                    format!(
                        "unknown storage class {class:?}: expected one of {}",
                        STORAGE_CLASSES.join(", ")
                    ),
                );
            }
        }

        S3Config {
            bucket,
            region,
            endpoint,
            force_path_style,
            credentials,
            part_size: part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
            upload_concurrency: upload_concurrency.clamp(1, 64),
            download_ranges: super::sections::DEFAULT_DOWNLOAD_RANGES,
            server_side_encryption: s.server_side_encryption,
            sse_kms_key_id: s.sse_kms_key_id,
            storage_class: s.storage_class,
        }
    }
}

/// Checks every object-store section (`[s3]`, `[gcs]`) shares.
impl Validator<'_> {
    /// The bucket is required and a plain name: no '/', no spaces. `hint` ends the
    /// message about a bad name.
    pub(super) fn bucket_name(&mut self, section: &str, bucket: &str, hint: &str) {
        if bucket.is_empty() {
            self.error(
                section,
                "bucket",
                "required: the bucket copies are stored in",
            );
        } else if bucket.contains('/') || bucket.chars().any(char::is_whitespace) {
            self.error(
                section,
                "bucket",
                format!("{bucket:?} is not a bucket name (no '/', no spaces{hint})"),
            );
        }
    }

    /// An `endpoint` must be an http(s) URL; returned without trailing '/'.
    pub(super) fn endpoint_url(&mut self, section: &str, endpoint: Option<&str>) -> Option<String> {
        let ep = endpoint?;
        if !(ep.starts_with("http://") || ep.starts_with("https://")) || ep.len() < 9 {
            self.error(
                section,
                "endpoint",
                format!("{ep:?} is not a URL: expected http://HOST[:PORT] or https://HOST[:PORT]"),
            );
        }
        Some(ep.trim_end_matches('/').to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use crate::config::{parse, DestinationConfig, S3Config, S3Credentials};

    const HEAD: &str =
        "[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\nbackup_destination = \"s3\"\n\n";

    fn s3(section: &str) -> Result<S3Config, crate::config::ConfigErrors> {
        let c = parse(Path::new("/etc/twindb/t.toml"), &format!("{HEAD}{section}"))?;
        match c.destination {
            DestinationConfig::S3(s) => Ok(s),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_environment_credentials() {
        let c = s3("[s3]\nbucket = \"b\"\n").unwrap();
        assert_eq!(c.region, "us-east-1");
        assert!(!c.force_path_style);
        assert_eq!(c.part_size, 16 << 20);
        assert_eq!(c.upload_concurrency, 4);
        assert_eq!(c.credentials, S3Credentials::Environment);
        let c = s3(
            "[s3]\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000/\"\npart_size = 6291456\n",
        )
        .unwrap();
        assert!(c.force_path_style, "an endpoint implies path style");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.part_size, 6 << 20);
    }

    #[test]
    fn download_ranges_reach_s3_and_gcs_and_are_checked() {
        for kind in ["s3", "gcs"] {
            let parse = |ranges: &str| {
                let text = format!(
                    "[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\n\
                     backup_destination = \"{kind}\"\n{ranges}\n[{kind}]\nbucket = \"b\"\n"
                );
                parse(Path::new("/etc/twindb/t.toml"), &text)
            };
            let ranges = |c: crate::config::Config| match c.destination {
                DestinationConfig::S3(s) => s.download_ranges,
                DestinationConfig::Gcs(g) => g.download_ranges,
                other => panic!("{other:?}"),
            };
            assert_eq!(ranges(parse("").unwrap()), 4);
            assert_eq!(ranges(parse("download_ranges = 16\n").unwrap()), 16);
            for bad in ["0", "65"] {
                let err = parse(&format!("download_ranges = {bad}\n")).unwrap_err();
                assert_eq!(
                    err.to_string(),
                    format!(
                        "/etc/twindb/t.toml:6: [destination] download_ranges: {bad} is out of \
                         range 1..=64"
                    )
                );
            }
        }
    }

    #[test]
    fn bucket_and_endpoint_are_checked_alike_in_every_object_store_section() {
        for (kind, hint) in [
            ("s3", "; keys already start with the host name"),
            ("gcs", ""),
        ] {
            let head = HEAD.replace("\"s3\"", &format!("\"{kind}\""));
            let parse = |section: &str| {
                parse(
                    Path::new("/etc/twindb/t.toml"),
                    &format!("{head}[{kind}]\n{section}"),
                )
            };
            let err = parse("bucket = \"a/b\"\nendpoint = \"ftp://x\"\n").unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!(
                    ":8: [{kind}] bucket: \"a/b\" is not a bucket name (no '/', no spaces{hint})"
                )),
                "{text}"
            );
            assert!(
                text.contains(&format!(":9: [{kind}] endpoint: \"ftp://x\" is not a URL")),
                "{text}"
            );
            let err = parse("endpoint = \"http://h:1\"\n").unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("[{kind}] bucket: required: the bucket copies")),
                "{err}"
            );
        }
    }

    #[test]
    fn errors_name_file_line_and_key_and_never_the_secret() {
        let err =
            s3("[s3]\nbucket = \"b\"\naws_secret_access_key = \"hunter2\"\npart_size = \"2MiB\"\n")
                .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("/etc/twindb/t.toml:7: [s3] aws_access_key_id: required"),
            "{text}"
        );
        assert!(
            text.contains("/etc/twindb/t.toml:10: [s3] part_size"),
            "{text}"
        );

        let err = s3("[s3]\nbucket = \"b\"\nregion = \"x\"\n").unwrap_err();
        assert_eq!(err.0[0].key, "[s3] region", "{err}");
        assert_eq!(err.0[0].line, Some(9), "{err}");

        let err = s3("[s3]\n").unwrap_err();
        assert_eq!(err.0[0].key, "[s3] bucket", "{err}");
    }

    #[test]
    fn secrets_come_from_files_and_readable_secrets_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s3.secret");
        std::fs::write(&secret, "from-file\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = dir.path().join("t.toml");
        std::fs::write(
            &config,
            format!(
                "{HEAD}[s3]\nbucket = \"b\"\naws_access_key_id = \"AK\"\naws_secret_access_key_file = \"s3.secret\"\n"
            ),
        )
        .unwrap();
        let c = crate::config::load(&config).unwrap();
        let DestinationConfig::S3(s) = &c.destination else {
            panic!()
        };
        let S3Credentials::Static {
            secret_access_key, ..
        } = &s.credentials
        else {
            panic!()
        };
        assert_eq!(secret_access_key.expose(), "from-file");
        assert!(
            !format!("{c:?}").contains("from-file"),
            "Debug shows the secret"
        );
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("s3.secret"), "{:?}", c.warnings);

        // An inline secret in a file others can read.
        std::fs::write(
            &config,
            format!("{HEAD}[s3]\nbucket = \"b\"\naws_access_key_id = \"AK\"\naws_secret_access_key = \"x\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = crate::config::load(&config).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("[s3] aws_secret_access_key") && w.contains("chmod 600")),
            "{:?}",
            c.warnings
        );
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(crate::config::load(&config).unwrap().warnings.is_empty());
    }
}
