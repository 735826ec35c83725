//! `[az]`: Azure Blob Storage, or Azurite. The connection string is parsed here once
//! into the account, its key and the blob endpoint; no error ever repeats its value.

use serde::Deserialize;

use super::secret::Secret;
use super::Validator;

/// Azure's own limits on block blobs: at most 50,000 blocks of at most 4000 MiB.
/// Below 1 MiB the block count would cap a copy at a few dozen GiB.
pub const MIN_BLOCK_SIZE: u64 = 1 << 20;
pub const MAX_BLOCK_SIZE: u64 = 4000 << 20;
pub const DEFAULT_BLOCK_SIZE: u64 = 16 << 20;
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzSection {
    pub connection_string: Option<String>,
    pub connection_string_file: Option<String>,
    pub container_name: Option<String>,
    pub remote_path: Option<String>,
    pub block_size: Option<toml::Value>,
    pub upload_concurrency: Option<u32>,
    pub access_tier: Option<String>,
}

/// The tier each copy is set to once stored. Archive is not offered: an archived blob
/// cannot be read until Azure rehydrates it (hours), so restores, verifies and drills
/// would fail; a lifecycle rule can still archive old copies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AccessTier {
    Hot,
    Cool,
    Cold,
}

impl AccessTier {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTier::Hot => "Hot",
            AccessTier::Cool => "Cool",
            AccessTier::Cold => "Cold",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AzConfig {
    pub account: String,
    /// The account key (base64), from the connection string.
    pub account_key: Secret,
    /// `https://ACCOUNT.blob.core.windows.net`, or the connection string's
    /// `BlobEndpoint` (Azurite: `http://127.0.0.1:10000/devstoreaccount1`). No trailing '/'.
    pub blob_endpoint: String,
    pub container: String,
    /// Blob names are `{remote_path}/{key}`; empty: the key alone. No '/' at either end.
    pub remote_path: String,
    /// Bytes per block of a block-list upload.
    pub block_size: u64,
    /// Blocks uploaded at the same time.
    pub upload_concurrency: usize,
    /// Set on each copy after it is stored; None: the account's default tier.
    pub access_tier: Option<AccessTier>,
    /// `[destination] download_ranges`: ranges of a large object read at once.
    pub download_ranges: usize,
}

/// What a connection string told, before the checks.
#[derive(Debug, Default, PartialEq)]
struct Parts {
    account: Option<String>,
    key: Option<String>,
    protocol: Option<String>,
    suffix: Option<String>,
    blob_endpoint: Option<String>,
    sas: bool,
    dev: bool,
}

/// `Name=value;Name=value`, names case-insensitive. The key's value holds '=' (base64
/// padding): only the first '=' splits. Errors name the part, never its value.
fn parse_parts(text: &str) -> Result<Parts, String> {
    let mut p = Parts::default();
    for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, value)) = item.split_once('=') else {
            return Err(
                "not a connection string: expected Name=value pairs separated by ';'".into(),
            );
        };
        let value = value.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "accountname" => p.account = Some(value),
            "accountkey" => p.key = Some(value),
            "defaultendpointsprotocol" => p.protocol = Some(value),
            "endpointsuffix" => p.suffix = Some(value),
            "blobendpoint" => p.blob_endpoint = Some(value),
            "sharedaccesssignature" => p.sas = true,
            "usedevelopmentstorage" => p.dev = value.eq_ignore_ascii_case("true"),
            // Other services' endpoints: not ours to use.
            "queueendpoint" | "tableendpoint" | "fileendpoint" => {}
            other => return Err(format!("unknown part {other:?} in the connection string")),
        }
    }
    Ok(p)
}

