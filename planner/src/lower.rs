//! From the analysis to the planner's data. The one module that names
//! `cvl_analysis`: it turns an evaluation of the deployed object into a
//! [`Topology`] (what allocation needs), and, once allocated, into the
//! [`Desired`] state (every parameter on the wire, sensitive ones as
//! fingerprints). Reading VM descriptions is I/O, so the caller supplies
//! it through [`Programs`].

use std::collections::BTreeMap;

use cvl_analysis::eval::{
    evaluate, evaluate_with, unescape, Allocations, Elem, Evaluation, Writer,
};
use cvl_analysis::resolve::{Def, Kind};
use cvl_analysis::{Db, SourceFile};
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use crate::alloc::Allocation;
use crate::fingerprint::fingerprint;
use crate::model::{
    ApplianceRef, Attach, ComponentPath, DataDisk, Desired, DesiredVm, ParamValue, Site, Topology,
    VmShape,
};

/// How an appliance's file was imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFacts {
    /// The URL as written in the import.
    pub url: String,
    pub version: Option<u32>,
    /// The repository after mirrors (a URL `Location::parse` reads).
    pub repository: Option<String>,
    /// The version's files: path and SHA-256.
    pub files: Vec<(String, String)>,
    /// The import statement.
    pub site: Site,
}

/// A VM appliance's program, as the caller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The repository URL, or the local file.
    pub source: String,
    /// SHA-256 over the VM description and its disks.
    pub digest: String,
    pub memory_mib: u32,
    /// It runs the QEMU guest agent: without one, parameters cannot be
    /// resent to it, and it restarts instead.
    pub agent: bool,
}

/// Reads VM descriptions: the I/O the planner leaves to its caller.
pub trait Programs {
    /// The program of the VM appliance whose `vm` is `vm`, set in `file`,
    /// which came through `import` when it was imported.
    /// `data_devices` are the devices of its data disks (the user's, never
    /// part of the program).
    fn program(
        &mut self,
        file: SourceFile,
        vm: &str,
        import: Option<&ImportFacts>,
        data_devices: &[String],
    ) -> Result<Program, String>;
}

/// A sensitive parameter nobody assigns: where the user supplies a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveInput {
    /// Dotted, relative to the deployed object (`rootpw`, `d.rootpw`).
    pub path: String,
    /// `CVL_SECRET_ACMESUITE_ROOTPW`.
    pub env: String,
}

/// The environment variable that supplies `path` of `deployment`.
pub fn secret_env(deployment: &str, path: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("CVL_SECRET_{}_{}", clean(deployment), clean(path))
}

/// The deployed object, lowered: its topology and what allocation does not
/// change.
#[derive(Debug, Clone)]
pub struct Lowered {
    pub def: Def,
    pub topology: Topology,
    pub appliances: BTreeMap<ComponentPath, ApplianceRef>,
    /// Each VM's memory, MiB.
    pub memory: FxHashMap<ComponentPath, u32>,
    /// The VMs whose image runs no guest agent.
    pub no_agent: rustc_hash::FxHashSet<ComponentPath>,
    /// Every sensitive parameter the user must supply.
    pub sensitive_inputs: Vec<SensitiveInput>,
    /// SHA-256 over every file the deployment reads.
    pub files_digest: String,
}

/// What went wrong lowering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerError {
    pub component: ComponentPath,
    pub message: String,
}

impl std::fmt::Display for LowerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.component, self.message)
    }
}

impl std::error::Error for LowerError {}

struct Tree<'a> {
    ev: &'a Evaluation,
    /// (instance, name) -> slot.
    slots: FxHashMap<(usize, &'a str), usize>,
}

