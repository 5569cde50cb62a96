//! `cvl build`, as a publisher runs it: a recipe of appliances/ built into
//! a folder that `cvl publish` takes (from the image cache the suite's
//! tests share, or built now), and `cvl build --check`: a real recipe
//! rebuilt from nothing has the same packages and files, while
//! tests/recipes/Stamped, whose setup writes the build's time into the
//! image, does not, and the one file that differs is named.

use std::path::Path;
use std::process::{Command, Output};

use cvl_e2e::*;

fn cvl_build(cvl: &Path, home: &Path, args: &[&str]) -> Output {
    let out = Command::new(cvl)
        .arg("build")
        .args(args)
        .env("CVL_HOME", home)
        .output()
        .expect("cvl runs");
    eprintln!("cvl build {}:\n{}", args.join(" "), text(&out));
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)))
}

#[test]
fn a_recipe_builds_for_publish_and_a_rebuild_from_nothing_is_compared() {
    let cvl = cvl_binary();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let path = |p: &Path| p.to_str().unwrap().to_string();

    // A recipe of the suite, into a folder of the test's.
    let firewall = workspace().join("appliances/Firewall");
    let out = tmp.path().join("Firewall");
    let built = cvl_build(
        &cvl,
        &home,
        &["--format", "json", &path(&firewall), &path(&out)],
    );
    assert!(built.status.success(), "{}", text(&built));
    let report = json(&built);
    assert_eq!(report["name"], "Firewall");
    let key = std::fs::read_to_string(out.join(".key")).unwrap();
    assert_eq!(report["key"], key.trim());
    let disk = std::fs::metadata(out.join("system.qcow2")).unwrap().len();
    assert_eq!(report["disk_bytes"], disk);
    assert!(report["packages"].as_u64().unwrap() > 20, "{report}");
    assert!(report["files"].as_u64().unwrap() > 500, "{report}");
    for f in [
        "Firewall.cvl",
        "firewall.vmx",
        "vmlinuz",
        "initrd.img",
        "manifest.txt",
    ] {
        assert!(out.join(f).is_file(), "cvl build left no {f}");
    }
    // What it built is what `cvl publish` takes.
    let repo = tmp.path().join("repos/Firewall");
    let made = Command::new(&cvl)
        .args(["repo", "create"])
        .arg(&repo)
        .env("CVL_HOME", &home)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let published = Command::new(&cvl)
        .arg("publish")
        .arg(&repo)
        .arg(out.join("Firewall.cvl"))
        .env("CVL_HOME", &home)
        .output()
        .unwrap();
    assert!(published.status.success(), "{}", text(&published));

    // Built again: taken from the cache, the same key, said so.
    let again = cvl_build(
        &cvl,
        &home,
        &[&path(&firewall), &path(&tmp.path().join("again"))],
    );
    assert!(again.status.success());
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(
        said.contains("Firewall taken from the cache (key "),
        "{said}"
    );
    assert!(said.contains(key.trim()), "{said}");

    // Not a recipe: exit 2 and the fix; a missing output: clap's usage.
    let not = cvl_build(
        &cvl,
        &home,
        &[
            &path(&workspace().join("docs")),
            &path(&tmp.path().join("x")),
        ],
    );
    assert_eq!(not.status.code(), Some(2));
    assert!(
        text(&not).contains("is not an appliance recipe"),
        "{}",
        text(&not)
    );
    let usage = cvl_build(&cvl, &home, &[&path(&firewall)]);
    assert_eq!(usage.status.code(), Some(2));

    // The same inputs give the same files: Firewall rebuilt from nothing.
    let checked = cvl_build(
        &cvl,
        &home,
        &["--check", "--format", "json", &path(&firewall)],
    );
    assert!(checked.status.success(), "{}", text(&checked));
    let report = json(&checked);
    assert_eq!(report["reproducible"], true, "{report}");
    assert_eq!(report["differences"], serde_json::json!([]));
    assert_eq!(report["first"]["key"], report["second"]["key"]);
    assert_eq!(
        report["second"]["built"], true,
        "the rebuild must build: {report}"
    );

    // A recipe that writes the build's time: exit 1, that file named.
    let stamped = workspace().join("tests/recipes/Stamped");
    let cache = tmp.path().join("cache");
    let checked = cvl_build(
        &cvl,
        &home,
        &["--check", "--cache", &path(&cache), &path(&stamped)],
    );
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        said.contains("not reproducible: Stamped rebuilt from nothing differs in 1 entry"),
        "{said}"
    );
    assert!(said.contains("./etc/build-stamp"), "{said}");
    // Both builds are kept for a closer look; the test removes them.
    let kept = said
        .split("kept for a closer look: ")
        .nth(1)
        .and_then(|rest| rest.split("/first").next())
        .unwrap_or_else(|| panic!("no folder of the two builds named:\n{said}"));
    let kept = Path::new(kept);
    let first = std::fs::read_to_string(kept.join("first/manifest.txt")).unwrap();
    let second = std::fs::read_to_string(kept.join("second/manifest.txt")).unwrap();
    assert_ne!(first, second);
    std::fs::remove_dir_all(kept).unwrap();
}
