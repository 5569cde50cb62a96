//! Properties of the pure planner, on random deployments (no analysis, no
//! host): allocation is stable and unique, exhaustion is a clear error,
//! and executing a plan's actions in any order its graph allows, recording
//! what each did, yields the desired state; a second plan then is empty.

use std::collections::{BTreeMap, BTreeSet};

use cvl_planner::model::*;
use cvl_planner::plan::ActionKind;
use cvl_planner::{alloc, allocate, allocate_pinned, plan, record, AllocError, Options, Pin};
use proptest::prelude::*;

fn host(name: &str, memory_mib: u64, max_vms: u32) -> Host {
    Host {
        name: name.to_string(),
        address: Some(format!("{name}.example")),
        port: 22,
        host_key: None,
        memory_mib,
        max_vms,
        uplink: None,
        ..Default::default()
    }
}

/// A deployment of `vans` VANs (the root and sub-VANs `v1`...), whose VMs
/// are named by `vms`: (van index, name). Every VM has `ethernet0` on its
/// VAN; `vm0` also `ethernet1`, exported (public).
fn topology(deployment: &str, vans: usize, vms: &[(usize, String)]) -> Topology {
    let van_path = |i: usize| {
        if i == 0 {
            ComponentPath::root()
        } else {
            ComponentPath(format!("v{i}"))
        }
    };
    let mut out = Topology {
        deployment: deployment.to_string(),
        vms: Vec::new(),
        vans: (0..vans).map(van_path).collect(),
    };
    for (van, name) in vms {
        let van = van % vans;
        let mut interfaces = vec![("ethernet0".to_string(), Attach::Van(van_path(van)))];
        if name == "vm0" {
            interfaces.push(("ethernet1".to_string(), Attach::Public));
        }
        out.vms.push(VmShape {
            path: van_path(van).join(name),
            memory_mib: 128,
            interfaces,
        });
    }
    out
}

/// Records `alloc` of `topology` as running, with a trivial spec.
fn record_running(state: &mut UtilityState, topology: &Topology, alloc: &alloc::Allocation) {
    let mut changes = Vec::new();
    for (van, n) in &alloc.vans {
        changes.push(Change::VanRecorded {
            deployment: topology.deployment.clone(),
            path: van.clone(),
            network: *n,
        });
    }
    for (path, a) in &alloc.vms {
        changes.push(Change::VmRecorded {
            deployment: topology.deployment.clone(),
            path: path.clone(),
            record: Box::new(VmRecord {
                spec: spec(1, &[], &[], "x"),
                alloc: a.clone(),
                status: Status::Running,
            }),
        });
    }
    state.apply(&changes);
}

fn spec(version: u32, provides: &[String], requires: &[String], param: &str) -> DesiredVm {
    DesiredVm {
        appliance: ApplianceRef {
            name: "A".to_string(),
            source: "http://repo/A".to_string(),
            version: Some(version),
            digest: format!("digest-{version}"),
            import_site: None,
        },
        params: BTreeMap::from([(
            "p".to_string(),
            ParamValue::Plain {
                values: vec![param.to_string()],
            },
        )]),
        provides: provides.to_vec(),
        requires: requires.to_vec(),
        memory_mib: 128,
        data_disks: Vec::new(),
        agent: true,
    }
}

fn assert_unique(state: &UtilityState, alloc: &alloc::Allocation, deployment: &str) {
    let mut macs = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let others = state
        .deployments
        .iter()
        .filter(|(d, _)| *d != deployment)
        .flat_map(|(_, d)| d.vms.values().map(|v| &v.alloc));
    for a in alloc.vms.values().chain(others) {
        for iface in a.interfaces.values() {
            assert!(macs.insert(iface.mac.clone()), "MAC {} twice", iface.mac);
            if let Some(ip) = &iface.ip {
                assert!(ips.insert(ip.clone()), "IP {ip} twice");
            }
        }
    }
}

