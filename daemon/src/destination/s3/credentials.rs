//! Where the s3 destination takes credentials from when `[s3]` has none.

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::future as provider_future;
use aws_sdk_s3::config::{Credentials, ProvideCredentials};

/// The credentials twindb takes when `[s3]` has none: AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from the environment, else the
/// profile AWS_PROFILE (default "default") of the shared credentials file
/// (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials). Read at each request
/// the SDK signs without cached credentials, so rotated files are picked up.
#[derive(Debug)]
pub struct EnvironmentCredentials;

impl ProvideCredentials for EnvironmentCredentials {
    fn provide_credentials<'a>(&'a self) -> provider_future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider_future::ProvideCredentials::ready(environment_credentials())
    }
}

fn environment_credentials() -> Result<Credentials, CredentialsError> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials::new(
            id,
            secret,
            var("AWS_SESSION_TOKEN"),
            None,
            "environment",
        ));
    }
    let path = var("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")));
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    if let Some(path) = path {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let fields = profile_fields(&text, &profile);
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
            };
            if let (Some(id), Some(secret)) =
                (get("aws_access_key_id"), get("aws_secret_access_key"))
            {
                return Ok(Credentials::new(
                    id,
                    secret,
                    get("aws_session_token"),
                    None,
                    "shared credentials file",
                ));
            }
        }
    }
    Err(CredentialsError::not_loaded(format!(
        "no AWS credentials: set aws_access_key_id and aws_secret_access_key in [s3], or \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in twindbd's environment, or a \
         [{profile}] profile in the shared credentials file (SSO, assumed roles and \
         instance profiles are not supported)"
    )))
}

/// `key = value` pairs of `[profile]` in an AWS INI file; keys lowercased.
fn profile_fields(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_the_shared_credentials_file() {
        let text = "[other]\naws_access_key_id = X\n\n[default]\n# c\nAWS_ACCESS_KEY_ID=AK\naws_secret_access_key = SK \n";
        let f = profile_fields(text, "default");
        assert_eq!(
            f,
            vec![
                ("aws_access_key_id".to_string(), "AK".to_string()),
                ("aws_secret_access_key".to_string(), "SK".to_string())
            ]
        );
    }
}
