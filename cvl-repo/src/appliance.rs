//! A VM appliance's files beside its CVL: the VM description its `vm`
//! parameter names and the program disks and kernel that description names.
//! Checked by `cvl check` and the language server (as `invalid-vm`), and
//! gathered by `cvl publish`. And the appliance a test parameters file
//! (`test.params`) sets the parameters of.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::publish::PublishFile;
use crate::vm::{data_disk_devices, DiskSpec, VmDescription};
use cvl_analysis::diagnostics::Loc;
use cvl_analysis::{
    vm_setting, Analysis, Cancellable, Code, Def, Diagnostic, RootDatabase, Severity, SourceFile,
    Span,
};

/// A VM appliance object of a file and its description, as far as found.
pub struct VmAppliance {
    /// The `vm` value and where it was assigned.
    pub vm: String,
    pub assigned_at: Span,
    pub path: PathBuf,
    pub description: Result<VmDescription, String>,
    /// Devices of its data disks (from `datadisks`).
    pub data_devices: Vec<String>,
}

/// Every VM appliance object of `file` whose `vm` is set in `file` itself.
pub fn vm_appliances(
    analysis: &Analysis,
    file: SourceFile,
    dir: &Path,
) -> Cancellable<Vec<VmAppliance>> {
    analysis.with_db(|db| appliances_in(db, file, dir))
}

fn appliances_in(db: &RootDatabase, file: SourceFile, dir: &Path) -> Vec<VmAppliance> {
    // Many objects often name one description: read and check it once.
    let mut descriptions: HashMap<PathBuf, Result<VmDescription, String>> = HashMap::new();
    vm_settings(db, file)
        .into_iter()
        .map(|(def, vm, at)| {
            let path = dir.join(&vm);
            let description = descriptions
                .entry(path.clone())
                .or_insert_with(|| read_description(&path, &vm))
                .clone();
            // Only the value: where it was assigned is not needed here.
            let data_devices = cvl_analysis::eval::evaluate(db, &def)
                .slot("datadisks")
                .and_then(|slot| slot.value.strings())
                .map(|v| data_disk_devices(&v))
                .unwrap_or_default();
            VmAppliance {
                vm,
                assigned_at: at.span(db),
                path,
                description,
                data_devices,
            }
        })
        .collect()
}

/// Each VM appliance object of `file` whose `vm` is set in `file` itself:
/// the object, the value, and where it is set.
fn vm_settings(db: &RootDatabase, file: SourceFile) -> Vec<(Def, String, Loc)> {
    file.shape(db)
        .names
        .iter()
        .filter_map(|name| {
            let def = Def {
                file,
                name: name.clone(),
            };
            let (vm, at) = vm_setting(db, &def).clone()?;
            // Set by a parent in another file: checked there.
            (at.file == file).then_some((def, vm, at))
        })
        .collect()
}

/// The VM description `value` (`vm`'s value) names, at `path`, parsed and
/// with its files checked.
fn read_description(path: &Path, value: &str) -> Result<VmDescription, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "`vm` names `{value}`, which does not exist beside the file: write the VM \
             description there (memory, vcpus, [[disk]]; the format is in docs/vm-description.md)"
        ),
        _ => format!("cannot read `{value}`: {e}"),
    })?;
    let description = VmDescription::parse(&text).map_err(|e| format!("`{value}`: {e}"))?;
    description
        .check_files(path)
        .map_err(|e| format!("`{value}`: {e}"))?;
    Ok(description)
}

/// `invalid-vm` errors for descriptions that exist but are wrong. A missing
/// one is not a problem yet (disks are often built after the CVL is
/// written); `cvl publish` refuses it.
pub fn check(analysis: &Analysis, file: SourceFile, dir: &Path) -> Cancellable<Vec<Diagnostic>> {
    analysis.with_db(|db| {
        // Each description once, at the first object naming it.
        let mut seen = HashSet::new();
        vm_settings(db, file)
            .into_iter()
            .filter_map(|(_, vm, at)| {
                let path = dir.join(&vm);
                if !seen.insert(path.clone()) || !path.exists() {
                    return None;
                }
                let message = read_description(&path, &vm).err()?;
                Some(Diagnostic::new(
                    Code::InvalidVm,
                    Severity::Error,
                    message,
                    at.span(db),
                ))
            })
            .collect()
    })
}

