//! V4 signed URLs for `share`, signed with the service account's key.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::enc;

/// A V4 signed URL (GOOG4-RSA-SHA256) for a GET of `key`, valid `expires` from `now`.
/// <https://cloud.google.com/storage/docs/access-control/signing-urls-manually>
pub fn sign_url(
    base: &str,
    bucket: &str,
    key: &str,
    email: &str,
    expires: Duration,
    now: chrono::DateTime<chrono::Utc>,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, gcp_auth::Error>,
) -> Result<String, String> {
    let (scheme, host) = base
        .split_once("://")
        .ok_or_else(|| format!("{base} is not a URL"))?;
    let host = host.trim_end_matches('/');
    let date = now.format("%Y%m%d").to_string();
    let timestamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{date}/auto/storage/goog4_request");
    let path = format!(
        "/{}/{}",
        enc(bucket),
        key.split('/').map(enc).collect::<Vec<_>>().join("/")
    );
    // Sorted by name, as the canonical request requires.
    let query = [
        ("X-Goog-Algorithm", "GOOG4-RSA-SHA256".to_string()),
        ("X-Goog-Credential", format!("{email}/{scope}")),
        ("X-Goog-Date", timestamp.clone()),
        ("X-Goog-Expires", expires.as_secs().to_string()),
        ("X-Goog-SignedHeaders", "host".to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", enc(v)))
    .collect::<Vec<_>>()
    .join("&");
    let canonical = format!("GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let to_sign = format!(
        "GOOG4-RSA-SHA256\n{timestamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let signature = sign(to_sign.as_bytes()).map_err(|e| format!("signing the URL: {e}"))?;
    Ok(format!(
        "{scheme}://{host}{path}?{query}&X-Goog-Signature={}",
        hex::encode(signature)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn signed_urls_have_the_v4_shape() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 8, 9, 10)
            .unwrap();
        let mut signed = Vec::new();
        let url = sign_url(
            "https://storage.googleapis.com",
            "bkt",
            "db1/daily/files/_etc 1.tar",
            "tw@p.iam.gserviceaccount.com",
            Duration::from_secs(3600),
            now,
            |d| {
                signed = d.to_vec();
                Ok(vec![0xab, 0xcd])
            },
        )
        .unwrap();
        assert_eq!(
            url,
            "https://storage.googleapis.com/bkt/db1/daily/files/_etc%201.tar?\
             X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=tw%40p.iam.gserviceaccount.com\
             %2F20261125%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20261125T080910Z&\
             X-Goog-Expires=3600&X-Goog-SignedHeaders=host&X-Goog-Signature=abcd"
        );
        let to_sign = String::from_utf8(signed).unwrap();
        assert!(to_sign.starts_with(
            "GOOG4-RSA-SHA256\n20261125T080910Z\n20261125/auto/storage/goog4_request\n"
        ));
    }
}
