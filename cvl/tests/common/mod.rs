//! Helpers shared by the end-to-end tests: staging an appliance the way a
//! publisher keeps it (its CVL file, its VM description, a real qcow2
//! program disk made by qemu-img).

#![allow(dead_code)] // each test uses the helpers it needs

pub mod lsp;
pub mod suite;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `cvl` binary in `dir`, with `dir/HOME` as its utility home and
/// no mirrors from the environment.
pub fn cvl_in(dir: &Path, home: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cvl"))
        .args(args)
        .current_dir(dir)
        .env_remove("CVL_MIRRORS")
        .env("CVL_HOME", dir.join(home))
        .env("CVL_KEY_PASSPHRASE", KEY_PASSPHRASE)
        .output()
        .expect("runs cvl")
}

/// The passphrase of the tests' publisher keys (in every command's
/// environment, as CI would give it).
pub const KEY_PASSPHRASE: &str = "test publisher passphrase";

/// The publisher key of the tests in `dir` (made on first use), as an
/// argument.
pub fn key(dir: &Path) -> String {
    let key = dir.join("publisher.key");
    if !key.exists() {
        ok_in(dir, "home", &["key", "generate", key.to_str().unwrap()]);
    }
    key.display().to_string()
}

/// Creates the signed repository `repo` (relative to `dir`).
pub fn create_signed(dir: &Path, repo: &str) {
    let key = key(dir);
    ok_in(dir, "home", &["repo", "create", repo, "--key", &key]);
}

/// [`cvl_in`], which must succeed.
pub fn ok_in(dir: &Path, home: &str, args: &[&str]) -> Output {
    let out = cvl_in(dir, home, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "cvl {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Copies `cvl` into `dir/src/NAME/`, and when it sets `vm = "FILE"`, writes
/// FILE there as a VM description with one program disk of `disk_mb` MiB
/// (and a data disk for every `device => "..."` of its `datadisks`, which
/// publishing must leave out). Returns the staged CVL file.
pub fn stage(dir: &Path, name: &str, cvl: &Path, disk_mb: u32) -> PathBuf {
    let src = dir.join("src").join(name);
    std::fs::create_dir_all(&src).unwrap();
    let text = std::fs::read_to_string(cvl).unwrap();
    let staged = src.join(cvl.file_name().unwrap());
    std::fs::write(&staged, &text).unwrap();
    let Some(vm) = quoted_after(&text, "vm = ") else {
        return staged;
    };
    let mut description =
        "memory = 64\n[[disk]]\ndevice = \"ide0:0\"\nfile = \"system.qcow2\"\n".to_string();
    qemu_img(
        &src,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "system.qcow2",
            &format!("{disk_mb}M"),
        ],
    );
    if let Some(device) = quoted_after(&text, "device => ") {
        description.push_str(&format!(
            "[[disk]]\ndevice = \"{device}\"\nfile = \"data.qcow2\"\n"
        ));
        qemu_img(&src, &["create", "-q", "-f", "qcow2", "data.qcow2", "1M"]);
    }
    std::fs::write(src.join(vm), description).unwrap();
    staged
}

fn quoted_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let rest = text[start..].strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

pub fn qemu_img(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("qemu-img runs");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
