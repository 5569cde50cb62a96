//! Signed repositories, without a network: a root that asks two of three
//! keys refuses a successor signed by one (and our own rotation refuses to
//! write one), a successor signed by two is followed; a reader pinned to a
//! root refuses another; keys rotate; a reader during a publish reads the
//! index its timestamp signed.

use std::time::Duration;

use cvl_repo::fetch::Location;
use cvl_repo::publish::{self, PublishFile};
use cvl_repo::settings::Settings;
use cvl_repo::trust::{self, keys, sign, Anchor, Attack, Trust};
use tough::editor::signed::SignedRole;
use tough::schema::{KeyHolder, Root, Signed};

const LIFE: Duration = Duration::from_secs(3600);

fn repository(dir: &std::path::Path) {
    publish::create(dir).unwrap();
}

fn publish_one(dir: &std::path::Path, keys: &[&keys::SigningKey], n: u32) {
    let sign_it = |d: &std::path::Path| sign::sign(d, keys, LIFE).map(drop);
    publish::publish(
        dir,
        "A.cvl",
        &[PublishFile::Plain {
            path: "A.cvl".into(),
            bytes: format!("A extends VMAppliance {{ /* {n} */ }}\n").into_bytes(),
        }],
        Some(&sign_it),
    )
    .unwrap();
}

/// What a reader on this machine finds, starting from `pin` (a fresh
/// reader: its own home).
fn read(
    home: &std::path::Path,
    dir: &std::path::Path,
    anchor: Option<Anchor>,
) -> Result<Trust, trust::TrustError> {
    let settings = Settings::plain(home.to_path_buf());
    let location = Location::Dir(dir.to_path_buf());
    if let Some(anchor) = anchor {
        settings.trust.anchor(&location.url(), anchor);
    }
    trust::check(&settings, &location)
}

#[test]
fn a_root_that_asks_two_of_three_keys_refuses_a_successor_signed_by_one() {
    let tmp = tempfile::tempdir().unwrap();
    let made: Vec<keys::SigningKey> = ["a", "b", "c"]
        .iter()
        .map(|n| keys::generate(&tmp.path().join(format!("{n}.key")), b"pw").unwrap())
        .collect();
    let all: Vec<&keys::SigningKey> = made.iter().collect();
    let repo = tmp.path().join("repo");
    repository(&repo);
    let signed = sign::init(&repo, &all, 2, LIFE).unwrap();
    assert_eq!(signed.root.threshold, 2);
    assert_eq!(signed.root.keyids.len(), 3);
    publish_one(&repo, &all[..1], 1);
    let home = tmp.path().join("home");
    let first = match read(&home, &repo, None).unwrap() {
        Trust::Signed(v) => v,
        Trust::Unsigned => panic!("a signed repository read as unsigned"),
    };
    assert_eq!(first.root.version, 1);
    let pin = Anchor::Pin(first.root.clone());

    // Our rotation refuses to write a successor one key signs.
    let refused = sign::rotate(&repo, &all[..1], &all, 2, LIFE).unwrap_err();
    assert!(refused.contains("needs 2 of its 3 keys"), "{refused}");

    // One written by hand, signed by one key of the three: refused.
    let bytes = std::fs::read(repo.join("tuf/root.json")).unwrap();
    let current: Signed<Root> = serde_json::from_slice(&bytes).unwrap();
    let mut next = current.signed.clone();
    next.version = std::num::NonZeroU64::new(2).unwrap();
    let one_signature = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(SignedRole::new(
            next.clone(),
            &KeyHolder::Root(next.clone()),
            &[all[0].source()],
            &aws_lc_rs::rand::SystemRandom::new(),
        ))
        .unwrap();
    std::fs::write(repo.join("tuf/2.root.json"), one_signature.buffer()).unwrap();
    let err = read(&home, &repo, Some(pin.clone())).unwrap_err();
    assert_eq!(err.attack, Attack::UntrustedRoot, "{err}");
    assert!(err.to_string().contains("[untrusted-root]"), "{err}");
    std::fs::remove_file(repo.join("tuf/2.root.json")).unwrap();

    // Signed by two of the three: followed, and what the rotation's new key
    // signs is trusted.
    let newer = keys::generate(&tmp.path().join("d.key"), b"pw").unwrap();
    sign::rotate(&repo, &all[1..], &[&newer], 1, LIFE).unwrap();
    publish_one(&repo, &[&newer], 2);
    match read(&home, &repo, Some(pin.clone())).unwrap() {
        Trust::Signed(v) => {
            assert_eq!(v.root.version, 2);
            assert_eq!(v.root.keyids, vec![newer.keyid.clone()]);
            assert_eq!(v.signers, vec![newer.keyid.clone()]);
        }
        Trust::Unsigned => panic!("unsigned after a rotation"),
    }
    // The old keys no longer sign this repository.
    let err = sign::sign(&repo, &all, LIFE).unwrap_err();
    assert!(err.contains("none of the keys given"), "{err}");
}

