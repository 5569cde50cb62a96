//! Verifying a signed repository's metadata as a reader does after a new
//! version: a repository of 100 versions, read by a reader that has seen it
//! before (its previous metadata in its home, as the service's is), after
//! one more publish. What `tough` does (root, timestamp, snapshot, targets
//! of 100 versions' files) and our holding of the index to the targets.
//! `cargo bench -p cvl-repo --bench trust`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use cvl_repo::fetch::Location;
use cvl_repo::publish::{self, PublishFile};
use cvl_repo::settings::Settings;
use cvl_repo::trust::{keys, sign};

fn verify(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate(&tmp.path().join("k.key"), b"bench").unwrap();
    let repo = tmp.path().join("repo");
    publish::create(&repo).unwrap();
    let life = Duration::from_secs(3600);
    sign::init(&repo, &[&key], 1, life).unwrap();
    let sign_it = |d: &std::path::Path| sign::sign(d, &[&key], life).map(drop);
    let publish_one = |n: u32| {
        publish::publish(
            &repo,
            "A.cvl",
            &[PublishFile::Plain {
                path: "A.cvl".into(),
                bytes: format!("A extends VMAppliance {{ /* {n} */ }}\n").into_bytes(),
            }],
            Some(&sign_it),
        )
        .unwrap();
    };
    for n in 1..=100 {
        publish_one(n);
    }
    let home = tmp.path().join("home");
    let location = Location::Dir(repo.clone());
    // The reader has seen version 100's metadata.
    let fetcher = cvl_repo::Fetcher::new(Settings::plain(home.clone()));
    fetcher.index(&location).unwrap().unwrap();
    publish_one(101);
    c.bench_function(
        "verify a new version of a 100-version signed repository",
        |b| {
            b.iter(|| {
                // A fresh load each time: nothing verified in memory.
                let fetcher = cvl_repo::Fetcher::new(Settings::plain(home.clone()));
                let index = fetcher.index(&location).unwrap().unwrap();
                assert_eq!(index.versions.len(), 101);
            })
        },
    );
}

criterion_group!(benches, verify);
criterion_main!(benches);