fn names(n: usize, vans: usize, salt: usize) -> Vec<(usize, String)> {
    (0..n)
        .map(|i| ((i + salt) % vans.max(1), format!("vm{i}")))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// What exists keeps its host, MACs, IPs and networks when other VMs
    /// and VANs come and go; nothing is shared.
    #[test]
    fn allocation_is_stable_and_unique(
        n in 1usize..40, vans in 1usize..5, salt in 0usize..7,
        removed in proptest::collection::btree_set(0usize..40, 0..10),
        added in 0usize..10, more_vans in 0usize..3,
    ) {
        let hosts = vec![host("a", 1 << 20, 1000), host("b", 1 << 20, 1000)];
        let mut state = UtilityState::default();
        // Another deployment shares the pools.
        let other = topology("Other", 2, &names(5, 2, 0));
        let other_alloc = allocate(&other, &state, &hosts).unwrap();
        record_running(&mut state, &other, &other_alloc);

        let first_vms = names(n, vans, salt);
        let first = topology("D", vans, &first_vms);
        let a1 = allocate(&first, &state, &hosts).unwrap();
        assert_unique(&state, &a1, "D");
        record_running(&mut state, &first, &a1);

        let mut second_vms: Vec<(usize, String)> = first_vms
            .iter()
            .enumerate()
            .filter(|(i, _)| !removed.contains(i))
            .map(|(_, v)| v.clone())
            .collect();
        second_vms.extend((0..added).map(|i| ((i + 1) % (vans + more_vans), format!("new{i}"))));
        let second = topology("D", vans + more_vans, &second_vms);
        let a2 = allocate(&second, &state, &hosts).unwrap();
        assert_unique(&state, &a2, "D");
        for (path, before) in &a1.vms {
            if let Some(after) = a2.vms.get(path) {
                prop_assert_eq!(before, after, "{} moved", path);
            }
        }
        for (van, n) in &a1.vans {
            if let Some(m) = a2.vans.get(van) {
                prop_assert_eq!(n, m);
            }
        }
        // Allocation is a function of its inputs.
        prop_assert_eq!(&a2, &allocate(&second, &state, &hosts).unwrap());
    }
}

