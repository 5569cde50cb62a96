//! An appliance test (`cvl test`): the appliance published into a
//! repository of the sandbox's own, deployed alone in a VAN there (as a
//! subscriber deploys it, through `cvl apply`), and the guest contract
//! checked step by step: ready within its budget; the parameters the guest
//! read are what the appliance evaluated to; an all-zero data disk
//! initialized on first boot; the appliance's own checks
//! (`/etc/cvl/test.d/`, through the guest agent); a resend that runs the
//! reload hook without a restart, and the checks again after it; a clean
//! shutdown within the stop timeout; a second boot that finds the data
//! disk as it was. Each boot's console is kept. With a `previous` version,
//! the upgrade path around it: that version and its checks first, the
//! update onto its data, and a rollback onto the data from before it.
//!
//! The flow and its bookkeeping are here; `deployment` drives the
//! sandbox's `cvl` (apply, stop, history, consoles), `guest` looks inside
//! the guest, `previous` names the version an upgrade starts from.

mod deployment;
mod guest;
mod previous;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::params::{self, Assignment};
use crate::report::{Outcome, Report, Step};
use crate::sandbox::Sandbox;
use guest::{initialized_found, mark_candidate, Disk, CANDIDATE_MARK};
pub use previous::{Previous, Wanted};

/// The component the appliance is in the sandbox's deployment.
pub const COMPONENT: &str = "app";

/// Where the appliance's own checks are, in the guest.
pub const CHECKS_DIR: &str = "/etc/cvl/test.d";

/// What to test, and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The appliance's CVL file (its VM description and disks beside it,
    /// as `cvl build` leaves them and `cvl publish` takes them).
    pub file: PathBuf,
    /// Its parameters (what a subscriber would set), and the file they
    /// come from (what errors name).
    pub params: Vec<Assignment>,
    pub params_file: Option<PathBuf>,
    /// The resend's change (default: one more value of `provides`, which
    /// no hook reads, so that the parameters change and nothing else).
    pub resend: Option<Assignment>,
    /// Seconds the guest has to be ready after booting.
    pub ready_timeout: u64,
    /// Seconds the guest has to power off when stopped.
    pub stop_timeout: u64,
    /// Seconds each of the appliance's checks may run.
    pub check_timeout: u64,
    /// Where each boot's console is kept.
    pub consoles: PathBuf,
    /// Test the upgrade from this version too.
    pub previous: Option<Previous>,
}

