//! The modifier chain on its own, through twindb's pipeline threads and the real
//! programs: random chains (property test), interop with the gpg command line, and
//! TwinDB 3.3's own encrypted and bzip2 copies.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sha2::{Digest, Sha256};
use twindb::config::GpgConfig;
use twindb::modifier::{resolve_gpg, ModifierEnv, ModifierSpec};
use twindb_tests::chain::{run_bytes, Way};
use twindb_tests::gpg::{have_programs, stop_agent, GpgKey};
use twindb_tests::{pseudo_random, scratch};

/// Each test asks only for the programs it runs: a host without gpg still runs the
/// compression chains (and under CI=true nothing is missing: have_programs fails).
const COMPRESSORS: &[&str] = &["pigz", "bzip2", "lbzip2"];
const GPG: &[&str] = &["gpg", "gpgconf"];

fn env_for(key: &GpgKey, home: &Path) -> ModifierEnv {
    std::fs::create_dir_all(home).unwrap();
    ModifierEnv {
        threads: 2,
        gpg: Some(GpgConfig {
            recipient: key.email.clone(),
            keyring: key.public_keyring(),
            secret_keyring: Some(key.secret_key_file()),
            homedir: Some(home.to_path_buf()),
        }),
        ..Default::default()
    }
}

/// Any modifier; gpg only `with_gpg`.
fn modifier(with_gpg: bool) -> impl Strategy<Value = ModifierSpec> {
    let mut choices = vec![
        (1i32..=6)
            .prop_map(|level| ModifierSpec::Zstd { level })
            .boxed(),
        (1u32..=9)
            .prop_map(|level| ModifierSpec::Gzip { level })
            .boxed(),
        (1u32..=9)
            .prop_map(|level| ModifierSpec::Pigz { level })
            .boxed(),
        (1u32..=9)
            .prop_map(|level| ModifierSpec::Bzip2 { level })
            .boxed(),
        (1u32..=9)
            .prop_map(|level| ModifierSpec::Lbzip2 { level })
            .boxed(),
    ];
    if with_gpg {
        choices.push(
            Just(ModifierSpec::Gpg {
                recipient: None,
                fingerprint: None,
            })
            .boxed(),
        );
    }
    proptest::strategy::Union::new(choices)
}

/// Compressible, random, or both, up to 300 KiB (several pipe chunks after gzip).
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        (0usize..300_000, any::<u64>()).prop_map(|(n, seed)| pseudo_random(n, seed)),
        (0usize..300_000, any::<u8>())
            .prop_map(|(n, b)| { (0..n).map(|i| b.wrapping_add((i / 1000) as u8)).collect() }),
    ]
}

