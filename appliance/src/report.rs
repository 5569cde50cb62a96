//! What an appliance test found: each step of the guest contract and each
//! of the appliance's own checks, passed, failed or skipped, with how long
//! it took and what it said; rendered for people, as JSON, or as JUnit XML
//! (for CI systems that show test results).

use std::io::Cursor;
use std::path::PathBuf;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    /// Not run: a step it needs failed, or the appliance lacks what it
    /// checks (no data disk).
    Skipped,
}

/// One step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Stable, for scripts: `ready`, `parameters`, `check names`, ...
    pub name: String,
    /// The phase it belongs to: `contract`, `checks`, `after resend`, ...
    pub phase: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// One sentence: what was found.
    pub message: String,
    /// What it printed (a check's output, the end of a console).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// The whole test of one appliance.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub appliance: String,
    pub steps: Vec<Step>,
    pub seconds: f64,
    /// Each boot's console, kept.
    pub consoles: Vec<PathBuf>,
}

impl Report {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.steps.iter().filter(|s| s.outcome == outcome).count()
    }

    pub fn passed(&self) -> bool {
        self.count(Outcome::Failed) == 0
    }

    /// The report for people: a line a step (failures with what they said),
    /// then the totals.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            out.push_str(&step_line(step));
        }
        out.push_str(&self.summary());
        out
    }

    /// The last line: the verdict and the totals.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "\n{} {}: {} passed, {} failed, {} skipped in {:.1} s\n",
            if self.passed() { "ok" } else { "FAILED" },
            self.appliance,
            self.count(Outcome::Passed),
            self.count(Outcome::Failed),
            self.count(Outcome::Skipped),
            self.seconds
        );
        if !self.consoles.is_empty() {
            out.push_str("consoles kept: ");
            let shown: Vec<String> = self
                .consoles
                .iter()
                .map(|c| c.display().to_string())
                .collect();
            out.push_str(&shown.join(", "));
            out.push('\n');
        }
        out
    }

    /// JUnit XML: one suite per phase, one case per step.
    pub fn junit(&self) -> String {
        let mut w = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
        let mut phases: Vec<&str> = Vec::new();
        for step in &self.steps {
            if !phases.contains(&step.phase.as_str()) {
                phases.push(&step.phase);
            }
        }
        let count = |steps: &[&Step], o: Outcome| steps.iter().filter(|s| s.outcome == o).count();
        // Writing into memory cannot fail.
        let put = |w: &mut Writer<Cursor<Vec<u8>>>, e: Event| w.write_event(e).expect("memory");
        put(
            &mut w,
            Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)),
        );
        let mut suites = BytesStart::new("testsuites");
        suites.push_attribute(("name", format!("cvl test {}", self.appliance).as_str()));
        suites.push_attribute(("tests", self.steps.len().to_string().as_str()));
        suites.push_attribute(("failures", self.count(Outcome::Failed).to_string().as_str()));
        suites.push_attribute(("skipped", self.count(Outcome::Skipped).to_string().as_str()));
        suites.push_attribute(("time", format!("{:.3}", self.seconds).as_str()));
        put(&mut w, Event::Start(suites));
        for phase in phases {
            let steps: Vec<&Step> = self.steps.iter().filter(|s| s.phase == phase).collect();
            let time: f64 = steps.iter().map(|s| s.seconds).sum();
            let mut suite = BytesStart::new("testsuite");
            suite.push_attribute(("name", format!("{}.{phase}", self.appliance).as_str()));
            suite.push_attribute(("tests", steps.len().to_string().as_str()));
            suite.push_attribute((
                "failures",
                count(&steps, Outcome::Failed).to_string().as_str(),
            ));
            suite.push_attribute(("errors", "0"));
            suite.push_attribute((
                "skipped",
                count(&steps, Outcome::Skipped).to_string().as_str(),
            ));
            suite.push_attribute(("time", format!("{time:.3}").as_str()));
            put(&mut w, Event::Start(suite));
            for step in steps {
                let mut case = BytesStart::new("testcase");
                case.push_attribute(("classname", format!("{}.{phase}", self.appliance).as_str()));
                case.push_attribute(("name", step.name.as_str()));
                case.push_attribute(("time", format!("{:.3}", step.seconds).as_str()));
                put(&mut w, Event::Start(case));
                match step.outcome {
                    Outcome::Passed => {}
                    Outcome::Failed => {
                        let mut failure = BytesStart::new("failure");
                        failure.push_attribute(("message", xml_text(&step.message).as_str()));
                        put(&mut w, Event::Start(failure));
                        put(&mut w, Event::Text(BytesText::new(&xml_text(&step.output))));
                        put(&mut w, Event::End(BytesEnd::new("failure")));
                    }
                    Outcome::Skipped => {
                        let mut skipped = BytesStart::new("skipped");
                        skipped.push_attribute(("message", xml_text(&step.message).as_str()));
                        put(&mut w, Event::Empty(skipped));
                    }
                }
                let said = match step.outcome {
                    Outcome::Passed if step.output.is_empty() => step.message.clone(),
                    Outcome::Passed => format!("{}\n{}", step.message, step.output),
                    _ => String::new(),
                };
                if !said.is_empty() {
                    put(&mut w, Event::Start(BytesStart::new("system-out")));
                    put(&mut w, Event::Text(BytesText::new(&xml_text(&said))));
                    put(&mut w, Event::End(BytesEnd::new("system-out")));
                }
                put(&mut w, Event::End(BytesEnd::new("testcase")));
            }
            put(&mut w, Event::End(BytesEnd::new("testsuite")));
        }
        put(&mut w, Event::End(BytesEnd::new("testsuites")));
        let mut xml = String::from_utf8(w.into_inner().into_inner()).expect("UTF-8 in, UTF-8 out");
        xml.push('\n');
        xml
    }
}

