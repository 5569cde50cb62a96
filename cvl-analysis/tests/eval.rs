//! Evaluation semantics on small in-memory workspaces: override order,
//! laziness, nested maps, and the start order of a deployed VAN.

use cvl_analysis::eval::{evaluate_with, Allocations};
use cvl_analysis::{evaluated_params, Def, RootDatabase};

fn values(text: &str, object: &str) -> Vec<(String, Option<Vec<String>>)> {
    let db = RootDatabase::default();
    let file = db.add_file("t.cvl".into(), text.into());
    let def = Def {
        file,
        name: object.into(),
    };
    evaluated_params(&db, &def)
        .into_iter()
        .map(|p| (p.path, p.value))
        .collect()
}

fn value(text: &str, object: &str, path: &str) -> Option<Vec<String>> {
    values(text, object)
        .into_iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("no {path}"))
        .1
}

const VM: &str = "V extends VMAppliance { var a, b, m; vm = \"v.vmx\"; a = \"parent\"; b = a; }\n";

#[test]
fn derived_assignments_run_after_parents_and_references_are_lazy() {
    let text = format!("{VM}W extends V {{ a = \"derived\"; }}\n");
    assert_eq!(value(&text, "W", "a"), Some(vec!["derived".into()]));
    // `b = a` is in V, but sees W's final `a`.
    assert_eq!(value(&text, "W", "b"), Some(vec!["derived".into()]));
    assert_eq!(value(&text, "V", "b"), Some(vec!["parent".into()]));
}

#[test]
fn a_containing_van_overrides_its_components_defaults() {
    let text = format!(
        "{VM}N extends VANAppliance {{ var d; V x; x.a = d; vanIF = \"x.ethernet0\"; }}\nM extends N {{ d = \"late\"; }}\n"
    );
    assert_eq!(value(&text, "M", "x.a"), Some(vec!["late".into()]));
    assert_eq!(
        value(&text, "M", "x.b"),
        Some(vec!["late".into()]),
        "x's own b = a sees the VAN's value"
    );
}

#[test]
fn maps_nest_with_escaping_and_lists_concatenate() {
    let text = format!(
        "{VM}X extends V {{ var l; l = \"1\", a, \"2\"; m = {{ outer => {{ a => \"x y\", \"k=v\" => b }}, z => \"\" }}; }}\n"
    );
    assert_eq!(
        value(&text, "X", "l"),
        Some(vec!["1".into(), "parent".into(), "2".into()])
    );
    assert_eq!(
        value(&text, "X", "m"),
        Some(vec!["outer=a%3Dx%2520y%26k%253Dv%3Dparent&z=".into()])
    );
}

#[test]
fn allocated_values_are_unknown_until_allocated() {
    let text = format!("{VM}X extends V {{ m = {{ ip => ethernet0.ip }}; }}\n");
    assert_eq!(value(&text, "X", "m"), None);
    assert_eq!(value(&text, "X", "ethernet0.ip"), None);
    let db = RootDatabase::default();
    let file = db.add_file("t.cvl".into(), text);
    let def = Def {
        file,
        name: "X".into(),
    };
    let mut allocations = Allocations::default();
    allocations
        .values
        .insert("ethernet0.ip".into(), "10.0.0.7".into());
    let ev = evaluate_with(&db, &def, &allocations);
    let m = ev.slot("m").unwrap();
    assert_eq!(
        m.value.strings(),
        Some(vec!["ip=10%2E0%2E0%2E7".to_string()])
    );
}

#[test]
fn start_order_follows_provides_and_requires() {
    // The suite's dependencies (paper Figure 4).
    let text = "\
F extends VMAppliance { vm = \"f\"; }
H extends VMAppliance { vm = \"h\"; provides = \"DHCP\"; }
D extends VMAppliance { vm = \"d\"; requires = \"DHCP\"; provides = \"DNS\"; }
L extends VMAppliance { vm = \"l\"; requires = \"DHCP\", \"DNS\"; provides = \"LDAP\"; }
M extends VMAppliance { vm = \"m\"; requires = \"DHCP\", \"DNS\", \"LDAP\"; }
P extends VMAppliance { vm = \"p\"; requires = \"DHCP\", \"DNS\"; }
G extends VANAppliance { F f; H h; D d; L l; M m; P p; vanIF = \"f.ethernet0\"; }
";
    let db = RootDatabase::default();
    let file = db.add_file("t.cvl".into(), text.into());
    let def = Def {
        file,
        name: "G".into(),
    };
    let order = cvl_analysis::deploy::start_order(&db, &def);
    let ev = cvl_analysis::eval::evaluate(&db, &def);
    let layers: Vec<Vec<String>> = order
        .layers
        .iter()
        .map(|layer| {
            layer
                .iter()
                .map(|&i| ev.instances[i].path.join("."))
                .collect()
        })
        .collect();
    assert_eq!(
        layers,
        [vec!["f", "h"], vec!["d"], vec!["l", "p"], vec!["m"]]
    );
    assert!(order.unsatisfied.is_empty() && order.cycle.is_none());
}