#[test]
fn exhaustion_names_what_ran_out_and_how_to_add_more() {
    let hosts = vec![host("a", 1 << 20, 1000)];
    let mut state = UtilityState::default();
    state.pools.networks = (7, 8);
    let err = allocate(&topology("D", 3, &names(3, 3, 0)), &state, &hosts).unwrap_err();
    assert!(matches!(err, AllocError::Networks { .. }));
    assert!(err.to_string().contains("cvl pool set networks"), "{err}");

    let state = UtilityState::default();
    let err = allocate(&topology("D", 1, &names(254, 1, 0)), &state, &hosts).unwrap_err();
    assert!(
        err.to_string()
            .contains("more interfaces than its 253 addresses"),
        "{err}"
    );

    let mut state = UtilityState::default();
    state.pools.public = ("198.19.0.1".parse().unwrap(), "198.19.0.1".parse().unwrap());
    let other = topology("Other", 1, &names(1, 1, 0));
    let a = allocate(&other, &state, &hosts).unwrap();
    record_running(&mut state, &other, &a);
    let err = allocate(&topology("D", 1, &names(1, 1, 0)), &state, &hosts).unwrap_err();
    assert!(err.to_string().contains("cvl pool set public"), "{err}");

    let small = vec![host("a", 300, 10), host("b", 200, 1)];
    let err = allocate(
        &topology("D", 1, &names(4, 1, 0)),
        &UtilityState::default(),
        &small,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no host can take vm3 (128 MiB)"), "{text}");
    assert!(
        text.contains("a has 44 MiB and 8 VM slots free, b has 72 MiB and 0 VM slots free"),
        "{text}"
    );
    assert!(text.contains("cvl host add"), "{text}");
}

#[test]
fn placement_goes_to_the_most_free_memory_then_the_fewest_vms() {
    let hosts = vec![host("a", 1024, 10), host("b", 1024, 10), host("c", 512, 10)];
    let spread = |n: usize| {
        let alloc = allocate(
            &topology("D", 1, &names(n, 1, 0)),
            &UtilityState::default(),
            &hosts,
        )
        .unwrap();
        let on: Vec<String> = alloc.vms.values().map(|a| a.host.clone()).collect();
        let count = |h: &str| on.iter().filter(|x| *x == h).count();
        (count("a"), count("b"), count("c"))
    };
    // a and b keep more free memory than c until they are down to 512 MiB.
    assert_eq!(spread(6), (3, 3, 0));
    // Then all three have 512 MiB free, and c runs the fewest.
    assert_eq!(spread(9), (4, 4, 1));
}

#[test]
fn a_drained_or_fenced_host_keeps_nothing_and_only_its_vms_move() {
    let drain = |h: &mut Host| h.draining = true;
    let fence = |h: &mut Host| h.fenced = Some("2026-12-06T21:00:00Z (by a person)".into());
    for mark in [drain, fence] {
        let mut hosts = vec![
            host("a", 4096, 10),
            host("b", 4096, 10),
            host("c", 4096, 10),
        ];
        let topo = topology("D", 1, &names(6, 1, 0));
        let mut state = UtilityState::default();
        let first = allocate(&topo, &state, &hosts).unwrap();
        record_running(&mut state, &topo, &first);
        mark(&mut hosts[2]);
        let again = allocate(&topo, &state, &hosts).unwrap();
        for (path, a) in &again.vms {
            let before = &first.vms[path];
            assert_ne!(a.host, "c", "{path} stays on host c ({:?})", hosts[2]);
            if before.host != "c" {
                assert_eq!(a, before, "{path} moved though its host is not c");
            } else {
                // Addresses and MACs travel with it.
                assert_eq!(a.interfaces, before.interfaces);
            }
        }
        assert!(first.vms.values().any(|a| a.host == "c"));
    }
}

/// A deployment `D` of two VMs recorded running on host `a`, the first of
/// `hosts` (all of them registered): its topology, the state, and where
/// allocation put them.
fn two_running_on_a(hosts: &[Host]) -> (Topology, UtilityState, alloc::Allocation) {
    let topo = topology("D", 1, &names(2, 1, 0));
    let mut state = UtilityState {
        lineage: "L".into(),
        hosts: hosts.to_vec(),
        ..Default::default()
    };
    let first = allocate(&topo, &state, &hosts[..1]).unwrap();
    record_running(&mut state, &topo, &first);
    (topo, state, first)
}

/// What `D` wants: every VM of `alloc`, its parameter set to `param`.
fn wanting(alloc: &alloc::Allocation, param: &str) -> Desired {
    Desired {
        deployment: "D".to_string(),
        vms: alloc
            .vms
            .keys()
            .map(|p| (p.clone(), spec(1, &[], &[], param)))
            .collect(),
        vans: alloc.vans.clone(),
        inputs_digest: "inputs".to_string(),
    }
}

#[test]
fn a_move_off_a_host_drained_live_is_live_unless_it_must_restart() {
    let mut hosts = vec![host("a", 4096, 10), host("b", 4096, 10)];
    let (topo, mut state, first) = two_running_on_a(&hosts);
    let desired = |param: &str| wanting(&first, param);
    // How each VM moves off `a`, drained (live or not), as planned.
    let hows = |state: &UtilityState, param: &str| -> Vec<(bool, String)> {
        let alloc = allocate(&topo, state, &state.hosts).unwrap();
        let p = plan(desired(param), alloc, state, &Options::default()).unwrap();
        p.actions
            .iter()
            .map(|a| {
                assert_eq!(a.action, ActionKind::Move, "{a:?}");
                let how = a.how.as_ref().expect("a move off a live host says how");
                (how.live, how.to_string())
            })
            .collect()
    };
    hosts[0].draining = true;
    state.hosts = hosts.clone();
    for (live, why) in hows(&state, "x") {
        assert!(!live && why.contains("drained offline"), "{why}");
    }
    hosts[0].drain_live = true;
    state.hosts = hosts.clone();
    for (live, why) in hows(&state, "x") {
        assert!(live, "{why}");
        assert_eq!(why, "live: the host is drained live");
    }
    // A parameter that changes in the same plan needs a restart.
    for (live, why) in hows(&state, "y") {
        assert!(!live && why.contains("parameters change"), "{why}");
    }
    // A stopped VM moves offline.
    let path = first.vms.keys().next().unwrap().clone();
    let mut record = state.deployments["D"].vms[&path].clone();
    record.status = Status::Stopped;
    state.apply(&[Change::VmRecorded {
        deployment: "D".into(),
        path: path.clone(),
        record: Box::new(record),
    }]);
    let hows = hows(&state, "x");
    assert!(hows
        .iter()
        .any(|(live, why)| !live && why.contains("not running")));
    // A fenced host's VMs are recovered, which says no how.
    hosts[0].fenced = Some("2026-12-07T15:00:00Z (by a person)".into());
    state.hosts = hosts;
    let alloc = allocate(&topo, &state, &state.hosts).unwrap();
    let p = plan(desired("x"), alloc, &state, &Options::default()).unwrap();
    assert!(p.actions.iter().all(|a| a.how.is_none()));
}

#[test]
fn a_person_moves_a_vm_to_a_host_of_their_choosing() {
    let mut hosts = vec![
        host("a", 4096, 10),
        host("b", 4096, 10),
        host("c", 4096, 10),
    ];
    let (topo, mut state, first) = two_running_on_a(&hosts);
    let moved = first.vms.keys().next().unwrap().clone();
    let desired = |param: &str| wanting(&first, param);
    let pinned = |to: &str, offline: bool| Options {
        pins: [(
            moved.clone(),
            Pin {
                host: to.to_string(),
                offline,
            },
        )]
        .into(),
        ..Options::default()
    };
    let planned = |state: &UtilityState, options: &Options, param: &str| {
        allocate_pinned(&topo, state, &state.hosts, &options.pinned_hosts())
            .map(|alloc| plan(desired(param), alloc, state, options).unwrap())
    };
    // Only the pinned VM moves, to the host named, live by default; the
    // other stays where it is.
    let p = planned(&state, &pinned("c", false), "x").unwrap();
    assert_eq!(p.actions.len(), 1, "{:?}", p.actions);
    let a = &p.actions[0];
    assert_eq!((a.action, &a.component), (ActionKind::Move, &moved));
    assert_eq!(a.reason, "asked (`cvl move`): from a to c");
    assert_eq!(a.from_host.as_deref(), Some("a"));
    assert_eq!(
        a.how.as_ref().unwrap().to_string(),
        "live: `cvl move` moves it running"
    );
    assert_eq!(p.allocations[&moved].host, "c");
    // --offline, or a change that needs a restart: offline, saying why.
    let how = |p: &cvl_planner::Plan| p.actions[0].how.as_ref().unwrap().to_string();
    let p = planned(&state, &pinned("c", true), "x").unwrap();
    assert_eq!(how(&p), "offline: asked offline (`cvl move --offline`)");
    let p = planned(&state, &pinned("c", false), "y").unwrap();
    assert!(how(&p).contains("parameters change"), "{}", how(&p));
    // Already there: nothing to do.
    let p = planned(&state, &pinned("a", false), "x").unwrap();
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    // A host that cannot take it: an error naming why and the fix.
    let error = |state: &UtilityState, to: &str| {
        planned(state, &pinned(to, false), "x")
            .unwrap_err()
            .to_string()
    };
    assert!(
        error(&state, "z").contains("no host is named z (the hosts: a, b, c"),
        "{}",
        error(&state, "z")
    );
    hosts[2].draining = true;
    state.hosts = hosts.clone();
    assert!(
        error(&state, "c").contains("`cvl host drain c --undo`"),
        "{}",
        error(&state, "c")
    );
    hosts[1].memory_mib = 64;
    state.hosts = hosts.clone();
    let small = error(&state, "b");
    assert!(
        small.starts_with(&format!("cannot move {moved} to b: it needs")),
        "{small}"
    );
    assert!(small.contains("b has 64 MiB"), "{small}");
    // A component the deployment lacks.
    let unknown = allocate_pinned(
        &topo,
        &state,
        &state.hosts,
        &[(ComponentPath("nope".into()), "a".to_string())].into(),
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("D has no such VM appliance"), "{unknown}");
}

#[test]
fn van_addresses_follow_the_network_number() {
    let mut state = UtilityState::default();
    state.pools.networks = (300, 310);
    let alloc = allocate(
        &topology("D", 2, &names(3, 2, 0)),
        &state,
        &[host("a", 1 << 20, 100)],
    )
    .unwrap();
    assert_eq!(alloc.vans[&ComponentPath::root()], 300);
    let root_vm = &alloc.vms[&ComponentPath("vm0".into())].interfaces["ethernet0"];
    assert_eq!(root_vm.ip.as_deref(), Some("10.1.44.1"));
    assert_eq!(root_vm.subnet.as_deref(), Some("10.1.44.0"));
    assert_eq!(alloc::subnet(300), "10.1.44.0/24");
}

/// A random deployment for the simulator: VMs `c0..cN` in one VAN, VM `i`
/// providing service `si` and requiring services of VMs before it.
#[derive(Debug, Clone)]
struct Case {
    vms: Vec<(u32, Vec<usize>, String)>, // version, requires (indices below), param
}

fn case(n: usize) -> impl Strategy<Value = Case> {
    proptest::collection::vec(
        (
            1u32..4,
            proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
            "[ab]",
        ),
        n,
    )
    .prop_map(|raw| Case {
        vms: raw
            .into_iter()
            .enumerate()
            .map(|(i, (v, reqs, p))| {
                let reqs = if i == 0 {
                    Vec::new()
                } else {
                    reqs.iter().map(|r| r.index(i)).collect()
                };
                (v, reqs, p)
            })
            .collect(),
    })
}

fn desired_of(
    case: &Case,
    keep: &dyn Fn(usize) -> bool,
    state: &UtilityState,
) -> (Desired, alloc::Allocation) {
    let kept: Vec<usize> = (0..case.vms.len()).filter(|&i| keep(i)).collect();
    let topo = Topology {
        deployment: "D".to_string(),
        vms: kept
            .iter()
            .map(|&i| VmShape {
                path: ComponentPath(format!("c{i}")),
                memory_mib: 128,
                interfaces: vec![("ethernet0".to_string(), Attach::Van(ComponentPath::root()))],
            })
            .collect(),
        vans: vec![ComponentPath::root()],
    };
    let alloc = allocate(&topo, state, &[host("a", 1 << 30, 100_000)]).unwrap();
    let vms = kept
        .iter()
        .map(|&i| {
            let (version, reqs, param) = &case.vms[i];
            let requires: Vec<String> = reqs
                .iter()
                .filter(|r| keep(**r))
                .map(|r| format!("s{r}"))
                .collect();
            (
                ComponentPath(format!("c{i}")),
                spec(*version, &[format!("s{i}")], &requires, param),
            )
        })
        .collect();
    let desired = Desired {
        deployment: "D".to_string(),
        vms,
        vans: alloc.vans.clone(),
        inputs_digest: "inputs".to_string(),
    };
    (desired, alloc)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// From a random current state to a random desired one: every order the
    /// plan's graph allows converges, and respects provides/requires.
    #[test]
    fn any_order_the_graph_allows_converges(
        before in case(12), after in case(12),
        present in proptest::collection::vec(any::<bool>(), 12),
        wanted in proptest::collection::vec(any::<bool>(), 12),
        stopped in proptest::collection::vec(any::<bool>(), 12),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 40),
    ) {
        // The current state: `before`'s VMs that are `present`, some stopped.
        let mut state = UtilityState { lineage: "L".into(), ..Default::default() };
        let (old, old_alloc) = desired_of(&before, &|i| present[i], &state);
        let first = plan(old.clone(), old_alloc.clone(), &state, &Options::default()).unwrap();
        for a in &first.actions {
            state.apply(&record::applied(&first, a));
        }
        state.apply(&record::finished(&first, None));
        for (i, s) in stopped.iter().enumerate() {
            if *s {
                state.apply(&[Change::VmStatus {
                    deployment: "D".into(),
                    path: ComponentPath(format!("c{i}")),
                    status: Status::Stopped,
                }]);
            }
        }

        let (desired, alloc) = desired_of(&after, &|i| wanted[i], &state);
        let p = plan(desired.clone(), alloc.clone(), &state, &Options::default()).unwrap();
        prop_assert_eq!(p.basis.serial, state.serial);
        // Execute in a random order the graph allows.
        let mut done: BTreeSet<ComponentPath> = BTreeSet::new();
        let mut pending: Vec<&cvl_planner::Action> = p.actions.iter().collect();
        let mut k = 0;
        let current_before = state.deployments.get("D").cloned().unwrap_or_default();
        while !pending.is_empty() {
            let ready: Vec<usize> = (0..pending.len())
                .filter(|&i| pending[i].after.iter().all(|a| done.contains(a)))
                .collect();
            prop_assert!(!ready.is_empty(), "no action is ready: {:?}", pending);
            let pick = ready[picks[k % picks.len()].index(ready.len())];
            k += 1;
            let action = pending.remove(pick);
            // Provides/requires: a start waits for the starts of its providers.
            if !action.action.is_stopping() {
                let vm = &desired.vms[&action.component];
                for other in &pending {
                    let provides = desired.vms.get(&other.component).map(|v| &v.provides);
                    let restarts = matches!(other.action, ActionKind::Start | ActionKind::Update);
                    if restarts && provides.is_some_and(|p| p.iter().any(|s| vm.requires.contains(s))) {
                        prop_assert!(false, "{} ran before its provider {}", action.component, other.component);
                    }
                }
            } else {
                // A stop waits for the stops of what requires it.
                let rec = &current_before.vms[&action.component];
                for other in &pending {
                    if other.action.is_stopping() {
                        let req = &current_before.vms[&other.component].spec.requires;
                        prop_assert!(!rec.spec.provides.iter().any(|s| req.contains(s)),
                            "{} stopped before {}, which requires it", action.component, other.component);
                    }
                }
            }
            state.apply(&record::intent(&p, action));
            state.apply(&record::applied(&p, action));
            done.insert(action.component.clone());
        }
        let current = state.deployments.get("D").cloned();
        state.apply(&record::finished(&p, current.as_ref()));
        // The state is the desired state, everything running.
        let now = state.deployments.get("D").cloned().unwrap_or_default();
        let want: BTreeMap<_, _> = desired.vms.iter().map(|(p, v)| (p.clone(), v.clone())).collect();
        let have: BTreeMap<_, _> = now.vms.iter().map(|(p, r)| (p.clone(), r.spec.clone())).collect();
        prop_assert_eq!(want, have);
        prop_assert!(now.vms.values().all(|r| r.status == Status::Running));
        if !desired.vms.is_empty() {
            prop_assert_eq!(&now.vans, &desired.vans);
        }
        // And a second plan has nothing to do.
        let (again, again_alloc) = desired_of(&after, &|i| wanted[i], &state);
        let second = plan(again.clone(), again_alloc.clone(), &state, &Options::default()).unwrap();
        prop_assert!(second.actions.is_empty(), "{:?}", second.actions);
    }
}

