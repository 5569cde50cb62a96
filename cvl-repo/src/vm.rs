//! The VM description: the small file a VM appliance's `vm` parameter names,
//! the QEMU analog of the paper's VMware `.vmx`. TOML:
//!
//! ```toml
//! memory = 256            # MiB
//! vcpus = 1
//! machine = "pc"          # QEMU machine type (default "pc")
//! guest = "kit"           # how it takes its parameters: "kit" (fw_cfg, the
//!                         # guest kit) or "cloud-init" (a NoCloud seed)
//! agent = true            # it runs the QEMU guest agent (default true)
//!
//! [[disk]]                # program disks, in boot order
//! device = "ide0:0"       # CVL's `datadisks` names data disks by device
//! file = "system.qcow2"   # any image qemu-img reads, relative to this file
//!
//! [boot]                  # optional direct kernel boot
//! kernel = "vmlinuz"
//! initrd = "initrd.img"
//! cmdline = "console=ttyS0"
//! ```
//!
//! A disk whose device is named in the appliance's `datadisks` is a data
//! disk: it is never published.

use std::path::Path;

use cvl_analysis::eval::unescape;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDescription {
    /// Memory in MiB.
    pub memory: u32,
    #[serde(default = "one")]
    pub vcpus: u32,
    #[serde(default = "default_machine")]
    pub machine: String,
    #[serde(default, rename = "disk")]
    pub disks: Vec<DiskSpec>,
    #[serde(default)]
    pub boot: Option<BootSpec>,
    /// How the guest takes its parameters.
    #[serde(default)]
    pub guest: GuestContract,
    /// Whether the image runs the QEMU guest agent: without one, a changed
    /// parameter cannot be resent, and the appliance restarts instead.
    #[serde(default = "yes")]
    pub agent: bool,
}

/// The two ways a guest takes its parameters (docs/guest-kit.md,
/// docs/cloud-images.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestContract {
    /// The guest kit: parameters through fw_cfg, ready when the guest agent
    /// answers.
    #[default]
    Kit,
    /// Any cloud-init image: a NoCloud seed (meta-data, network-config,
    /// user-data) on a CD-ROM, ready when cloud-init's final stage says so.
    CloudInit,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn default_machine() -> String {
    "pc".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    pub device: String,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    pub kernel: String,
    #[serde(default)]
    pub initrd: Option<String>,
    #[serde(default)]
    pub cmdline: Option<String>,
}

impl VmDescription {
    /// Parses and validates a description; messages name the field and the fix.
    pub fn parse(text: &str) -> Result<VmDescription, String> {
        let vm: VmDescription =
            toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        vm.validate()?;
        Ok(vm)
    }

    fn validate(&self) -> Result<(), String> {
        if !(16..=1 << 20).contains(&self.memory) {
            return Err(format!(
                "memory = {} MiB is out of range (16 to 1048576)",
                self.memory
            ));
        }
        if !(1..=64).contains(&self.vcpus) {
            return Err(format!("vcpus = {} is out of range (1 to 64)", self.vcpus));
        }
        let machine_ok = !self.machine.is_empty()
            && self
                .machine
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !machine_ok {
            return Err(format!(
                "machine = {:?} is not a QEMU machine type (e.g. \"pc\", \"q35\")",
                self.machine
            ));
        }
        if self.disks.is_empty() && self.boot.is_none() {
            return Err("the VM has neither a [[disk]] nor a [boot] kernel: it cannot boot".into());
        }
        let mut devices = std::collections::HashSet::new();
        for disk in &self.disks {
            if !valid_device(&disk.device) {
                return Err(format!(
                    "disk device {:?} is not a device name (e.g. \"ide0:0\", \"virtio0\")",
                    disk.device
                ));
            }
            if !devices.insert(disk.device.as_str()) {
                return Err(format!("two disks use device {:?}", disk.device));
            }
            check_relative(&disk.file, "disk file")?;
        }
        if let Some(boot) = &self.boot {
            check_relative(&boot.kernel, "kernel")?;
            if let Some(initrd) = &boot.initrd {
                check_relative(initrd, "initrd")?;
            }
        }
        Ok(())
    }

    /// The files the description names, with what they are, relative to it.
    pub fn files(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .disks
            .iter()
            .map(|d| ("disk", d.file.as_str()))
            .collect();
        if let Some(boot) = &self.boot {
            out.push(("kernel", &boot.kernel));
            if let Some(initrd) = &boot.initrd {
                out.push(("initrd", initrd));
            }
        }
        out
    }

    /// Checks that every file it names exists beside `path` (the description).
    pub fn check_files(&self, path: &Path) -> Result<(), String> {
        let dir = path.parent().unwrap_or(Path::new("."));
        for (what, file) in self.files() {
            let full = dir.join(file);
            if !full.is_file() {
                return Err(format!(
                    "the {what} `{file}` does not exist ({})",
                    crate::display_path(&full)
                ));
            }
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a description serializes")
    }
}

fn valid_device(device: &str) -> bool {
    let (bus, unit) = match device.split_once(':') {
        Some((b, u)) => (b, Some(u)),
        None => (device, None),
    };
    let letters = bus.trim_end_matches(|c: char| c.is_ascii_digit());
    !letters.is_empty()
        && letters.len() < bus.len()
        && letters.chars().all(|c| c.is_ascii_lowercase())
        && unit.is_none_or(|u| !u.is_empty() && u.chars().all(|c| c.is_ascii_digit()))
}

fn check_relative(file: &str, what: &str) -> Result<(), String> {
    crate::paths::check_relative(file)
        .map_err(|e| format!("{what} {file:?} must be a path inside the appliance's folder: {e}"))
}

/// The devices of an appliance's data disks, from its evaluated `datadisks`
/// values (maps such as `device=ide0%3A1&size=100M`).
pub fn data_disk_devices(datadisks: &[String]) -> Vec<String> {
    datadisks
        .iter()
        .filter_map(|map| {
            map.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (unescape(k) == "device").then(|| unescape(v))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_description() {
        let vm = VmDescription::parse(
            "memory = 256\nvcpus = 2\n[[disk]]\ndevice = \"ide0:0\"\nfile = \"sys.qcow2\"\n\
             [[disk]]\ndevice = \"ide0:1\"\nfile = \"data.qcow2\"\n[boot]\nkernel = \"vmlinuz\"\n",
        )
        .unwrap();
        assert_eq!(vm.machine, "pc");
        assert_eq!(
            vm.files(),
            [
                ("disk", "sys.qcow2"),
                ("disk", "data.qcow2"),
                ("kernel", "vmlinuz")
            ]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = |t: &str| VmDescription::parse(t).unwrap_err();
        assert!(err("memory = 1\n[boot]\nkernel = \"k\"").contains("memory = 1 MiB"));
        assert!(err("memory = 64\n").contains("cannot boot"));
        assert!(err("memory = 64\nmemroy = 1\n").contains("memroy"));
        assert!(err("memory = 64\n[[disk]]\ndevice = \"sda\"\nfile = \"x\"")
            .contains("not a device name"));
        assert!(
            err("memory = 64\n[[disk]]\ndevice = \"ide0:0\"\nfile = \"../x\"").contains("inside")
        );
    }

    #[test]
    fn data_disks_from_datadisks_maps() {
        let maps = vec![
            "device=ide0%3A1&size=100M".to_string(),
            "size=1G&device=virtio1".to_string(),
        ];
        assert_eq!(data_disk_devices(&maps), ["ide0:1", "virtio1"]);
    }
}
