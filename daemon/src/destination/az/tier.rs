//! Set Blob Tier: `[az] access_tier` for each stored copy. object_store sends the tier
//! header with a single Put Blob but not with the Put Block List that commits a larger
//! blob, and has no call to set it afterwards; so this one request is built here,
//! signed with the account key (SharedKey, as Azure documents it), and sent through
//! the same hyper client.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::errors::by_status;
use crate::config::AccessTier;
use crate::destination::client::{https_client, Https};
use crate::destination::{BackendError, DestinationError, ErrorKind};

/// Service version of the request (Cold needs 2021-12-02 or later).
const VERSION: &str = "2021-12-02";
const TIMEOUT: Duration = Duration::from_secs(60);

/// What a blob name keeps unescaped in the URL path: RFC 3986 unreserved and '/'.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

pub(super) struct Tier {
    tier: AccessTier,
    account: String,
    key: Vec<u8>,
    /// `{blob endpoint}/{container}`.
    base: String,
    /// The URL path of `base`: Azurite's endpoints hold the account in the path.
    base_path: String,
    client: Client<Https, Full<Bytes>>,
}

impl Tier {
    /// `key` is the account key as the connection string has it (base64, checked by
    /// the config).
    pub(super) fn new(
        tier: AccessTier,
        account: &str,
        key: &str,
        endpoint: &str,
        container: &str,
    ) -> Tier {
        let base = format!("{endpoint}/{container}");
        let after_scheme = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
        let base_path = after_scheme
            .find('/')
            .map_or("/".to_string(), |i| after_scheme[i..].to_string());
        Tier {
            tier,
            account: account.to_string(),
            key: base64::engine::general_purpose::STANDARD
                .decode(key)
                .unwrap_or_default(),
            base,
            base_path,
            client: https_client(),
        }
    }

    /// Sets the tier of the blob `name` (its full name, `remote_path` included), the
    /// copy `key` of `destination`; the error's kind tells the caller's retry what to do.
    pub(super) async fn set(
        &self,
        destination: &str,
        key: &str,
        name: &str,
    ) -> Result<(), DestinationError> {
        let fail = |kind: ErrorKind, e: BackendError| {
            DestinationError::with_cause(
                destination,
                "setting the access tier of",
                Some(key),
                kind,
                Box::new(e),
            )
        };
        let escaped = utf8_percent_encode(name, PATH).to_string();
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let tier = self.tier.as_str();
        let resource = format!("/{}{}/{escaped}\ncomp:tier", self.account, self.base_path);
        let to_sign = string_to_sign(&date, tier, &resource);
        let signature = sign(&self.key, &to_sign);
        let request = hyper::Request::put(format!("{}/{escaped}?comp=tier", self.base))
            .header("x-ms-date", &date)
            .header("x-ms-version", VERSION)
            .header("x-ms-access-tier", tier)
            .header(
                "authorization",
                format!("SharedKey {}:{signature}", self.account),
            )
            .header("content-length", "0")
            .body(Full::new(Bytes::new()))
            .map_err(|e| {
                fail(
                    ErrorKind::Other,
                    BackendError::caused_by("building Set Blob Tier", e),
                )
            })?;
        let answer = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| {
                let e = BackendError::new("no answer to Set Blob Tier within 60 s");
                fail(ErrorKind::Unreachable, e)
            })?
            .map_err(|e| {
                let e = BackendError::caused_by("sending Set Blob Tier", e);
                fail(ErrorKind::Unreachable, e)
            })?;
        let status = answer.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = answer
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        // Azure's error code names the problem; the rest of the body can echo the
        // string it signed, which says nothing useful.
        let text = String::from_utf8_lossy(&body);
        let code = text
            .split_once("<Code>")
            .and_then(|(_, r)| r.split_once("</Code>"))
            .map_or("", |(c, _)| c);
        let e = BackendError::new(format!("Set Blob Tier {tier}: HTTP {status} {code}"));
        Err(fail(by_status(status), e))
    }
}

/// SharedKey's string to sign for a body-less PUT whose only x-ms headers are the date,
/// the tier and the version.
fn string_to_sign(date: &str, tier: &str, resource: &str) -> String {
    // VERB, then Content-Encoding, -Language, -Length (empty when 0), -MD5, -Type, Date,
    // If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range: all empty.
    format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-access-tier:{tier}\nx-ms-date:{date}\nx-ms-version:{VERSION}\n{resource}"
    )
}

fn sign(key: &[u8], text: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The string to sign has Azure's 12 standard slots before the x-ms headers, and
    /// the HMAC is RFC 4231's (Azurite checks real signatures: destination_az.rs).
    #[test]
    fn the_string_to_sign_has_every_standard_header_slot() {
        let s = string_to_sign(
            "Mon, 30 Nov 2026 06:00:00 GMT",
            "Cool",
            "/acct/c/a/b\ncomp:tier",
        );
        assert_eq!(s.matches('\n').count(), 16, "{s:?}");
        assert!(s.starts_with("PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-access-tier:Cool\n"));
        // RFC 4231 test case 2: HMAC-SHA256 of "what do ya want for nothing?" with key "Jefe".
        let mac = sign(b"Jefe", "what do ya want for nothing?");
        let hex: String = base64::engine::general_purpose::STANDARD
            .decode(mac)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_path_of_an_emulator_endpoint_holds_the_account() {
        let t = Tier::new(
            AccessTier::Cool,
            "devstoreaccount1",
            "a2V5",
            "http://127.0.0.1:10000/devstoreaccount1",
            "backups",
        );
        assert_eq!(t.base_path, "/devstoreaccount1/backups");
        let t = Tier::new(
            AccessTier::Cool,
            "acct",
            "a2V5",
            "https://acct.blob.core.windows.net",
            "backups",
        );
        assert_eq!(t.base_path, "/backups");
    }
}