impl<'a> Tree<'a> {
    fn new(ev: &'a Evaluation) -> Tree<'a> {
        let slots = ev
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.instance, &*s.name), i))
            .collect();
        Tree { ev, slots }
    }

    fn strings(&self, instance: usize, name: &str) -> Vec<String> {
        self.slots
            .get(&(instance, name))
            .map(|&s| {
                self.ev.slots[s]
                    .value
                    .elems
                    .iter()
                    .filter_map(|e| match e {
                        Elem::Str(s) => Some(s.clone()),
                        Elem::Unknown => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn path(&self, instance: usize) -> ComponentPath {
        ComponentPath::new(&self.ev.instances[instance].path)
    }

    /// The interface instance a `vanIF` of `instance` names.
    fn vanif_target(&self, instance: usize) -> Option<usize> {
        let text = self.strings(instance, "vanIF").into_iter().next()?;
        let mut at = instance;
        for part in text.split('.') {
            at = self.ev.instances[at]
                .children
                .iter()
                .find(|(n, _)| **n == *part)
                .map(|(_, i)| *i)?;
        }
        (self.ev.instances[at].kind == Kind::Interface).then_some(at)
    }

    fn attach(&self, vm: usize, iface: usize) -> Attach {
        let mut level = None;
        let mut at = Some(vm);
        while let Some(x) = at {
            if self.vanif_target(x) == Some(iface) {
                level = Some(x);
            }
            at = self.ev.instances[x].parent;
        }
        match level {
            None => Attach::None,
            Some(l) => match self.ev.instances[l].parent {
                Some(p) => Attach::Van(self.path(p)),
                None => Attach::Public,
            },
        }
    }
}

/// Every file the deployment reads, and how each imported one was imported.
fn files_and_imports(
    db: &dyn Db,
    root: SourceFile,
) -> (Vec<SourceFile>, FxHashMap<SourceFile, ImportFacts>) {
    let mut files = vec![root];
    let mut facts: FxHashMap<SourceFile, ImportFacts> = FxHashMap::default();
    let mut i = 0;
    while i < files.len() {
        let file = files[i];
        i += 1;
        let tree = cvl_analysis::resolve::item_tree(db, file);
        for (key, result) in &file.imports(db).entries {
            let Ok(resolved) = result else { continue };
            if !files.contains(&resolved.file) {
                files.push(resolved.file);
            }
            if facts.contains_key(&resolved.file) {
                continue;
            }
            let offset = tree
                .imports
                .iter()
                .find(|item| item.key().as_ref() == Some(key))
                .map_or(0, |item| usize::from(item.range.start()));
            let text = file.text(db);
            let line = text[..offset.min(text.len())].matches('\n').count() as u32 + 1;
            facts.insert(
                resolved.file,
                ImportFacts {
                    url: key.url.clone(),
                    version: resolved.version,
                    repository: resolved.repository.clone(),
                    files: resolved.files.clone(),
                    site: Site {
                        file: file_name(file.name(db)),
                        line,
                    },
                },
            );
        }
    }
    (files, facts)
}

/// A file's name as a plan shows it: the last path segment.
fn file_name(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_string()
}

/// Lowers the deployed object `def` into its topology.
pub fn topology(
    db: &dyn Db,
    def: &Def,
    programs: &mut dyn Programs,
) -> Result<Lowered, LowerError> {
    let ev = evaluate(db, def);
    let tree = Tree::new(ev);
    let (files, facts) = files_and_imports(db, def.file);
    let mut vms = Vec::new();
    let mut vans = Vec::new();
    let mut appliances = BTreeMap::new();
    type ProgramKey = (SourceFile, String, Vec<String>);
    let mut programs_seen: FxHashMap<ProgramKey, (ApplianceRef, u32, bool)> = FxHashMap::default();
    let mut no_agent = rustc_hash::FxHashSet::default();
    for (i, inst) in ev.instances.iter().enumerate() {
        let path = tree.path(i);
        match inst.kind {
            Kind::Van => vans.push(path),
            Kind::Vm => {
                let Some(&vm_slot) = tree.slots.get(&(i, "vm")) else {
                    continue;
                };
                let slot = &ev.slots[vm_slot];
                let vm = tree
                    .strings(i, "vm")
                    .into_iter()
                    .next()
                    .ok_or_else(|| LowerError {
                        component: path.clone(),
                        message: "`vm` is not set, so there is no VM to run".to_string(),
                    })?;
                let (file, owner) = match &slot.writer {
                    Some(Writer::Assign { assign, .. }) => {
                        (assign.owner.file, assign.owner.name.clone())
                    }
                    _ => (inst.ty.file, inst.ty.name.clone()),
                };
                let data_devices = data_devices(&tree, i);
                let key = (file, vm.clone(), data_devices.clone());
                let (appliance, memory_mib, agent) = match programs_seen.get(&key) {
                    Some(known) => known.clone(),
                    None => {
                        let import = facts.get(&file);
                        let program = programs.program(file, &vm, import, &data_devices).map_err(
                            |message| LowerError {
                                component: path.clone(),
                                message,
                            },
                        )?;
                        let appliance = ApplianceRef {
                            name: owner.to_string(),
                            source: program.source,
                            version: import.and_then(|f| f.version),
                            digest: program.digest,
                            import_site: import.map(|f| f.site.clone()),
                        };
                        programs_seen
                            .insert(key, (appliance.clone(), program.memory_mib, program.agent));
                        (appliance, program.memory_mib, program.agent)
                    }
                };
                let interfaces = inst
                    .children
                    .iter()
                    .filter(|(_, c)| ev.instances[*c].kind == Kind::Interface)
                    .map(|(name, c)| (name.to_string(), tree.attach(i, *c)))
                    .collect();
                appliances.insert(path.clone(), appliance);
                if !agent {
                    no_agent.insert(path.clone());
                }
                vms.push(VmShape {
                    path,
                    memory_mib,
                    interfaces,
                });
            }
            _ => {}
        }
    }
    let deployment = def.name.clone();
    let mut inputs: Vec<SensitiveInput> = ev
        .sensitive_sources
        .values()
        .filter(|&&root| ev.slots[root].writer.is_none())
        .map(|&root| ev.dotted(&ev.slots[root]))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|path| SensitiveInput {
            env: secret_env(&deployment, &path),
            path,
        })
        .collect();
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha256::new();
    let mut named: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f.name(db).as_str(), f.text(db).as_str()))
        .collect();
    named.sort();
    for (name, text) in named {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name);
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text);
    }
    for appliance in appliances.values() {
        hasher.update(&appliance.digest);
    }
    let memory = vms.iter().map(|v| (v.path.clone(), v.memory_mib)).collect();
    Ok(Lowered {
        def: def.clone(),
        memory,
        no_agent,
        topology: Topology {
            deployment: deployment.to_string(),
            vms,
            vans,
        },
        appliances,
        sensitive_inputs: inputs,
        files_digest: hex(&hasher.finalize()),
    })
}

