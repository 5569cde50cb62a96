//! The Debian package: scripts/build-deb.sh makes it from the workspace
//! (here from the test profile's binary, which is already built: the script
//! is the same for `--profile dist`, the one releases use), and
//! scripts/test-deb.sh installs it into a fresh Debian 12 made by
//! mmdebstrap, uses it (`cvl --version`, `cvl check` of an installed example,
//! `man -w`, completions, `cvl build` finding its builder, the systemd
//! unit), purges it and finds nothing left.

use std::process::Command;

use cvl_e2e::*;

#[test]
fn the_package_installs_works_and_purges_cleanly() {
    let built = Command::new(workspace().join("scripts/build-deb.sh"))
        .args(["--profile", "dev"])
        .current_dir(workspace())
        .output()
        .expect("scripts/build-deb.sh runs");
    let said = text(&built);
    assert!(built.status.success(), "build-deb.sh failed:\n{said}");
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_string();
    eprintln!("{said}");
    assert!(deb.ends_with(".deb"), "{said}");

    // What it holds: the binary, a page per command, completions, the unit.
    let listing = sh(&["dpkg-deb", "--contents", &deb]);
    for path in [
        "./usr/bin/cvl",
        "./usr/share/man/man1/cvl.1.gz",
        "./usr/share/man/man1/cvl-apply.1.gz",
        "./usr/share/man/man1/cvl-completions.1.gz",
        "./usr/share/bash-completion/completions/cvl",
        "./usr/share/zsh/vendor-completions/_cvl",
        "./usr/share/fish/vendor_completions.d/cvl.fish",
        "./lib/systemd/system/cvl-utility.service",
        "./usr/share/doc/cvl/copyright",
        "./usr/share/doc/cvl/docs/cloud-images.md",
        "./usr/share/doc/cvl/examples/groupware/suite/AcmeSuite.cvl",
        "./usr/share/cvl/scripts/build-appliance.sh",
        "./usr/share/cvl/guest-kit/cvl-configure",
    ] {
        assert!(
            listing.contains(path),
            "the package lacks {path}:\n{listing}"
        );
    }
    let control = sh(&["dpkg-deb", "--field", &deb, "Depends", "Recommends"]);
    assert!(control.contains("libc6"), "{control}");
    assert!(control.contains("qemu-system-x86"), "{control}");

    let tested = Command::new(workspace().join("scripts/test-deb.sh"))
        .arg(&deb)
        .output()
        .expect("scripts/test-deb.sh runs");
    let said = text(&tested);
    eprintln!("{said}");
    assert!(tested.status.success(), "test-deb.sh failed:\n{said}");
    assert!(said.contains("purged: nothing left"), "{said}");
    assert!(
        said.contains("cvl build finds the installed builder"),
        "{said}"
    );
}