/// A step's line for people (with its output, indented, when it failed).
pub fn step_line(step: &Step) -> String {
    let mut out = format!(
        "{:<5} {:<36} {:>6.1} s  {}\n",
        match step.outcome {
            Outcome::Passed => "ok",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "skip",
        },
        format!("{}: {}", step.phase, step.name),
        step.seconds,
        step.message
    );
    if step.outcome == Outcome::Failed && !step.output.is_empty() {
        for line in step.output.trim_end().lines() {
            out.push_str("      ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Text XML 1.0 can hold: what a guest printed may have control bytes.
fn xml_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let step = |name: &str, phase: &str, outcome, message: &str, output: &str| Step {
            name: name.to_string(),
            phase: phase.to_string(),
            outcome,
            seconds: 1.25,
            message: message.to_string(),
            output: output.to_string(),
        };
        Report {
            appliance: "DNS".to_string(),
            steps: vec![
                step(
                    "ready",
                    "contract",
                    Outcome::Passed,
                    "ready after 4.8 s",
                    "",
                ),
                step(
                    "names",
                    "checks",
                    Outcome::Failed,
                    "exited with 1",
                    "www.acme.org should be <10.0.0.5> & \"x\"\u{1b}[0m",
                ),
                step(
                    "data disk kept",
                    "contract",
                    Outcome::Skipped,
                    "no data disk",
                    "",
                ),
            ],
            seconds: 3.75,
            consoles: vec![],
        }
    }

    #[test]
    fn junit_counts_escapes_and_drops_control_bytes() {
        let xml = report().junit();
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn people_see_failures_with_their_output() {
        let text = report().human();
        assert!(text.contains("FAIL  checks: names"), "{text}");
        assert!(text.contains("      www.acme.org should be"), "{text}");
        assert!(
            text.contains("FAILED DNS: 1 passed, 1 failed, 1 skipped"),
            "{text}"
        );
    }
}
