//! `cargo bench -p cvl-planner`: plan time for 1,000, 10,000 and 100,000
//! VM appliances in VANs of 100, against a state where the same deployment
//! is applied and 1% of the VMs then changed a parameter. Printed as
//! figures (median of several runs), not asserted.
//!
//! - "planner": allocate + diff + order, from data (analysis excluded).
//! - "with analysis": from CVL text: parse, evaluate, lower, allocate,
//!   evaluate with the allocations, diff (VM descriptions are not read:
//!   every appliance here has one program).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cvl_analysis::{Def, RootDatabase, SourceFile};
use cvl_planner::lower::{self, ImportFacts, Program, Programs};
use cvl_planner::model::*;
use cvl_planner::{allocate, plan, record, Options};

const VAN_SIZE: usize = 100;

fn hosts(n: usize) -> Vec<Host> {
    (0..n.div_ceil(100))
        .map(|i| Host {
            name: format!("h{i:04}"),
            address: Some(format!("h{i}")),
            port: 22,
            host_key: None,
            memory_mib: 1 << 20,
            max_vms: 200,
            uplink: None,
            ..Default::default()
        })
        .collect()
}

/// One program for every VM.
struct OneProgram;

impl Programs for OneProgram {
    fn program(
        &mut self,
        _: SourceFile,
        _: &str,
        _: Option<&ImportFacts>,
        _: &[String],
    ) -> Result<Program, String> {
        Ok(Program {
            source: "bench".into(),
            digest: "d".into(),
            memory_mib: 128,
            agent: true,
        })
    }
}

/// `Top` with regions of up to 100 VANs of 100 VMs each. Every VAN's
/// gateway `c0` exports its `ethernet1` to its region's network, every
/// region's router exports its `ethernet1` to `Top`'s; each VM's `x` is set
/// by its VAN, the first `changed` VMs' to another value.
fn cvl(n: usize, changed: usize) -> String {
    let vans = n / VAN_SIZE;
    let regions = vans.div_ceil(100);
    let mut out = String::from(
        "Vm extends VMAppliance { var x, peer; vm = \"vm.toml\"; }\n\
         Gw extends Vm { Interface ethernet1; }\n\
         Van extends VANAppliance {\n  var tag;\n  Gw c0;\n",
    );
    let names: Vec<String> = (1..VAN_SIZE).map(|i| format!("c{i}")).collect();
    out.push_str(&format!("  Vm {};\n  c0.x = tag;\n", names.join(", ")));
    for name in &names {
        out.push_str(&format!(
            "  {name}.x = tag;\n  {name}.peer = c0.ethernet0.ip;\n"
        ));
    }
    out.push_str("  vanIF = \"c0.ethernet1\";\n}\n");
    for r in 0..regions {
        let count = (vans - r * 100).min(100);
        let members: Vec<String> = (0..count).map(|i| format!("v{i}")).collect();
        out.push_str(&format!(
            "Region{r} extends VANAppliance {{\n  Gw r;\n  Van {};\n",
            members.join(", ")
        ));
        for m in &members {
            out.push_str(&format!("  {m}.tag = \"same\";\n"));
        }
        for i in (0..changed).filter(|i| i / VAN_SIZE / 100 == r) {
            let v = i / VAN_SIZE % 100;
            out.push_str(&format!("  v{v}.c{}.x = \"changed\";\n", i % VAN_SIZE));
        }
        out.push_str("  vanIF = \"r.ethernet1\";\n}\n");
    }
    out.push_str("Top extends VANAppliance {\n");
    for r in 0..regions {
        out.push_str(&format!("  Region{r} g{r};\n"));
    }
    out.push_str("  vanIF = \"g0.r.ethernet1\";\n}\n");
    out
}

fn with_analysis(text: &str, state: &UtilityState, hosts: &[Host]) -> cvl_planner::Plan {
    let db = RootDatabase::default();
    let file = db.add_file("Top.cvl".into(), text.to_string());
    let def = Def {
        file,
        name: "Top".into(),
    };
    let lowered = lower::topology(&db, &def, &mut OneProgram).unwrap();
    let alloc = allocate(&lowered.topology, state, hosts).unwrap();
    let (desired, _) = lower::desired(&db, &lowered, &alloc, &BTreeMap::new(), b"key");
    plan(desired, alloc, state, &Options::default()).unwrap()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks; nothing to list
    }
    println!(
        "{:>8} {:>12} {:>14} {:>14} {:>9}",
        "VMs", "actions", "planner", "with analysis", "runs"
    );
    // CVL_BENCH_SIZES=10000 runs one size (for profiling).
    let sizes: Vec<usize> = std::env::var("CVL_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000]);
    for n in sizes {
        let hosts = hosts(n);
        // The applied state: the deployment as first planned.
        let original = cvl(n, 0);
        let mut state = UtilityState {
            lineage: "bench".into(),
            ..Default::default()
        };
        let first = with_analysis(&original, &state, &hosts);
        for a in &first.actions {
            state.apply(&record::applied(&first, a));
        }
        state.apply(&record::finished(&first, None));

        // 1% changed, lowered once, for the planner-only figure.
        let changed_text = cvl(n, n / 100);
        let db = RootDatabase::default();
        let file = db.add_file("Top.cvl".into(), changed_text.clone());
        let def = Def {
            file,
            name: "Top".into(),
        };
        let lowered = lower::topology(&db, &def, &mut OneProgram).unwrap();
        let alloc = allocate(&lowered.topology, &state, &hosts).unwrap();
        let (desired, _) = lower::desired(&db, &lowered, &alloc, &BTreeMap::new(), b"key");

        let runs = if n >= 100_000 { 3 } else { 7 };
        let mut planner = Vec::new();
        let mut full = Vec::new();
        let mut actions = 0;
        for _ in 0..runs {
            let desired = desired.clone(); // the CLI owns its desired state
            let t = Instant::now();
            let alloc = allocate(&lowered.topology, &state, &hosts).unwrap();
            let p = plan(desired, alloc, &state, &Options::default()).unwrap();
            planner.push(t.elapsed());
            actions = p.actions.len();
            let t = Instant::now();
            let p = with_analysis(&changed_text, &state, &hosts);
            full.push(t.elapsed());
            assert_eq!(p.actions.len(), actions);
        }
        assert_eq!(actions, n / 100, "1% of the VMs changed");
        let vms = first.desired.len();
        println!(
            "{:>8} {:>12} {:>11.1} ms {:>11.1} ms {:>9}",
            vms,
            actions,
            median(planner).as_secs_f64() * 1e3,
            median(full).as_secs_f64() * 1e3,
            runs
        );
    }
}
