//! The cloud-init guest contract (docs/cloud-images.md): any image that
//! ships cloud-init becomes a VM appliance with no change inside it. The
//! host gives it a NoCloud seed, a small FAT volume labelled `CIDATA` on a
//! CD-ROM, written here in memory:
//!
//! - `meta-data`: an `instance-id` from the deployment, the component and
//!   the program's version (an update is a new instance to cloud-init; a
//!   restart is not), and the `local-hostname`;
//! - `network-config` (version 2): each interface matched by its MAC, with
//!   its address, the VAN's default route and name servers where given;
//! - `user-data` (`#cloud-config`): every boot, the parameters read from
//!   fw_cfg into `/run/cvl/params` (tmpfs, mode 0600: as the guest kit
//!   does), then the appliance's own start hook if it has one, then "ready"
//!   on the virtio-serial port `org.cvl.ready.0`.
//!
//! Nothing sensitive is in the seed: cloud-init keeps its user-data on the
//! guest's disk, so the parameters travel through fw_cfg (a tmpfs file on
//! the host, removed once QEMU read it) and are read by a boot command.

use std::io::{Cursor, Write};

use cvl_analysis::eval::unescape;
use sha2::{Digest, Sha256};

/// What the seed says about one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedInput {
    pub instance_id: String,
    pub hostname: String,
    pub interfaces: Vec<Interface>,
    pub nameservers: Vec<String>,
}

/// One interface as network-config sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `ethernet0`: the name the parameters give it.
    pub name: String,
    pub mac: String,
    /// Address and prefix length, when it has one.
    pub address: Option<(String, u8)>,
    pub gateway: Option<String>,
}

impl SeedInput {
    /// The seed of a VM from its wire parameters (spec section 9). The
    /// instance id is derived from `identity` (deployment, component and
    /// program); the host name is the `hostname` parameter, else `name`
    /// (the component's name).
    pub fn from_params(params: &str, identity: &str) -> SeedInput {
        let mut values: Vec<(String, String)> = Vec::new();
        for line in params.lines() {
            if let Some((name, value)) = line.split_once('=') {
                values.push((name.to_string(), unescape(value)));
            }
        }
        let get = |name: &str| {
            values
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let token = |v: &str, extra: &str| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        };
        let hostname = get("hostname")
            .or_else(|| get("name"))
            .filter(|h| token(h, "-") && h.len() <= 63)
            .unwrap_or_else(|| "appliance".to_string());
        let mut interfaces = Vec::new();
        for n in 0..64 {
            let name = format!("ethernet{n}");
            let Some(mac) = get(&format!("{name}.mac")).filter(|m| token(m, ":")) else {
                continue;
            };
            let ipv4 = |v: &String| v.parse::<std::net::Ipv4Addr>().is_ok();
            let address = get(&format!("{name}.ip")).filter(ipv4).map(|ip| {
                let prefix = get(&format!("{name}.netmask"))
                    .and_then(|m| m.parse::<std::net::Ipv4Addr>().ok())
                    .map_or(24, |m| u32::from(m).count_ones() as u8);
                (ip, prefix)
            });
            let gateway = get(&format!("{name}.defaultroute"))
                .filter(ipv4)
                .filter(|g| address.as_ref().is_none_or(|(ip, _)| ip != g));
            interfaces.push(Interface {
                name,
                mac: mac.to_ascii_lowercase(),
                address,
                gateway,
            });
        }
        let nameservers = values
            .iter()
            .filter(|(n, _)| n == "dns" || n == "nameservers")
            .map(|(_, v)| v.clone())
            .filter(|v| v.parse::<std::net::Ipv4Addr>().is_ok())
            .collect();
        let digest = Sha256::digest(identity.as_bytes());
        SeedInput {
            instance_id: format!(
                "cvl-{}",
                digest[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
            hostname,
            interfaces,
            nameservers,
        }
    }

    pub fn meta_data(&self) -> String {
        format!(
            "instance-id: {}\nlocal-hostname: {}\n",
            self.instance_id, self.hostname
        )
    }

    pub fn network_config(&self) -> String {
        let mut out = String::from("version: 2\nethernets:\n");
        for i in &self.interfaces {
            out.push_str(&format!(
                "  {}:\n    match:\n      macaddress: \"{}\"\n",
                i.name, i.mac
            ));
            match &i.address {
                Some((ip, prefix)) => {
                    out.push_str(&format!("    addresses: [\"{ip}/{prefix}\"]\n"));
                }
                None => out.push_str("    dhcp4: false\n"),
            }
            if let Some(gateway) = &i.gateway {
                out.push_str(&format!("    gateway4: \"{gateway}\"\n"));
            }
            if !self.nameservers.is_empty() && i.gateway.is_some() {
                let list: Vec<String> = self
                    .nameservers
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect();
                out.push_str(&format!(
                    "    nameservers:\n      addresses: [{}]\n",
                    list.join(", ")
                ));
            }
        }
        out
    }

    /// The same every time: nothing of the VM's is in it.
    pub fn user_data(&self) -> &'static str {
        USER_DATA
    }

    /// The seed volume: FAT with 2048-byte sectors (it is read from a
    /// CD-ROM), labelled `CIDATA`, holding the three files.
    pub fn volume(&self) -> std::io::Result<Vec<u8>> {
        let mut disk = Cursor::new(vec![0u8; 1 << 20]);
        let label = *b"CIDATA     ";
        fatfs::format_volume(
            &mut disk,
            fatfs::FormatVolumeOptions::new()
                .bytes_per_sector(2048)
                .volume_label(label)
                .volume_id(u32::from_be_bytes(
                    Sha256::digest(self.instance_id.as_bytes())[..4]
                        .try_into()
                        .expect("four bytes"),
                )),
        )?;
        disk.set_position(0);
        {
            let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
            for (name, text) in [
                ("meta-data", self.meta_data()),
                ("network-config", self.network_config()),
                ("user-data", self.user_data().to_string()),
            ] {
                let mut file = fs.root_dir().create_file(name)?;
                file.truncate()?;
                file.write_all(text.as_bytes())?;
                file.flush()?;
            }
            fs.unmount()?;
        }
        Ok(disk.into_inner())
    }
}

/// Every boot (`bootcmd`): the parameters from fw_cfg to /run/cvl/params,
/// 0600. Every boot at the end (a per-boot script, written once per
/// instance): the appliance's start hook if it has one, then ready (or why
/// not) on the virtio-serial port the host listens to.
const USER_DATA: &str = r#"#cloud-config
# Written by the CVL utility (docs/cloud-images.md). No parameter value is
# in it: they come through fw_cfg, read at every boot into /run/cvl/params.
bootcmd:
  - [sh, -c, "modprobe qemu_fw_cfg 2>/dev/null; mkdir -p /run/cvl && chmod 0755 /run/cvl; umask 077; raw=/sys/firmware/qemu_fw_cfg/by_name/opt/cvl/params/raw; if [ -r $raw ]; then cat $raw > /run/cvl/params.new && mv /run/cvl/params.new /run/cvl/params; fi"]
write_files:
  - path: /var/lib/cloud/scripts/per-boot/90-cvl-ready
    permissions: "0755"
    content: |
      #!/bin/sh
      # The CVL contract, every boot: the appliance's start hook, then ready.
      port=/dev/virtio-ports/org.cvl.ready.0
      say() { [ -e "$port" ] && printf '%s\n' "$1" > "$port"; }
      if [ -x /etc/cvl/start ] && ! /etc/cvl/start > /run/cvl/start.log 2>&1; then
        say "failed: /etc/cvl/start failed (see /run/cvl/start.log)"
        exit 1
      fi
      say ready
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &str = "dns=10%2E0%2E1%2E3\n\
        ethernet0.defaultroute=10%2E0%2E1%2E1\n\
        ethernet0.ip=10%2E0%2E1%2E5\n\
        ethernet0.mac=0a%3Ac7%3A1a%3A00%3A00%3A05\n\
        ethernet0.netmask=255%2E255%2E255%2E0\n\
        name=web\n\
        secret=Canary%2DSeed\n";