/// Azurite's well-known development account (public, in Microsoft's docs).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// (account, key, blob endpoint) of a connection string.
fn resolve(text: &str) -> Result<(String, String, String), String> {
    let p = parse_parts(text)?;
    if p.sas {
        return Err(
            "a SharedAccessSignature connection string is not supported yet: \
                    use one with AccountName and AccountKey"
                .into(),
        );
    }
    if p.dev {
        let endpoint = p
            .blob_endpoint
            .unwrap_or_else(|| format!("http://127.0.0.1:10000/{DEV_ACCOUNT}"));
        return Ok((DEV_ACCOUNT.into(), DEV_KEY.into(), endpoint));
    }
    let account = p
        .account
        .filter(|a| !a.is_empty())
        .ok_or("the connection string has no AccountName")?;
    let key = p
        .key
        .filter(|k| !k.is_empty())
        .ok_or("the connection string has no AccountKey")?;
    use base64::Engine as _;
    if base64::engine::general_purpose::STANDARD
        .decode(&key)
        .is_err()
    {
        return Err("the connection string's AccountKey is not base64 \
                    (copy it again from the portal's Access keys)"
            .into());
    }
    let endpoint = match p.blob_endpoint {
        Some(ep) => ep,
        None => {
            let protocol = p.protocol.unwrap_or_else(|| "https".into());
            let suffix = p.suffix.unwrap_or_else(|| "core.windows.net".into());
            format!("{protocol}://{account}.blob.{suffix}")
        }
    };
    let is_url = (endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        && endpoint
            .parse::<hyper::Uri>()
            .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
    if !is_url {
        return Err(format!(
            "the connection string's blob endpoint {endpoint:?} is not an http(s) URL"
        ));
    }
    Ok((account, key, endpoint.trim_end_matches('/').to_string()))
}

impl Validator<'_> {
    pub(super) fn az(&mut self, s: Option<AzSection>) -> AzConfig {
        let s = s.unwrap_or_else(|| {
            self.error(
                "az",
                "",
                "backup_destination = \"az\" needs an [az] section with connection_string \
                 and container_name",
            );
            AzSection::default()
        });
        let container = s.container_name.unwrap_or_default();
        self.container_name(&container);
        let given = s.connection_string.is_some() || s.connection_string_file.is_some();
        let secret = self.secret(
            "az",
            "connection_string",
            s.connection_string,
            s.connection_string_file.clone(),
        );
        let key_name = if s.connection_string_file.is_some() {
            "connection_string_file"
        } else {
            "connection_string"
        };
        let (account, account_key, blob_endpoint) = match secret.map(|c| resolve(c.expose())) {
            Some(Ok(parts)) => parts,
            Some(Err(message)) => {
                self.error("az", key_name, message);
                Default::default()
            }
            None => {
                // Given but unusable: secret() said why.
                if !given {
                    self.error(
                        "az",
                        "connection_string",
                        "required: the storage account's connection string (or \
                         connection_string_file)",
                    );
                }
                Default::default()
            }
        };
        let remote_path = s
            .remote_path
            .unwrap_or_default()
            .trim_matches('/')
            .to_string();
        if remote_path.split('/').any(|p| p == "." || p == "..") || remote_path.contains("//") {
            self.error(
                "az",
                "remote_path",
                format!("{remote_path:?}: no empty, '.' or '..' parts"),
            );
        }
        let block_size = self
            .byte_size("az", "block_size", s.block_size)
            .unwrap_or(DEFAULT_BLOCK_SIZE);
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
            self.error(
                "az",
                "block_size",
                format!(
                    "{block_size} bytes is out of range 1MiB..=4000MiB (Azure's largest block)"
                ),
            );
        }
        let upload_concurrency = s
            .upload_concurrency
            .map_or(DEFAULT_UPLOAD_CONCURRENCY, |n| n as usize);
        if !(1..=64).contains(&upload_concurrency) {
            self.error(
                "az",
                "upload_concurrency",
                format!("{upload_concurrency} is out of range 1..=64"),
            );
        }
        let access_tier = match s.access_tier.as_deref() {
            None => None,
            Some(t) if t.eq_ignore_ascii_case("hot") => Some(AccessTier::Hot),
            Some(t) if t.eq_ignore_ascii_case("cool") => Some(AccessTier::Cool),
            Some(t) if t.eq_ignore_ascii_case("cold") => Some(AccessTier::Cold),
            Some(t) if t.eq_ignore_ascii_case("archive") => {
                self.error(
                    "az",
                    "access_tier",
                    "\"Archive\" is refused: an archived copy cannot be read until Azure rehydrates it, \
                     so restores and drills would fail; archive old copies with a lifecycle rule",
                );
                None
            }
            Some(t) => {
                self.error(
                    "az",
                    "access_tier",
                    format!("{t:?}: expected \"Hot\", \"Cool\" or \"Cold\""),
                );
                None
            }
        };
        AzConfig {
            access_tier,
            account,
            account_key: Secret(account_key),
            blob_endpoint,
            container,
            remote_path,
            block_size: block_size.clamp(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE),
            upload_concurrency: upload_concurrency.clamp(1, 64),
            download_ranges: super::sections::DEFAULT_DOWNLOAD_RANGES,
        }
    }

    /// Azure's rule: 3 to 63 lower-case letters, digits and '-', starting and ending
    /// with a letter or digit, no "--".
    fn container_name(&mut self, name: &str) {
        if name.is_empty() {
            self.error(
                "az",
                "container_name",
                "required: the container copies are stored in",
            );
            return;
        }
        let ok = (3..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
            && !name.contains("--");
        if !ok {
            self.error(
                "az",
                "container_name",
                format!(
                    "{name:?} is not a container name: 3 to 63 lower-case letters, digits \
                     and single '-', starting and ending with a letter or digit"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{parse, DestinationConfig};

    const HEAD: &str =
        "[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\nbackup_destination = \"az\"\n\n";
    /// Not a real key: base64 of "not-a-real-key".
    const KEY: &str = "bm90LWEtcmVhbC1rZXk=";

    fn az(section: &str) -> Result<AzConfig, crate::config::ConfigErrors> {
        let c = parse(Path::new("/etc/twindb/t.toml"), &format!("{HEAD}{section}"))?;
        match c.destination {
            DestinationConfig::Az(a) => Ok(a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_account_connection_string_gives_the_public_endpoint_and_defaults() {
        let c = az(&format!(
            "[az]\nconnection_string = \"DefaultEndpointsProtocol=https;AccountName=acct;\
             AccountKey={KEY};EndpointSuffix=core.windows.net\"\ncontainer_name = \"backups\"\n\
             remote_path = \"/twindb/\"\n"
        ))
        .unwrap();
        assert_eq!(c.account, "acct");
        assert_eq!(c.account_key.expose(), KEY);
        assert_eq!(c.blob_endpoint, "https://acct.blob.core.windows.net");
        assert_eq!(c.remote_path, "twindb");
        assert_eq!(c.block_size, 16 << 20);
        assert_eq!(c.upload_concurrency, 4);
        assert_eq!(c.download_ranges, 4);
        assert_eq!(format!("{:?}", c.account_key), "<secret>");
    }

    #[test]
    fn azurite_connection_strings_work() {
        let c = az(
            "[az]\nconnection_string = \"UseDevelopmentStorage=true\"\ncontainer_name = \"abc\"\n",
        )
        .unwrap();
        assert_eq!(c.account, DEV_ACCOUNT);
        assert_eq!(c.blob_endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        let c = az(&format!(
            "[az]\nconnection_string = \"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
             AccountKey={KEY};BlobEndpoint=http://127.0.0.1:4321/devstoreaccount1/;\"\n\
             container_name = \"abc\"\nblock_size = \"4MiB\"\nupload_concurrency = 2\n"
        ))
        .unwrap();
        assert_eq!(c.blob_endpoint, "http://127.0.0.1:4321/devstoreaccount1");
        assert_eq!((c.block_size, c.upload_concurrency), (4 << 20, 2));
    }

    #[test]
    fn errors_name_file_line_and_key_and_never_the_secret() {
        let err = az(&format!(
            "[az]\nconnection_string = \"AccountKey={KEY}\"\ncontainer_name = \"Bad_Name\"\n\
             block_size = \"8KiB\"\nupload_concurrency = 0\nremote_path = \"a/../b\"\n"
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(KEY), "{text}");
        assert!(
            text.contains(
                "t.toml:8: [az] connection_string: the connection string has no AccountName"
            ),
            "{text}"
        );
        assert!(
            text.contains(":9: [az] container_name: \"Bad_Name\" is not"),
            "{text}"
        );
        assert!(
            text.contains(":10: [az] block_size: 8192 bytes is out of range"),
            "{text}"
        );
        assert!(
            text.contains(":11: [az] upload_concurrency: 0 is out of range"),
            "{text}"
        );
        assert!(text.contains(":12: [az] remote_path:"), "{text}");

        let err = az("[az]\nconnection_string = \"AccountName=a;AccountKey=%%%secret%%%\"\ncontainer_name = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("AccountKey is not base64"), "{err}");
        let err = az(&format!(
            "[az]\nconnection_string = \"AccountName=a;AccountKey={KEY};BlobEndpoint=http://a b\"\n\
             container_name = \"abc\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not an http(s) URL"), "{err}");
        assert!(!err.contains("%%%secret"), "{err}");

        let err = az("[az]\ncontainer_name = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[az] connection_string: required"), "{err}");
        let err = az(&format!(
            "[az]\nconnection_string = \"AccountName=a;AccountKey={KEY}\"\n\
             connection_string_file = \"/x\"\ncontainer_name = \"abc\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("set connection_string or connection_string_file, not both"),
            "{err}"
        );
    }

    #[test]
    fn access_tier_is_hot_cool_or_cold_and_archive_is_refused() {
        let with = |tier: &str| {
            az(&format!(
                "[az]\nconnection_string = \"AccountName=a;AccountKey={KEY}\"\ncontainer_name = \"abc\"\naccess_tier = \"{tier}\"\n"
            ))
        };
        assert_eq!(with("cool").unwrap().access_tier, Some(AccessTier::Cool));
        assert_eq!(with("Cold").unwrap().access_tier, Some(AccessTier::Cold));
        let err = with("Archive").unwrap_err().to_string();
        assert!(
            err.contains(":10: [az] access_tier: \"Archive\" is refused"),
            "{err}"
        );
        let err = with("Premium").unwrap_err().to_string();
        assert!(
            err.contains("[az] access_tier: \"Premium\": expected"),
            "{err}"
        );
    }

    #[test]
    fn the_connection_string_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("az.conn");
        std::fs::write(&file, format!("AccountName=acct;AccountKey={KEY}\n")).unwrap();
        let c = az(&format!(
            "[az]\nconnection_string_file = \"{}\"\ncontainer_name = \"abc\"\n",
            file.display()
        ))
        .unwrap();
        assert_eq!((c.account.as_str(), c.account_key.expose()), ("acct", KEY));
        std::fs::write(&file, "AccountName=acct\n").unwrap();
        let err = az(&format!(
            "[az]\nconnection_string_file = \"{}\"\ncontainer_name = \"abc\"\n",
            file.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("[az] connection_string_file: the connection string has no AccountKey"),
            "{err}"
        );
    }
}