#[test]
fn a_reader_pinned_to_one_root_refuses_a_repository_of_other_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = keys::generate(&tmp.path().join("ours.key"), b"pw").unwrap();
    let theirs = keys::generate(&tmp.path().join("theirs.key"), b"pw").unwrap();
    let repo = tmp.path().join("repo");
    repository(&repo);
    sign::init(&repo, &[&ours], 1, LIFE).unwrap();
    let home = tmp.path().join("home");
    let pin = match read(&home, &repo, None).unwrap() {
        Trust::Signed(v) => v.root.clone(),
        Trust::Unsigned => panic!("unsigned"),
    };
    // The repository replaced by one of other keys (a new first root).
    std::fs::remove_dir_all(repo.join("tuf")).unwrap();
    sign::init(&repo, &[&theirs], 1, LIFE).unwrap();
    let fresh_home = tmp.path().join("home2");
    let err = read(&fresh_home, &repo, Some(Anchor::Pin(pin.clone()))).unwrap_err();
    assert_eq!(err.attack, Attack::UntrustedRoot, "{err}");
    // Its metadata gone altogether: a downgrade, refused.
    std::fs::remove_dir_all(repo.join("tuf")).unwrap();
    let err = read(&fresh_home, &repo, Some(Anchor::Pin(pin))).unwrap_err();
    assert_eq!(err.attack, Attack::Downgrade, "{err}");
    // And with no pin, an unsigned repository is only unsigned.
    assert_eq!(read(&fresh_home, &repo, None).unwrap(), Trust::Unsigned);
}

#[test]
fn a_signed_repository_refuses_a_publish_without_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate(&tmp.path().join("k.key"), b"pw").unwrap();
    let repo = tmp.path().join("repo");
    repository(&repo);
    sign::init(&repo, &[&key], 1, LIFE).unwrap();
    let err = publish::publish(
        &repo,
        "A.cvl",
        &[PublishFile::Plain {
            path: "A.cvl".into(),
            bytes: b"A extends VMAppliance {}\n".to_vec(),
        }],
        None,
    )
    .unwrap_err();
    assert!(err.contains("is signed: publish with its key"), "{err}");
    assert!(!repo.join("versions/1").exists());
}

#[test]
fn a_reader_during_a_publish_reads_the_index_its_timestamp_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate(&tmp.path().join("k.key"), b"pw").unwrap();
    let repo = tmp.path().join("repo");
    repository(&repo);
    sign::init(&repo, &[&key], 1, LIFE).unwrap();
    publish_one(&repo, &[&key], 1);
    // A publish half way: the new index is in place, not yet signed.
    let index = repo.join(cvl_repo::index::INDEX_FILE);
    let signed = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, signed.replace("\"versions\"", "\"versions\" ")).unwrap();
    let fetcher = cvl_repo::Fetcher::new(Settings::plain(tmp.path().join("home")));
    let read = fetcher
        .index(&Location::Dir(repo.clone()))
        .expect("the signed copy is read, not the index being replaced")
        .expect("a repository");
    assert_eq!(read.versions.len(), 1);

    // Without its copy, the unsigned bytes are refused as what they are.
    for entry in std::fs::read_dir(&repo).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(&format!(".{}", cvl_repo::index::INDEX_FILE)) {
            std::fs::remove_file(repo.join(name)).unwrap();
        }
    }
    let fetcher = cvl_repo::Fetcher::new(Settings::plain(tmp.path().join("home2")));
    let err = fetcher.index(&Location::Dir(repo.clone())).unwrap_err();
    assert!(err.contains("[arbitrary-software]"), "{err}");
}

#[test]
fn signing_keeps_the_last_few_snapshots_and_index_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate(&tmp.path().join("k.key"), b"pw").unwrap();
    let repo = tmp.path().join("repo");
    repository(&repo);
    sign::init(&repo, &[&key], 1, LIFE).unwrap();
    for n in 1..=12 {
        publish_one(&repo, &[&key], n);
    }
    let count = |folder: &std::path::Path, suffix: &str| {
        std::fs::read_dir(folder)
            .unwrap()
            // `N.snapshot.json`, `<sha>.cvl-repository.json`: not the
            // unversioned `snapshot.json` and `cvl-repository.json`.
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name().into_string().unwrap();
                name.ends_with(suffix)
            })
            .count()
    };
    assert_eq!(count(&repo.join("tuf"), ".snapshot.json"), sign::KEEP);
    assert_eq!(count(&repo.join("tuf"), ".targets.json"), sign::KEEP);
    assert_eq!(count(&repo, ".cvl-repository.json"), sign::KEEP);
    // And the newest reads.
    let fetcher = cvl_repo::Fetcher::new(Settings::plain(tmp.path().join("home")));
    let index = fetcher.index(&Location::Dir(repo)).unwrap().unwrap();
    assert_eq!(index.versions.len(), 12);
}