#[test]
fn any_chain_restores_what_it_stored() {
    if !have_programs("any_chain_restores_what_it_stored", COMPRESSORS) {
        return;
    }
    // gpg joins the chains when installed; without it the other chains still run.
    let with_gpg = have_programs("any_chain_restores_what_it_stored (its gpg chains)", GPG);
    let t = scratch();
    let key = with_gpg.then(|| GpgKey::generate("prop@twindb.test"));
    let env = match &key {
        Some(key) => env_for(key, &t.path().join("host-home")),
        None => ModifierEnv {
            threads: 2,
            ..Default::default()
        },
    };
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(proptest::collection::vec(modifier(with_gpg), 0..=3), data()),
            |(chain, data)| {
                let stored = run_bytes(&chain, &env, Way::Encode, data.clone())
                    .map_err(|e| TestCaseError::fail(format!("encode {chain:?}: {e:#}")))?;
                let back = run_bytes(&chain, &env, Way::Decode, stored)
                    .map_err(|e| TestCaseError::fail(format!("decode {chain:?}: {e:#}")))?;
                prop_assert!(
                    back == data,
                    "{chain:?}: {} bytes in, {} out",
                    data.len(),
                    back.len()
                );
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn every_program_round_trips_and_corruption_fails_the_program() {
    if !have_programs("every_program_round_trips", COMPRESSORS) {
        return;
    }
    let env = ModifierEnv {
        threads: 2,
        ..Default::default()
    };
    let data = [pseudo_random(1 << 20, 3), vec![b'a'; 3 << 20]].concat();
    for spec in [
        ModifierSpec::Pigz { level: 6 },
        ModifierSpec::Bzip2 { level: 9 },
        ModifierSpec::Lbzip2 { level: 9 },
    ] {
        let chain = [spec.clone()];
        let stored = run_bytes(&chain, &env, Way::Encode, data.clone()).unwrap();
        assert!(stored.len() < data.len(), "{spec:?} compresses");
        let back = run_bytes(&chain, &env, Way::Decode, stored.clone()).unwrap();
        assert!(back == data, "{spec:?}");

        // Damage in the middle: the program's exit status fails the stage.
        let mut bad = stored;
        let mid = bad.len() / 2;
        bad.truncate(mid);
        let err = run_bytes(&chain, &env, Way::Decode, bad).unwrap_err();
        let msg = format!("{err:#}");
        let program = spec.program().unwrap();
        assert!(msg.starts_with(&format!("{program}: {program}")), "{msg}");
        assert!(msg.contains("exited with status"), "{msg}");
    }
}

/// `gpg --decrypt` on what twindb encrypted, and twindb on what `gpg --encrypt` wrote.
#[test]
fn gpg_command_line_interop_both_ways() {
    if !have_programs(
        "gpg_command_line_interop_both_ways",
        &["gpg", "gpgconf", "zstd", "gzip"],
    ) {
        return;
    }
    let t = scratch();
    let key = GpgKey::generate("interop@twindb.test");
    let env = env_for(&key, &t.path().join("host-home"));
    let data = [pseudo_random(700_000, 11), b"the end\n".repeat(5000)].concat();

    // twindb -> gpg: zstd then gpg, as a backup records it.
    let gpg = resolve_gpg(env.gpg.as_ref().unwrap()).unwrap();
    assert_eq!(
        gpg,
        ModifierSpec::Gpg {
            recipient: Some(key.email.clone()),
            fingerprint: Some(key.fingerprint.clone())
        }
    );
    let chain = [ModifierSpec::Zstd { level: 3 }, gpg];
    let stored = run_bytes(&chain, &env, Way::Encode, data.clone()).unwrap();
    let file = t.path().join("copy.tar.zst.gpg");
    std::fs::write(&file, &stored).unwrap();
    let plain = key.gpg(&["--decrypt", file.to_str().unwrap()]);
    let out = Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .stdin(std::fs::File::open(write(&t.path().join("p.zst"), &plain)).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout == data,
        "gpg --decrypt | zstd -d gives the data back"
    );

    // gpg -> twindb: gpg's defaults (its own compression on), binary and armored.
    let gz = Command::new("gzip")
        .arg("-c")
        .stdin(std::fs::File::open(write(&t.path().join("d"), &data)).unwrap())
        .output()
        .unwrap()
        .stdout;
    let gz_file = write(&t.path().join("data.gz"), &gz);
    for armor in [false, true] {
        let mut args = vec!["--trust-model", "always", "--recipient", &key.email];
        if armor {
            args.push("--armor");
        }
        args.extend(["--encrypt", gz_file.to_str().unwrap()]);
        args.insert(0, "--output");
        let out = t.path().join(format!("gpg-made-{armor}.gpg"));
        args.insert(1, out.to_str().unwrap());
        key.gpg(&args);
        let chain =
            ModifierSpec::chain_from_key("host/daily/files/_data-2026-11-25_00_00_00.tar.gz.gpg");
        let back = run_bytes(&chain, &env, Way::Decode, std::fs::read(&out).unwrap()).unwrap();
        assert!(back == data, "armor={armor}");
    }
}

#[test]
fn a_wrong_or_missing_key_is_named() {
    if !have_programs("a_wrong_or_missing_key_is_named", GPG) {
        return;
    }
    let t = scratch();
    let key = GpgKey::generate("right@twindb.test");
    let other = GpgKey::generate("other@twindb.test");
    let env = env_for(&key, &t.path().join("home"));

    // Encrypting to someone not in the keyring.
    let mut cfg = env.gpg.clone().unwrap();
    cfg.recipient = "nobody@twindb.test".into();
    let err = resolve_gpg(&cfg).unwrap_err().to_string();
    assert!(err.contains("nobody@twindb.test"), "{err}");
    assert!(
        err.contains(key.public_keyring().to_str().unwrap()),
        "{err}"
    );

    // Decrypting with another secret key: gpg fails, and the message says with what.
    let gpg = [resolve_gpg(env.gpg.as_ref().unwrap()).unwrap()];
    let stored = run_bytes(&gpg, &env, Way::Encode, b"secret data".to_vec()).unwrap();
    let mut wrong = env.clone();
    wrong.gpg.as_mut().unwrap().secret_keyring = Some(other.secret_key_file());
    let err = format!(
        "{:#}",
        run_bytes(&gpg, &wrong, Way::Decode, stored.clone()).unwrap_err()
    );
    assert!(err.contains("right@twindb.test"), "{err}");
    assert!(err.contains(&key.fingerprint), "{err}");
    assert!(
        err.contains(other.secret_key_file().to_str().unwrap()),
        "{err}"
    );
    assert!(err.contains("exited with status 2"), "{err}");

    // A public key where the secret key should be.
    let mut public = env.clone();
    public.gpg.as_mut().unwrap().secret_keyring = Some(key.public_keyring());
    let err = format!(
        "{:#}",
        run_bytes(&gpg, &public, Way::Decode, stored).unwrap_err()
    );
    assert!(err.contains("no secret key in it"), "{err}");
    // Nothing of the key material in any message.
    let secret = std::fs::read_to_string(key.secret_key_file()).unwrap();
    let body = secret.lines().nth(2).unwrap();
    assert!(!err.contains(body));
}

fn write(path: &Path, data: &[u8]) -> PathBuf {
    std::fs::write(path, data).unwrap();
    path.to_path_buf()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/twindb-3.3")
}

/// Member name -> sha256 of the content, from a tar stream.
fn tar_members(tar_bytes: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.insert(name, hex::encode(Sha256::digest(&content)));
    }
    out
}

/// TwinDB 3.3's gzip+gpg copy and its bzip2 copy, restored by twindb's modifiers from
/// the key's suffixes with a config that points at the fixture keys (armored files).
#[test]
fn twindb_3_3_encrypted_and_bzip2_copies_restore() {
    if !have_programs("twindb_3_3_copies_restore", &["gpg", "gpgconf", "bzip2"]) {
        return;
    }
    let t = scratch();
    let fx = fixtures();
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    // The config a user would write, validated like any other.
    let config = format!(
        "[source]\nbackup_dirs = [\"/etc\"]\n[destination]\nbackup_destination = \"local\"\n[local]\npath = \"{}\"\n\
         [compression]\nprogram = \"gzip\"\n\
         [gpg]\nrecipient = \"fixtures@example.com\"\nkeyring = \"{}\"\nsecret_keyring = \"{}\"\nhomedir = \"{}\"\n",
        t.path().join("b").display(),
        fx.join("gpg-fixtures-public.asc").display(),
        fx.join("gpg-fixtures-secret.asc").display(),
        home.display()
    );
    let path = write(&t.path().join("twindb.toml"), config.as_bytes());
    let config = twindb::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let env = ModifierEnv::new(config.compression.threads, config.gpg.clone());
    // The armored public key is usable to encrypt, and is the fixtures' key.
    let spec = resolve_gpg(config.gpg.as_ref().unwrap()).unwrap();
    assert_eq!(
        spec,
        ModifierSpec::Gpg {
            recipient: Some("fixtures@example.com".into()),
            fingerprint: Some("EE815FF83CDAC2A264BEB1D15D2DD8282782D584".into())
        }
    );

    let facts: BTreeMap<String, String> = [
        (
            "release notes.txt",
            "287b7a7f3ab15018db160fa99653f09be61d6ed25f56e8fc6577783e81e98871",
        ),
        (
            "sub/config.ini",
            "0d7d9591c5cf326eea3c8a1e1253a6867a7d6f653ccdd4fa758e9c0d0d67c6b1",
        ),
        (
            "sub/beta.txt",
            "53a33797fba0db1eb036675b0c7420fbb2b4e5fcc3a927572838611c9456a188",
        ),
        (
            "alpha.txt",
            "01ea9ccef610098a2336b255a3f39d4dc1b1a91800ac72ac675b54bf6687a0d7",
        ),
    ]
    .into_iter()
    .map(|(n, h)| (format!("tmp/twfx/appfiles/{n}"), h.to_string()))
    .collect();
    let empty = hex::encode(Sha256::digest(b""));

    for key in [
        "fixture-db1/monthly/files/_tmp_twfx_appfiles-2026-11-25_10_38_08.tar.gz.gpg",
        "fixture-db1/weekly/files/_tmp_twfx_appfiles-2026-11-25_10_38_06.tar.bz",
    ] {
        let stored = std::fs::read(fx.join("remote").join(key)).unwrap();
        let chain = ModifierSpec::chain_from_key(key);
        let tar_bytes = run_bytes(&chain, &env, Way::Decode, stored.clone())
            .unwrap_or_else(|e| panic!("{key}: {e:#}"));
        assert_eq!(tar_bytes.len(), 10240, "{key}");
        let mut members = tar_members(&tar_bytes);
        // Folders have no content.
        members.retain(|_, h| *h != empty);
        assert_eq!(members, facts, "{key}");

        if key.ends_with(".gpg") {
            // The decrypted stream is exactly TwinDB's keep-local twin.
            let gpg_only = &chain[1..];
            let plain = run_bytes(gpg_only, &env, Way::Decode, stored).unwrap();
            let twin =
                std::fs::read(fx.join("local").join(key.strip_suffix(".gpg").unwrap())).unwrap();
            assert!(plain == twin);
            assert_eq!(
                hex::encode(Sha256::digest(&plain)),
                "a324f0001f90ae909f6cb934be00f68fafec429ba186bf4d3ff0766edb423e9f"
            );
        }
    }
    stop_agent(&home);
}