    #[test]
    fn the_seed_says_what_cloud_init_needs_and_no_secret() {
        let seed = SeedInput::from_params(PARAMS, "Acme\0web\0repo@3");
        assert_eq!(seed.hostname, "web");
        assert!(seed.meta_data().starts_with("instance-id: cvl-"));
        assert_eq!(
            seed.network_config(),
            "version: 2\nethernets:\n  ethernet0:\n    match:\n      macaddress: \
             \"0a:c7:1a:00:00:05\"\n    addresses: [\"10.0.1.5/24\"]\n    gateway4: \
             \"10.0.1.1\"\n    nameservers:\n      addresses: [\"10.0.1.3\"]\n"
        );
        // Another version of the program is another instance; a restart is not.
        let again = SeedInput::from_params(PARAMS, "Acme\0web\0repo@3");
        let updated = SeedInput::from_params(PARAMS, "Acme\0web\0repo@4");
        assert_eq!(seed.instance_id, again.instance_id);
        assert_ne!(seed.instance_id, updated.instance_id);
        let volume = seed.volume().unwrap();
        assert!(!String::from_utf8_lossy(&volume).contains("Canary"));
        assert!(!String::from_utf8_lossy(&volume).contains("secret"));
    }

    #[test]
    fn the_volume_is_fat_labelled_cidata_with_the_three_files() {
        let seed = SeedInput::from_params(PARAMS, "Acme\0web\0repo@3");
        let bytes = seed.volume().unwrap();
        // The same input, the same bytes.
        assert_eq!(bytes, seed.volume().unwrap());
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            digest, "f43c11ceb91039c68e6c87b68cee113a67c2bc08258a1417f76fd5bdc27bb8cc",
            "the seed's bytes changed"
        );
        let mut disk = Cursor::new(bytes);
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "CIDATA");
        let mut names: Vec<String> = fs
            .root_dir()
            .iter()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["meta-data", "network-config", "user-data"]);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut fs.root_dir().open_file("meta-data").unwrap(),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, seed.meta_data());
    }
}