/// What a test tells as it goes.
pub enum Progress<'a> {
    /// A step that takes a while begins (a boot, a resend, a stop).
    Begins(&'a str),
    Finished(&'a Step),
}

/// The phases of a test's steps (checks have theirs: `checks`, `checks
/// after resend`, `previous checks`, ...).
const CONTRACT: &str = "contract";
const UPGRADE: &str = "upgrade";

/// The steps a test has, in order (the checks come between them): what a
/// failure that stops it leaves skipped.
fn planned(previous: bool) -> Vec<(&'static str, &'static str)> {
    let mut steps = vec![(CONTRACT, "publish")];
    if previous {
        steps.extend([
            (UPGRADE, "previous ready"),
            (UPGRADE, "previous data disk initialized"),
            (UPGRADE, "publish candidate"),
            (UPGRADE, "update"),
            (CONTRACT, "parameters"),
            (UPGRADE, "data disk kept by the update"),
        ]);
    } else {
        steps.extend([
            (CONTRACT, "ready"),
            (CONTRACT, "parameters"),
            (CONTRACT, "data disk initialized"),
        ]);
    }
    steps.extend([
        (CONTRACT, "resend"),
        (CONTRACT, "parameters after resend"),
        (CONTRACT, "clean shutdown"),
        (CONTRACT, "second boot"),
        (CONTRACT, "data disk kept"),
    ]);
    if previous {
        steps.extend([(UPGRADE, "rollback"), (UPGRADE, "data disk after rollback")]);
    }
    steps
}

/// The appliance's CVL file: `target` itself, or the one `.cvl` file of
/// the folder `target`.
pub fn appliance_file(target: &Path) -> Result<PathBuf> {
    if !target.is_dir() {
        if target.extension().is_some_and(|e| e == "cvl") && target.is_file() {
            return Ok(target.to_path_buf());
        }
        bail!(
            "{} is neither an appliance's folder nor its CVL file: name what `cvl build` made (`cvl test out/DNS`)",
            target.display()
        );
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(target)
        .with_context(|| format!("cannot read {}", target.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cvl"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "{} holds no CVL file: is it what `cvl build RECIPE OUT` made (OUT)?",
            target.display()
        ),
        _ => bail!(
            "{} holds {} CVL files ({}): name the appliance's (`cvl test {}`)",
            target.display(),
            found.len(),
            found
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy())
                .collect::<Vec<_>>()
                .join(", "),
            found[0].display()
        ),
    }
}

/// Tests the appliance of `spec` in a sandbox, with `cvl` (this
/// executable). An error means it could not be tested (bad parameters,
/// no root); a failed step is in the report.
pub fn run(cvl: &Path, spec: &Spec, progress: &mut dyn FnMut(Progress<'_>)) -> Result<Report> {
    let started = Instant::now();
    let file = std::path::absolute(&spec.file)?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut test = Test {
        sandbox: Sandbox::new(cvl)?,
        deployment: format!("{name}Test"),
        name,
        spec,
        steps: Vec::new(),
        consoles: Vec::new(),
        progress,
        secrets: BTreeMap::new(),
        export: "ethernet0".to_string(),
    };
    let result = test.contract(&file);
    let mut report = Report {
        appliance: test.name.clone(),
        steps: std::mem::take(&mut test.steps),
        seconds: 0.0,
        consoles: std::mem::take(&mut test.consoles),
    };
    if let Err(Stopped(first_failed)) = result? {
        for (phase, step) in planned(spec.previous.is_some()) {
            if !report.steps.iter().any(|s| s.name == step) {
                report.steps.push(Step {
                    name: step.to_string(),
                    phase: phase.to_string(),
                    outcome: Outcome::Skipped,
                    seconds: 0.0,
                    message: format!("not run: `{first_failed}` failed"),
                    output: String::new(),
                });
            }
        }
    }
    drop(test);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A step whose failure stops the test (its name).
struct Stopped(String);

struct Test<'a> {
    sandbox: Sandbox,
    name: String,
    deployment: String,
    spec: &'a Spec,
    steps: Vec<Step>,
    consoles: Vec<PathBuf>,
    progress: &'a mut dyn FnMut(Progress<'_>),
    /// The sensitive values supplied, by parameter (memory only).
    secrets: BTreeMap<String, String>,
    /// The appliance's interface the sandbox's VAN exports.
    export: String,
}

/// What a step found: passed with a message, or failed with a message and
/// what was said.
type Found = std::result::Result<String, (String, String)>;

impl Test<'_> {
    /// The contract, in order. `Ok(Err(_))`: a step failed that the rest
    /// needs; `Err`: the appliance could not be tested at all.
    fn contract(&mut self, file: &Path) -> Result<std::result::Result<(), Stopped>> {
        let previous = self.spec.previous.clone();
        if !self.publish(file, previous.as_ref())? {
            return Ok(Err(Stopped("publish".into())));
        }
        let mut initialized = None;
        if previous.is_some() {
            // The previous version first, its checks leaving data behind.
            let evaluated = self.deploy(None)?;
            if !self.boot("previous ready", UPGRADE)? {
                return Ok(Err(Stopped("previous ready".into())));
            }
            initialized =
                self.initialize_disks("previous data disk initialized", UPGRADE, &evaluated)?;
            self.checks("previous checks")?;
            self.keep_console("previous");
            // The candidate published as the next version, the deployment's
            // lock moved to it (as a subscriber's `cvl update-lock`).
            let step = Instant::now();
            let published =
                self.sandbox
                    .cvl(&["publish".as_ref(), "repo".as_ref(), file.as_os_str()])?;
            let locked = if published.ok() {
                self.sandbox.cvl(&["update-lock", "Test.cvl"])?
            } else {
                published
            };
            let found = if locked.ok() {
                Ok("published as the next version; the deployment's lock takes it".to_string())
            } else {
                Err(("`cvl publish` refused it".to_string(), locked.said()))
            };
            if !self.finish("publish candidate", UPGRADE, step, found) {
                return Ok(Err(Stopped("publish candidate".into())));
            }
        }
        let evaluated = self.deploy(None)?;
        if previous.is_some() {
            // The update: the candidate's program disks in, the data kept.
            if !self.boot("update", UPGRADE)? {
                return Ok(Err(Stopped("update".into())));
            }
            let step = Instant::now();
            let found = self.parameters(&evaluated)?;
            self.finish("parameters", CONTRACT, step, found);
            let step = Instant::now();
            let mut kept = self.disks_kept(initialized.as_ref())?;
            if let (Some(Ok(_)), Some(Ok(disks))) = (&kept, &initialized) {
                // What the candidate writes, which a rollback must undo.
                if let Err(why) = self.sh(&mark_candidate(disks))? {
                    kept = Some(Err(("cannot write on the data disk".to_string(), why)));
                }
            }
            self.disk_step("data disk kept by the update", UPGRADE, step, kept);
        } else {
            // The first boot, on an all-zero data disk.
            if !self.boot("ready", CONTRACT)? {
                return Ok(Err(Stopped("ready".into())));
            }
            let step = Instant::now();
            let found = self.parameters(&evaluated)?;
            self.finish("parameters", CONTRACT, step, found);
            initialized = self.initialize_disks("data disk initialized", CONTRACT, &evaluated)?;
        }
        self.checks("checks")?;

        // A resend: the reload hook, no restart.
        let step = Instant::now();
        let before = self.guest_state()?;
        let resend = match &self.spec.resend {
            Some(change) => change.clone(),
            None => {
                let mut provides: Vec<String> = strings(evaluated.get("provides"))
                    .iter()
                    .map(|p| params::quote(p))
                    .collect();
                provides.push(params::quote("cvl-test-resend"));
                Assignment {
                    name: "provides".to_string(),
                    value: provides.join(", "),
                    line: 0,
                }
            }
        };
        let changed = self.deploy(Some(&resend))?;
        (self.progress)(Progress::Begins("resend"));
        let applied = self.apply()?;
        let found = if !applied.ok() {
            // A guest that rebooted answers again once it is back.
            let after = self
                .guest_state_within(Duration::from_secs(u64::min(self.spec.ready_timeout, 60)))?;
            let what = if after.0.is_empty() {
                "the guest stopped answering during the resend".to_string()
            } else if after.0 != before.0 {
                "the guest restarted during the resend (its boot id changed): a reload hook \
                 must reconfigure the appliance's daemons, not reboot the VM"
                    .to_string()
            } else {
                format!("`{}` changed, and the resend failed", resend.name)
            };
            Err((what, applied.said()))
        } else {
            self.resent(&before, &resend)?
        };
        if self.finish("resend", CONTRACT, step, found) {
            let step = Instant::now();
            let found = self.parameters(&changed)?;
            self.finish("parameters after resend", CONTRACT, step, found);
            self.checks("checks after resend")?;
        } else {
            self.skip(
                "parameters after resend",
                CONTRACT,
                "not run: `resend` failed",
            );
        }

        // A clean shutdown, and a second boot on the same data.
        let step = Instant::now();
        (self.progress)(Progress::Begins("clean shutdown"));
        let found = self.stop()?;
        self.keep_console(if previous.is_some() {
            "update"
        } else {
            "first-boot"
        });
        if !self.finish("clean shutdown", CONTRACT, step, found) {
            return Ok(Err(Stopped("clean shutdown".into())));
        }
        if !self.boot("second boot", CONTRACT)? {
            return Ok(Err(Stopped("second boot".into())));
        }
        let step = Instant::now();
        let kept = self.disks_kept(initialized.as_ref())?;
        self.disk_step("data disk kept", CONTRACT, step, kept);
        self.keep_console("second-boot");

        if previous.is_some() {
            // Back to the previous version on the data from before the
            // update: its checks pass again.
            let step = Instant::now();
            (self.progress)(Progress::Begins("rollback"));
            let ran = self.sandbox.cvl(&[
                "rollback",
                "Test.cvl",
                COMPONENT,
                "--to",
                "1",
                "--data",
                "before-update",
                "--auto-approve",
            ])?;
            let found = if ran.ok() {
                let entry = self.last_entry()?;
                let detail = entry["detail"].as_str().unwrap_or_default().to_string();
                if entry["to_version"] != 1 {
                    Err((
                        format!(
                            "`cvl rollback` left version {} running, not 1",
                            entry["to_version"]
                        ),
                        detail,
                    ))
                } else {
                    Ok(match ready_after(&detail) {
                        Some(s) => format!("the previous version runs again: ready after {s:.1} s"),
                        None => detail,
                    })
                }
            } else {
                Err(("`cvl rollback` failed".to_string(), ran.said()))
            };
            if !self.finish("rollback", UPGRADE, step, found) {
                self.keep_console("rollback");
                return Ok(Err(Stopped("rollback".into())));
            }
            let step = Instant::now();
            let mut kept = self.disks_kept(initialized.as_ref())?;
            if let (Some(Ok(_)), Some(Ok(disks))) = (&kept, &initialized) {
                let left: Vec<&Disk> = disks
                    .iter()
                    .filter(|d| {
                        self.sh(&format!("test -e \"{}/{CANDIDATE_MARK}\"", d.mount))
                            .is_ok_and(|r| r.is_ok())
                    })
                    .collect();
                kept = Some(if left.is_empty() {
                    Ok("each data disk is as it was before the update: what the candidate wrote is gone".to_string())
                } else {
                    Err((
                        "the data is not as it was before the update".to_string(),
                        left.iter()
                            .map(|d| {
                                format!(
                                    "/dev/{}: what the candidate wrote in {} is still there",
                                    d.device, d.mount
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ))
                });
            }
            self.disk_step("data disk after rollback", UPGRADE, step, kept);
            self.checks("previous checks after rollback")?;
            self.keep_console("rollback");
        }
        Ok(Ok(()))
    }

    /// Publishes into a repository of the sandbox's own, as the publisher
    /// will: the candidate, or with `previous` that version (fetched and
    /// verified by the caller) for the candidate to follow later.
    /// Whether it could.
    fn publish(&mut self, file: &Path, previous: Option<&Previous>) -> Result<bool> {
        let step = Instant::now();
        let created = self.sandbox.cvl(&["repo", "create", "repo"])?;
        if !created.ok() {
            let found = Err((
                "cannot make the sandbox's repository".to_string(),
                created.said(),
            ));
            return Ok(self.finish("publish", CONTRACT, step, found));
        }
        if let Some(previous) = previous {
            let cvl = previous.file(&self.name)?;
            let published =
                self.sandbox
                    .cvl(&["publish".as_ref(), "repo".as_ref(), cvl.as_os_str()])?;
            let found = if published.ok() {
                Ok(format!(
                    "{} published into the sandbox's repository",
                    previous.label
                ))
            } else {
                Err((format!("cannot take {}", previous.label), published.said()))
            };
            return Ok(self.finish("publish", CONTRACT, step, found));
        }
        let published =
            self.sandbox
                .cvl(&["publish".as_ref(), "repo".as_ref(), file.as_os_str()])?;
        let found = if published.ok() {
            Ok("published into the sandbox's repository".to_string())
        } else {
            Err(("`cvl publish` refused it".to_string(), published.said()))
        };
        Ok(self.finish("publish", CONTRACT, step, found))
    }

    /// Writes the sandbox's deployment ([`Self::write_deployment`]) and
    /// evaluates it, the exported interface chosen once the appliance's
    /// interfaces are known; a value for each sensitive parameter.
    fn deploy(&mut self, change: Option<&Assignment>) -> Result<BTreeMap<String, Value>> {
        self.write_deployment(change)?;
        let mut evaluated = self.evaluate()?;
        let export = exported_interface(&evaluated);
        if export != self.export {
            self.export = export;
            self.write_deployment(change)?;
            evaluated = self.evaluate()?;
        }
        self.supply_secrets(&evaluated);
        Ok(evaluated)
    }

    /// The sandbox's deployment: the appliance alone in a VAN (what it
    /// requires is provided by nothing here, so its requirements are
    /// cleared), one of its interfaces exported, with the test's
    /// parameters and, after the first boot, the resend's change.
    fn write_deployment(&self, change: Option<&Assignment>) -> Result<()> {
        let (text, _) = self.deployment_text(change);
        std::fs::write(self.sandbox.dir().join("Test.cvl"), text)?;
        Ok(())
    }

    /// [`Self::write_deployment`]'s text, and the line of its first
    /// assignment of a parameter (one a line, in order: the test's, then
    /// the change).
    fn deployment_text(&self, change: Option<&Assignment>) -> (String, usize) {
        let mut text = format!(
            "CVL = \"0.8\";\n\
             import {{ url => \"file://{repo}\", cvl => \"{name}.cvl\" }} {name};\n\
             /* `cvl test`'s sandbox: {name} alone in a VAN. */\n\
             {deployment} extends VANAppliance {{\n  \
               var none; /* never assigned: the empty list */\n  \
               {name} {COMPONENT};\n  \
               vanIF = \"{COMPONENT}.{export}\";\n  \
               {COMPONENT}.requires = none;\n",
            repo = self.sandbox.dir().join("repo").display(),
            name = self.name,
            deployment = self.deployment,
            export = self.export,
        );
        let first = text.lines().count() + 1;
        for a in self.spec.params.iter().chain(change) {
            text.push_str(&format!("  {COMPONENT}.{} = {};\n", a.name, a.value));
        }
        text.push_str("}\n");
        (text, first)
    }

    /// What the appliance evaluates to in the deployment, below it.
    fn evaluate(&self) -> Result<BTreeMap<String, Value>> {
        let ran = self.sandbox.cvl(&[
            "eval",
            "Test.cvl",
            "--object",
            &self.deployment,
            "--format",
            "json",
        ])?;
        if !ran.ok() {
            bail!(
                "{} cannot be deployed with these parameters:\n{}",
                self.name,
                self.explain()?
            );
        }
        let all: BTreeMap<String, Value> =
            serde_json::from_str(&ran.stdout).context("`cvl eval` gave no JSON")?;
        let prefix = format!("{COMPONENT}.");
        let mut evaluated: BTreeMap<String, Value> = all
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v)))
            .collect();
        // What the planner gives the appliance's interfaces.
        let plan = self
            .sandbox
            .cvl(&["plan", "Test.cvl", "--format", "json"])?;
        if let Ok(plan) = serde_json::from_str::<Value>(&plan.stdout) {
            params::unallocated(&mut evaluated, &plan["allocations"][COMPONENT]);
        }
        Ok(evaluated)
    }

    /// Why the deployment does not evaluate, in the user's terms: each
    /// error of `cvl check` on it, one at a parameter's assignment named at
    /// its line of the parameters file, a required parameter without a
    /// value with the line to add.
    fn explain(&self) -> Result<String> {
        let ran = self.sandbox.cvl(&[
            "check",
            "--deploy",
            &self.deployment,
            "Test.cvl",
            "--format",
            "json",
        ])?;
        let Ok(diagnostics) = serde_json::from_str::<Vec<Value>>(&ran.stdout) else {
            return Ok(ran.said());
        };
        let (_, first) = self.deployment_text(None);
        let file = self
            .spec
            .params_file
            .as_ref()
            .map(|f| f.display().to_string());
        let prefix = format!("`{COMPONENT}.");
        let mut said = Vec::new();
        for d in diagnostics.iter().filter(|d| d["severity"] == "error") {
            let message = d["message"]
                .as_str()
                .unwrap_or_default()
                .replace(&prefix, "`")
                .replace(&format!(" of `{}`", self.deployment), "");
            let line = d["line"].as_u64().unwrap_or(0) as usize;
            let given = (d["file"] == "Test.cvl" && line >= first)
                .then(|| {
                    self.spec
                        .params
                        .iter()
                        .chain(&self.spec.resend)
                        .nth(line - first)
                })
                .flatten();
            said.push(match (given, d["code"].as_str()) {
                (Some(a), _) if a.line == 0 => format!("--resend {}: {message}", a.name),
                (Some(a), _) => format!(
                    "{}:{}: {message}",
                    file.as_deref().unwrap_or("--params"),
                    a.line
                ),
                (None, Some("missing-required")) => {
                    let name = message.split('`').nth(1).unwrap_or_default();
                    match &file {
                        Some(f) => format!("{message}: add `{name}=VALUE` to {f}"),
                        None => {
                            format!("{message}: give it with --params FILE (`{name}=VALUE` lines)")
                        }
                    }
                }
                (None, _) => message,
            });
        }
        if said.is_empty() {
            return Ok(ran.said());
        }
        Ok(said.join("\n"))
    }

    /// A value for each sensitive parameter supplied at deploy time: the
    /// environment's `CVL_SECRET_<APPLIANCE>_<NAME>` (as for deploying the
    /// appliance by itself), else a random one for this test only.
    fn supply_secrets(&mut self, evaluated: &BTreeMap<String, Value>) {
        for (param, value) in evaluated {
            if value.get("sensitive").and_then(Value::as_str) != Some("supplied at deploy time")
                || self.secrets.contains_key(param)
            {
                continue;
            }
            let given = cvl_planner::lower::secret_env(&self.name, param);
            let value = std::env::var(&given).unwrap_or_else(|_| random_hex());
            let env =
                cvl_planner::lower::secret_env(&self.deployment, &format!("{COMPONENT}.{param}"));
            self.sandbox.secret(env, value.clone());
            self.secrets.insert(param.clone(), value);
        }
    }

    /// The step `name` of the first boot on all-zero data disks: each one
    /// formatted and mounted, a marker left for later (`None`: none).
    fn initialize_disks(
        &mut self,
        name: &str,
        phase: &str,
        evaluated: &BTreeMap<String, Value>,
    ) -> Result<Option<guest::Initialized>> {
        let step = Instant::now();
        let disks = self.disks_initialized(self.data_disks(evaluated))?;
        self.disk_step(name, phase, step, initialized_found(&disks));
        Ok(disks)
    }

    /// A step about the data disks (`found`: `None` when there are none).
    fn disk_step(&mut self, name: &str, phase: &str, started: Instant, found: Option<Found>) {
        match found {
            None => self.skip(name, phase, "the appliance has no data disk"),
            Some(found) => {
                self.finish(name, phase, started, found);
            }
        }
    }

    /// Records a step; whether it passed.
    fn finish(&mut self, name: &str, phase: &str, started: Instant, found: Found) -> bool {
        let (outcome, message, output) = match found {
            Ok(message) => (Outcome::Passed, message, String::new()),
            Err((message, output)) => (Outcome::Failed, message, output),
        };
        self.push(Step {
            name: name.to_string(),
            phase: phase.to_string(),
            outcome,
            seconds: started.elapsed().as_secs_f64(),
            message,
            output,
        });
        outcome == Outcome::Passed
    }

    fn skip(&mut self, name: &str, phase: &str, why: &str) {
        self.push(Step {
            name: name.to_string(),
            phase: phase.to_string(),
            outcome: Outcome::Skipped,
            seconds: 0.0,
            message: why.to_string(),
            output: String::new(),
        });
    }

    fn push(&mut self, step: Step) {
        self.steps.push(step);
        let step = self.steps.last().expect("pushed");
        (self.progress)(Progress::Finished(step));
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The interface the sandbox's VAN exports (a public address, as in a
/// subscriber's VAN): the first one that is not the one the appliance
/// joins its VAN with (its `vanIF`: Firewall joins with `ethernet0` and
/// serves on `ethernet1`), else that one.
fn exported_interface(evaluated: &BTreeMap<String, Value>) -> String {
    let joins = strings(evaluated.get("vanIF"))
        .into_iter()
        .next()
        .unwrap_or_else(|| "ethernet0".to_string());
    let interfaces: Vec<&str> = evaluated
        .keys()
        .filter_map(|k| k.strip_suffix(".mac"))
        .filter(|i| !i.contains('.'))
        .collect();
    interfaces
        .iter()
        .find(|i| **i != joins)
        .map_or(joins.clone(), |i| i.to_string())
}

/// `ready after 4.8 s` in a start's detail.
fn ready_after(detail: &str) -> Option<f64> {
    let rest = &detail[detail.find("ready after ")? + "ready after ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the system's random numbers");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vans_export_is_the_interface_the_appliance_does_not_join_with() {
        let eval = |json: &str| -> BTreeMap<String, Value> { serde_json::from_str(json).unwrap() };
        let dns = eval(r#"{"vanIF": ["ethernet0"], "ethernet0.mac": null, "ethernet0.ip": null}"#);
        assert_eq!(exported_interface(&dns), "ethernet0");
        let firewall = eval(
            r#"{"vanIF": ["ethernet0"], "ethernet0.mac": null, "ethernet1.mac": null, "ethernet1.ip": null}"#,
        );
        assert_eq!(exported_interface(&firewall), "ethernet1");
    }

    #[test]
    fn ready_time_is_read_from_a_start() {
        assert_eq!(
            ready_after("new: started (pid 27573, tcg, ready after 4.8 s)"),
            Some(4.8)
        );
        assert_eq!(ready_after("already running"), None);
    }

    #[test]
    fn a_folder_names_its_one_cvl_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = appliance_file(dir.path()).unwrap_err();
        assert!(e.to_string().contains("holds no CVL file"), "{e}");
        std::fs::write(dir.path().join("DNS.cvl"), "").unwrap();
        assert_eq!(
            appliance_file(dir.path()).unwrap(),
            dir.path().join("DNS.cvl")
        );
        std::fs::write(dir.path().join("Other.cvl"), "").unwrap();
        let e = appliance_file(dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .contains("holds 2 CVL files (DNS.cvl, Other.cvl)"),
            "{e}"
        );
    }
}
