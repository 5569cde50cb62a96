//! The guest kit's scripts run on this machine, as they run in every
//! appliance: each `tests/guest-kit/subject/*.params` (a parameters file,
//! as QEMU hands it to a guest) is read by `cvl-x509-subject`, and the
//! subject it makes is given to openssl, as the appliances do. What it
//! printed, and the attributes openssl read from it, are snapshotted beside
//! the input (insta): a value's `/`, `,`, `=` or `+` stay text inside its
//! own attribute, and a value that cannot be one is left out and named.
//! `cvl-param` reads the same files in each of its modes.

use std::path::{Path, PathBuf};
use std::process::Command;

use cvl_e2e::workspace;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "params"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no .params files under {}",
        dir.display()
    );
    files
}

/// A kit script run with `sh`, reading PARAMS: its exit code, stdout and
/// stderr, as text.
fn kit(script: &str, params: &Path, args: &[&str]) -> (i32, String, String) {
    assert!(
        Path::new("/bin/busybox").exists(),
        "the guest kit's scripts need /bin/busybox (Debian: apt-get install busybox-static)"
    );
    let out = Command::new("sh")
        .arg(workspace().join("guest-kit").join(script))
        .args(args)
        .env("CVL_PARAMS", params)
        .output()
        .unwrap_or_else(|e| panic!("sh runs {script}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subject's attributes as openssl reads `-subj` (one per line).
fn openssl_reads(subject: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .args(["req", "-new", "-x509", "-utf8", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .args(["-subj", subject, "-out"])
        .arg(dir.path().join("cert.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl refuses {subject:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "multiline,utf8,-esc_msb",
            "-in",
        ])
        .arg(dir.path().join("cert.pem"))
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn snapshot(path: &Path, name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(path.parent().unwrap());
    settings.set_prepend_module_to_snapshot(false);
    settings.set_input_file(path);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name.to_string(), text));
}

#[test]
fn certificate_subjects_keep_each_value_inside_its_attribute() {
    for path in inputs(&workspace().join("tests/guest-kit/subject")) {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (code, stdout, stderr) = kit("cvl-x509-subject", &path, &["m.acme.org"]);
        assert_eq!(code, 0, "{}: {stderr}", path.display());
        let subject = stdout.trim_end_matches('\n');
        assert!(
            !subject.contains('\n'),
            "{}: one line: {stdout:?}",
            path.display()
        );
        let read = openssl_reads(subject);
        snapshot(
            &path,
            &name,
            &format!("subject: {subject}\nleft out:\n{stderr}openssl reads:\n{read}"),
        );
    }
}

#[test]
fn parameters_read_in_every_mode() {
    for path in inputs(&workspace().join("tests/guest-kit/subject")) {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut said = String::new();
        for args in [
            &["org"][..],
            &["-a", "org"],
            &["-l"],
            &["-m", "hosts", "name", "ip"],
            &["absent"],
        ] {
            let (code, stdout, stderr) = kit("cvl-param", &path, args);
            said.push_str(&format!(
                "$ cvl-param {}  (exit {code})\n{stdout}{stderr}",
                args.join(" ")
            ));
        }
        snapshot(&path, &format!("{name}.param"), &said);
    }
}
