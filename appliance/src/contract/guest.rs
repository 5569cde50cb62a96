//! What a test sees inside the guest, through its agent (`cvl exec` in the
//! sandbox): the parameters it read, its data disks (a file system, where
//! they are mounted, the marks a test leaves on them), the appliance's own
//! checks, and what tells a reload from a restart (the boot id, the count
//! of reloads).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use super::{random_hex, strings, Found, Test, CHECKS_DIR, COMPONENT};
use crate::params;
use crate::report::{Outcome, Step};
use crate::sandbox::Ran;

impl Test<'_> {
    /// `argv` in the guest (through its agent), within `timeout` seconds.
    pub(super) fn exec(&self, argv: &[&str], timeout: u64) -> Result<Ran> {
        let timeout = format!("{timeout}s");
        let mut args = vec!["exec", "Test.cvl", COMPONENT, "--timeout", &timeout, "--"];
        args.extend(argv);
        self.sandbox.cvl(&args)
    }

    /// A shell script in the guest: its standard output, or why not.
    pub(super) fn sh(&self, script: &str) -> Result<std::result::Result<String, String>> {
        let ran = self.exec(&["/bin/sh", "-c", script], 30)?;
        Ok(if ran.ok() {
            Ok(ran.stdout)
        } else {
            Err(format!("{}{}", ran.stdout, ran.said()))
        })
    }

    pub(super) fn parameters(&self, evaluated: &BTreeMap<String, Value>) -> Result<Found> {
        // The file holds the sensitive values: read into memory, compared,
        // never shown.
        Ok(match self.sh("cat /run/cvl/params")? {
            Err(why) => Err(("cannot read /run/cvl/params".to_string(), why)),
            Ok(guest) => {
                let differences = params::compare(evaluated, &self.secrets, &guest);
                if differences.is_empty() {
                    Ok(format!(
                        "/run/cvl/params holds the {} evaluated parameters",
                        guest.lines().filter(|l| !l.is_empty()).count()
                    ))
                } else {
                    Err((
                        format!("{} parameter(s) differ", differences.len()),
                        differences.join("\n"),
                    ))
                }
            }
        })
    }

    /// The guest's devices of the appliance's data disks, in order.
    pub(super) fn data_disks(&self, evaluated: &BTreeMap<String, Value>) -> Vec<String> {
        (0..strings(evaluated.get("datadisks")).len())
            .filter_map(|i| char::from_u32('b' as u32 + i as u32))
            .map(|c| format!("vd{c}"))
            .collect()
    }

    /// Each data disk has a file system and is mounted; a marker is left
    /// on it for the second boot. `None`: the appliance has none.
    pub(super) fn disks_initialized(&self, devices: Vec<String>) -> Result<Option<Initialized>> {
        if devices.is_empty() {
            return Ok(None);
        }
        let mut disks = Vec::new();
        for device in devices {
            let marker = random_hex();
            let script = format!(
                "uuid=$(blkid -s UUID -o value /dev/{device}) || exit 3; \
                 dir=$(awk '$1 == \"/dev/{device}\" {{ print $2; exit }}' /proc/mounts); \
                 [ -n \"$dir\" ] || {{ echo \"$uuid\"; exit 4; }}; \
                 echo {marker} > \"$dir/.cvl-test\" && sync && echo \"$uuid $dir\""
            );
            let out = self.exec(&["/bin/sh", "-c", &script], 30)?;
            let disk =
                match out.code {
                    0 => {
                        let mut words = out.stdout.split_whitespace();
                        Disk {
                            device: device.clone(),
                            uuid: words.next().unwrap_or_default().to_string(),
                            mount: words.next().unwrap_or_default().to_string(),
                            marker,
                        }
                    }
                    3 => return Ok(Some(Err((
                        format!("/dev/{device} has no file system after the first boot"),
                        "the guest kit formats an all-zero data disk that /etc/cvl/datadisks names"
                            .to_string(),
                    )))),
                    4 => {
                        return Ok(Some(Err((
                            format!("/dev/{device} is not mounted after the first boot"),
                            "name it in /etc/cvl/datadisks (`vdb /data`)".to_string(),
                        ))))
                    }
                    _ => {
                        return Ok(Some(Err((
                            format!("cannot look at /dev/{device}"),
                            format!("{}{}", out.stdout, out.said()),
                        ))))
                    }
                };
            disks.push(disk);
        }
        Ok(Some(Ok(disks)))
    }

    /// After the second boot: each disk the same file system, mounted, its
    /// marker there.
    /// `None`: the appliance has no data disk.
    pub(super) fn disks_kept(&self, initialized: Option<&Initialized>) -> Result<Option<Found>> {
        let disks = match initialized {
            None => return Ok(None),
            Some(Err(_)) => {
                return Ok(Some(Err((
                    "not compared: the first boot left no data disk to compare with".to_string(),
                    String::new(),
                ))))
            }
            Some(Ok(disks)) => disks,
        };
        let mut wrong = Vec::new();
        for d in disks {
            let script = format!(
                "blkid -s UUID -o value /dev/{dev}; cat \"{mount}/.cvl-test\"",
                dev = d.device,
                mount = d.mount
            );
            let out = self.exec(&["/bin/sh", "-c", &script], 30)?;
            let mut lines = out.stdout.lines();
            let (uuid, marker) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
            if uuid != d.uuid {
                wrong.push(format!(
                    "/dev/{}: its file system was made again ({} before, `{uuid}` now)",
                    d.device, d.uuid
                ));
            } else if marker != d.marker {
                wrong.push(format!(
                    "/dev/{}: what the first boot left in {} is gone",
                    d.device, d.mount
                ));
            }
        }
        Ok(Some(if wrong.is_empty() {
            Ok(format!(
                "{} data disk(s) mounted as the first boot left them",
                disks.len()
            ))
        } else {
            Err((
                "a data disk is not as the first boot left it".to_string(),
                wrong.join("\n"),
            ))
        }))
    }

    /// The appliance's own checks, each a step of `phase`.
    pub(super) fn checks(&mut self, phase: &str) -> Result<()> {
        let step = Instant::now();
        let listed = self.sh(&format!(
            "for f in {CHECKS_DIR}/*; do [ -f \"$f\" ] && [ -x \"$f\" ] && echo \"${{f##*/}}\"; done; true"
        ))?;
        let names: Vec<String> = match listed {
            Ok(out) => out.lines().map(str::to_string).collect(),
            Err(why) => {
                self.finish(
                    "list",
                    phase,
                    step,
                    Err((format!("cannot list {CHECKS_DIR}"), why)),
                );
                return Ok(());
            }
        };
        if names.is_empty() {
            self.push(Step {
                name: "none".to_string(),
                phase: phase.to_string(),
                outcome: Outcome::Skipped,
                seconds: 0.0,
                message: format!("the appliance has no checks in {CHECKS_DIR}"),
                output: String::new(),
            });
        }
        for check in names {
            let step = Instant::now();
            let path = format!("{CHECKS_DIR}/{check}");
            let ran = self.exec(&[&path], self.spec.check_timeout)?;
            let output = format!("{}{}", ran.stdout, ran.stderr);
            // Its output kept whether it passed or not (JSON, JUnit's
            // system-out); its first line is a pass's message.
            let (outcome, message) = if ran.ok() {
                let first = output.lines().next().unwrap_or("passed").to_string();
                (Outcome::Passed, first)
            } else if ran.stderr.contains("gave up after") {
                let why = format!("still ran after {} s", self.spec.check_timeout);
                (Outcome::Failed, why)
            } else {
                (Outcome::Failed, format!("exited with {}", ran.code))
            };
            self.push(Step {
                name: check,
                phase: phase.to_string(),
                outcome,
                seconds: step.elapsed().as_secs_f64(),
                message,
                output,
            });
        }
        Ok(())
    }

    /// [`Self::guest_state`] once the guest answers, waiting at most
    /// `wait` (an empty boot id: it did not).
    pub(super) fn guest_state_within(&self, wait: Duration) -> Result<(String, u64)> {
        let deadline = Instant::now() + wait;
        loop {
            let state = self.guest_state()?;
            if !state.0.is_empty() || Instant::now() >= deadline {
                return Ok(state);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// What tells a restart from a reload: the guest's boot id, and how
    /// many reloads it ran.
    pub(super) fn guest_state(&self) -> Result<(String, u64)> {
        let out = self.sh(
            "cat /proc/sys/kernel/random/boot_id; cat /run/cvl/reloads 2>/dev/null || echo 0",
        )?;
        let out = out.unwrap_or_default();
        let mut lines = out.lines();
        let boot = lines.next().unwrap_or_default().to_string();
        let reloads = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        Ok((boot, reloads))
    }
}

/// A file the candidate leaves on each data disk after the update.
pub(super) const CANDIDATE_MARK: &str = ".cvl-test-candidate";

pub(super) fn mark_candidate(disks: &[Disk]) -> String {
    disks
        .iter()
        .map(|d| format!("echo candidate > \"{}/{CANDIDATE_MARK}\"", d.mount))
        .chain(["sync".to_string()])
        .collect::<Vec<_>>()
        .join(" && ")
}

/// The data disks as the first boot left them, or why not.
pub(super) type Initialized = std::result::Result<Vec<Disk>, (String, String)>;

/// What the first boot's data disks step says.
pub(super) fn initialized_found(initialized: &Option<Initialized>) -> Option<Found> {
    initialized.as_ref().map(|i| match i {
        Ok(_) => Ok("each data disk was formatted and mounted on the first boot".to_string()),
        Err(e) => Err(e.clone()),
    })
}

/// A data disk as the first boot left it.
#[derive(Debug, Clone)]
pub(super) struct Disk {
    pub(super) device: String,
    pub(super) uuid: String,
    pub(super) mount: String,
    pub(super) marker: String,
}