/// The values of sensitive parameters, per component and parameter: what
/// the executor puts on the wire. Memory only: it does not serialize, its
/// `Debug` shows no value, and its strings are zeroized when it is dropped.
#[derive(Default, Clone)]
pub struct SensitiveValues(pub BTreeMap<ComponentPath, BTreeMap<String, Vec<String>>>);

impl Drop for SensitiveValues {
    fn drop(&mut self) {
        for params in self.0.values_mut() {
            for values in params.values_mut() {
                values.iter_mut().for_each(zeroize::Zeroize::zeroize);
            }
        }
    }
}

impl std::fmt::Debug for SensitiveValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SensitiveValues({} components, values not shown)",
            self.0.len()
        )
    }
}

/// The desired state of `lowered` once allocated as `alloc`, with the
/// sensitive values the user supplied (`secrets`, by input path; kept in
/// memory only) fingerprinted under `key`. Also returns those values as
/// each component receives them.
pub fn desired(
    db: &dyn Db,
    lowered: &Lowered,
    alloc: &Allocation,
    secrets: &BTreeMap<String, String>,
    key: &[u8],
) -> (Desired, SensitiveValues) {
    let mut sensitive_values = SensitiveValues::default();
    let deployment = &lowered.topology.deployment;
    let mut values: Allocations = Allocations::default();
    values.values.extend(alloc.interface_values());
    values
        .values
        .extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    let ev = evaluate_with(db, &lowered.def, &values);
    let plain = evaluate(db, &lowered.def);
    let tree = Tree::new(&ev);
    let mut by_instance: Vec<Vec<usize>> = vec![Vec::new(); ev.instances.len()];
    for (s, slot) in ev.slots.iter().enumerate() {
        by_instance[slot.instance].push(s);
    }
    let mut vms = BTreeMap::new();
    let mut digest = Sha256::new();
    digest.update(&lowered.files_digest);
    for (i, inst) in ev.instances.iter().enumerate() {
        if inst.kind != Kind::Vm {
            continue;
        }
        let path = tree.path(i);
        let Some(appliance) = lowered.appliances.get(&path) else {
            continue;
        };
        let mut params = BTreeMap::new();
        let mut owners = vec![(i, String::new())];
        owners.extend(
            inst.children
                .iter()
                .filter(|(_, c)| ev.instances[*c].kind == Kind::Interface)
                .map(|(n, c)| (*c, format!("{n}."))),
        );
        for (owner, prefix) in owners {
            for &s in &by_instance[owner] {
                let slot = &ev.slots[s];
                let name = format!("{prefix}{}", slot.name);
                let strings: Vec<String> = slot
                    .value
                    .elems
                    .iter()
                    .filter_map(|e| match e {
                        Elem::Str(s) => Some(s.clone()),
                        Elem::Unknown => None,
                    })
                    .collect();
                let value = if slot.value.sensitive {
                    let source = plain
                        .sensitive_sources
                        .get(&s)
                        .map(|&root| plain.dotted(&plain.slots[root]))
                        .unwrap_or_else(|| ev.dotted(slot));
                    let fp = (!strings.is_empty())
                        .then(|| fingerprint(key, deployment, &ev.dotted(slot), &strings));
                    if let Some(fp) = &fp {
                        digest.update(fp);
                        sensitive_values
                            .0
                            .entry(path.clone())
                            .or_default()
                            .insert(name.clone(), strings.clone());
                    }
                    ParamValue::Sensitive {
                        fingerprint: fp,
                        supply: secret_env(deployment, &source),
                    }
                } else {
                    ParamValue::Plain { values: strings }
                };
                params.insert(name, value);
            }
        }
        let data_disks = data_disks(&tree, i);
        let memory_mib = lowered.memory.get(&path).copied().unwrap_or(0);
        let agent = !lowered.no_agent.contains(&path);
        vms.insert(
            path,
            DesiredVm {
                appliance: appliance.clone(),
                provides: tree.strings(i, "provides"),
                requires: tree.strings(i, "requires"),
                params,
                memory_mib,
                data_disks,
                agent,
            },
        );
    }
    let desired = Desired {
        deployment: deployment.clone(),
        vms,
        vans: alloc.vans.clone(),
        inputs_digest: hex(&digest.finalize()),
    };
    (desired, sensitive_values)
}

/// The data disks `datadisks` declares (maps with `device` and `size`).
fn data_disks(tree: &Tree<'_>, vm: usize) -> Vec<DataDisk> {
    tree.strings(vm, "datadisks")
        .iter()
        .map(|map| {
            let pairs = parse_map(map);
            let get = |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            DataDisk {
                device: get("device"),
                size: get("size"),
            }
        })
        .collect()
}

fn data_devices(tree: &Tree<'_>, vm: usize) -> Vec<String> {
    data_disks(tree, vm).into_iter().map(|d| d.device).collect()
}

/// A map value (`device=ide0%3A1&size=100M`) as its pairs, unescaped.
fn parse_map(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
