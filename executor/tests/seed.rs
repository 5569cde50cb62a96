//! The NoCloud seed read by standard tools, as cloud-init's own probing
//! reads it: blkid finds a FAT volume labelled CIDATA, mtools lists the
//! three files and reads them back.

use std::process::Command;

use cvl_executor::agent::cloud_init::SeedInput;

#[test]
fn blkid_and_mtools_read_the_seed() {
    let params =
        "ethernet0.ip=10%2E0%2E1%2E5\nethernet0.mac=0a%3Ac7%3A1a%3A00%3A00%3A05\nname=web\n";
    let seed = SeedInput::from_params(params, "Acme\0web\0repo@1");
    let started = std::time::Instant::now();
    let bytes = seed.volume().unwrap();
    eprintln!(
        "seed built in {:.2} ms ({} bytes)",
        started.elapsed().as_secs_f64() * 1e3,
        bytes.len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("seed.img");
    std::fs::write(&file, &bytes).unwrap();
    let out = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(&file)
        .output()
        .expect("blkid (util-linux)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("LABEL=CIDATA"), "{said}");
    assert!(said.contains("TYPE=vfat"), "{said}");
    let out = Command::new("mdir")
        .args(["-b", "-i"])
        .arg(&file)
        .arg("::")
        .output()
        .expect("mdir (Debian: mtools)");
    let said = String::from_utf8_lossy(&out.stdout);
    for name in ["meta-data", "network-config", "user-data"] {
        assert!(said.contains(name), "mdir lists {said}");
    }
    let out = Command::new("mtype")
        .arg("-i")
        .arg(&file)
        .arg("::meta-data")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), seed.meta_data());
}