fn plain_name(file: &str) -> Result<String, String> {
    Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| format!("`{file}` is not a file name"))
}

/// What publishing a VM appliance adds to its CVL file: the description
/// (without data disks, whose content is never published) and the program
/// disks and kernel files it names, all under plain names.
pub fn publish_files(appliance: &VmAppliance) -> Result<Vec<PublishFile>, String> {
    let description = appliance.description.clone()?;
    if appliance.vm.contains('/') {
        return Err(format!(
            "`vm` is `{}`: to publish, name a file beside the CVL file",
            appliance.vm
        ));
    }
    let dir = appliance.path.parent().unwrap_or(Path::new("."));
    let mut published = description.clone();
    let mut files = Vec::new();
    published.disks.clear();
    for disk in &description.disks {
        if appliance.data_devices.contains(&disk.device) {
            continue; // a data disk: the user's, never published
        }
        // Published disks are qcow2 whatever their source format.
        let stem = Path::new(&plain_name(&disk.file)?)
            .with_extension("")
            .to_string_lossy()
            .to_string();
        let name = format!("{stem}.qcow2");
        if published.disks.iter().any(|d| d.file == name) {
            return Err(format!(
                "two program disks would both be published as `{name}`: rename one"
            ));
        }
        files.push(PublishFile::Disk {
            path: name.clone(),
            source: dir.join(&disk.file),
        });
        published.disks.push(DiskSpec {
            device: disk.device.clone(),
            file: name,
        });
    }
    if let Some(boot) = &mut published.boot {
        for file in std::iter::once(&mut boot.kernel).chain(boot.initrd.as_mut()) {
            let bytes = std::fs::read(dir.join(&*file))
                .map_err(|e| format!("cannot read `{file}`: {e}"))?;
            let name = plain_name(file)?;
            files.push(PublishFile::Plain {
                path: name.clone(),
                bytes,
            });
            *file = name;
        }
    }
    files.push(PublishFile::Plain {
        path: appliance.vm.clone(),
        bytes: published.to_toml().into_bytes(),
    });
    Ok(files)
}

/// The appliance a test parameters file is for: the file named by a
/// comment line `# appliance: PATH` (relative to the parameters file's
/// folder), else the one `.cvl` file of that folder (what `cvl build`
/// made), else the file a recipe's `cvl` file names (appliances/DNS/cvl).
/// An error says how to name it.
pub fn of_params(params: &Path, text: &str) -> Result<PathBuf, String> {
    let dir = params
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let named = text
        .lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with('#'))
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("appliance:"));
    if let Some(named) = named {
        let path = dir.join(named.trim());
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "`# appliance: {}` names no file: {} does not exist",
                named.trim(),
                path.display()
            ))
        };
    }
    let mut cvl: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cvl") && p.is_file())
        .collect();
    cvl.sort();
    let teach = "name it in a comment at the top: `# appliance: ../DNS.cvl`";
    match cvl.len() {
        1 => return Ok(cvl.remove(0)),
        0 => {}
        n => {
            return Err(format!(
                "which appliance? {} holds {n} .cvl files: {teach}",
                dir.display()
            ))
        }
    }
    let pointer = dir.join("cvl");
    if let Ok(named) = std::fs::read_to_string(&pointer) {
        let path = dir.join(named.trim());
        if path.is_file() {
            return Ok(path);
        }
        return Err(format!(
            "{} names {}, which does not exist",
            pointer.display(),
            path.display()
        ));
    }
    Err(format!(
        "which appliance? {} holds no .cvl file: {teach}",
        dir.display()
    ))
}