#[test]
fn a_saved_plan_is_stale_once_the_state_or_inputs_change() {
    let case = Case {
        vms: vec![(1, vec![], "a".into())],
    };
    let mut state = UtilityState {
        lineage: "L".into(),
        ..Default::default()
    };
    let (desired, alloc) = desired_of(&case, &|_| true, &state);
    let p = plan(desired.clone(), alloc.clone(), &state, &Options::default()).unwrap();
    assert!(p.check_fresh(&p.basis).is_ok());
    state.apply(&[]);
    let now = cvl_planner::plan::Basis {
        serial: state.serial,
        ..p.basis.clone()
    };
    let err = p.check_fresh(&now).unwrap_err().to_string();
    assert!(
        err.contains("the state changed since (serial 0 then, 1 now)"),
        "{err}"
    );
    let other = cvl_planner::plan::Basis {
        inputs_digest: "x".into(),
        ..p.basis.clone()
    };
    let err = p.check_fresh(&other).unwrap_err().to_string();
    assert!(
        err.contains("the CVL files, their imports or the secrets changed"),
        "{err}"
    );
}

#[test]
fn target_keeps_a_subtree_and_what_it_waits_for() {
    // c2 requires c1 requires c0.
    let case = Case {
        vms: vec![
            (1, vec![], "a".into()),
            (1, vec![0], "a".into()),
            (1, vec![1], "a".into()),
            (1, vec![], "a".into()),
        ],
    };
    let state = UtilityState::default();
    let (desired, alloc) = desired_of(&case, &|_| true, &state);
    let options = Options {
        target: Some(ComponentPath("c2".into())),
        ..Options::default()
    };
    let p = plan(desired.clone(), alloc.clone(), &state, &options).unwrap();
    let planned: Vec<&str> = p.actions.iter().map(|a| a.component.0.as_str()).collect();
    assert_eq!(planned, ["c0", "c1", "c2"]);
    let options = Options {
        target: Some(ComponentPath("zz".into())),
        ..Options::default()
    };
    let err = plan(desired.clone(), alloc.clone(), &state, &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--target `zz` names no component"), "{err}");
}

#[test]
fn stop_takes_what_requires_the_component_first() {
    let case = Case {
        vms: vec![
            (1, vec![], "a".into()),
            (1, vec![0], "a".into()),
            (1, vec![1], "a".into()),
            (1, vec![], "a".into()),
        ],
    };
    let mut state = UtilityState::default();
    let (desired, alloc) = desired_of(&case, &|_| true, &state);
    let p = plan(desired.clone(), alloc.clone(), &state, &Options::default()).unwrap();
    for a in &p.actions {
        state.apply(&record::applied(&p, a));
    }
    let stop = cvl_planner::plan_stop(&state, "D", Some(&ComponentPath("c1".into()))).unwrap();
    let planned: Vec<(&str, &str)> = stop
        .actions
        .iter()
        .map(|a| (a.component.0.as_str(), a.reason.as_str()))
        .collect();
    assert_eq!(
        planned,
        [
            ("c2", "it requires c1, which stops"),
            ("c1", "stop requested")
        ]
    );
    let err = cvl_planner::plan_stop(&state, "Nope", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no deployment named `Nope` (it runs: D)"),
        "{err}"
    );
}
