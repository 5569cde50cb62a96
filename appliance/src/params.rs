//! The parameters an appliance test gives the appliance (`cvl test
//! --params FILE`): `NAME=VALUE` lines, or a small CVL file whose one
//! object extends the appliance and assigns them; and the wire format
//! (the reference's §9), to compare what the guest received with what
//! the appliance evaluated to.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cvl_analysis::eval::escape;
use cvl_analysis::params_file;
use cvl_syntax::ast::{self, AstNode};

/// One parameter given: `name` (dotted below the appliance: `domain`,
/// `ethernet0.defaultroute`) and its value as CVL's right-hand side text
/// (`"acme.org"`, `"a", "b"`, `{ name => "www", ip => "10.0.0.5" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub value: String,
    /// Its line in the parameters file (0: given on the command line).
    pub line: usize,
}

/// Reads a parameters file: CVL when it ends in `.cvl`, else
/// `NAME=VALUE` lines.
pub fn read(path: &Path) -> Result<Vec<Assignment>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the parameters file {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "cvl") {
        from_cvl(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
    } else {
        from_lines(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
    }
}

/// `NAME=VALUE` lines (blank lines and `#` comments skipped), as
/// [`cvl_analysis::params_file`] reads them for `cvl check` and the
/// language server. Errors start with the line's number.
pub fn from_lines(text: &str) -> Result<Vec<Assignment>> {
    let file = params_file::parse(text);
    if let Some((range, why)) = file.errors.first() {
        bail!("{}: {why}", line_of(text, range.start().into()));
    }
    Ok(file
        .assignments()
        .map(|(line, value)| Assignment {
            name: line.name.clone(),
            value: value.to_string(),
            line: line.line,
        })
        .collect())
}

/// A CVL file with one object (extending the appliance) whose body only
/// assigns: `Test extends DNS { domain = "acme.org"; }`.
pub fn from_cvl(text: &str) -> Result<Vec<Assignment>> {
    let parse = cvl_syntax::parse(text);
    if let Some(error) = parse.errors().first() {
        bail!(
            "{}: {} (the parameters file is CVL: one object that extends the appliance and assigns its parameters)",
            line_of(text, error.range.start().into()),
            error.message
        );
    }
    let file = parse.tree();
    let objects: Vec<ast::Object> = file.objects().collect();
    let [object] = objects.as_slice() else {
        bail!(
            "1: a parameters file holds one object that extends the appliance (`Test extends DNS {{ domain = \"acme.org\"; }}`); this one holds {}",
            objects.len()
        );
    };
    let mut out = Vec::new();
    for statement in object.statements() {
        let line = line_of(text, statement.syntax().text_range().start().into());
        let ast::Stmt::Assign(assign) = statement else {
            bail!(
                "{line}: a parameters file only assigns parameters (declare them in the appliance)"
            );
        };
        let (Some(target), Some(values)) = (assign.target(), assign.value_list()) else {
            bail!("{line}: an assignment without a target or a value");
        };
        out.push(Assignment {
            name: target.text(),
            value: values.syntax().text().to_string().trim().to_string(),
            line,
        });
    }
    Ok(out)
}

pub use params_file::quote;

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Addresses the plan does not give: `cvl eval` says each interface's
/// `ip`, `subnet` and `netmask` are allocated at deploy time (null), but
/// the planner allocates them only for an interface that joins a network
/// (a VAN, or the public one); the others get a MAC alone and nothing of
/// the three on the wire. `allocations` is the plan's (`cvl plan --format
/// json`) for the appliance's component.
pub fn unallocated(
    evaluated: &mut BTreeMap<String, serde_json::Value>,
    allocations: &serde_json::Value,
) {
    let Some(interfaces) = allocations["interfaces"].as_object() else {
        return;
    };
    for (name, value) in evaluated.iter_mut() {
        let Some((interface, param)) = name.rsplit_once('.') else {
            continue;
        };
        let planned = interfaces.get(interface);
        if value.is_null()
            && ["ip", "subnet", "netmask"].contains(&param)
            && planned.is_some_and(|a| a["ip"].is_null())
        {
            *value = serde_json::Value::Array(Vec::new());
        }
    }
}

/// What the appliance evaluated to (`cvl eval --format json`, its keys
/// below the component) compared with what the guest read
/// (`/run/cvl/params`). `secrets` are the sensitive values supplied, by
/// name: compared, never said. Each difference is a sentence.
pub fn compare(
    evaluated: &BTreeMap<String, serde_json::Value>,
    secrets: &BTreeMap<String, String>,
    guest: &str,
) -> Vec<String> {
    let mut received: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in guest.lines().filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        received.entry(name).or_default().push(value);
    }
    let mut differences = Vec::new();
    for (name, value) in evaluated {
        let got = received.remove(name.as_str()).unwrap_or_default();
        match value {
            serde_json::Value::Array(values) => {
                let expected: Vec<String> = values
                    .iter()
                    .map(|v| escape(v.as_str().unwrap_or_default()))
                    .collect();
                if got != expected {
                    differences.push(format!(
                        "`{name}`: evaluated to {}, the guest read {}",
                        shown(&expected),
                        shown(&got)
                    ));
                }
            }
            // Allocated at deploy time: the guest must have a value.
            serde_json::Value::Null => {
                if got.iter().all(|v| v.is_empty()) {
                    differences.push(format!(
                        "`{name}` is allocated at deploy time, but the guest read no value"
                    ));
                }
            }
            // Sensitive: compared with what was supplied, never shown.
            _ => match secrets.get(name) {
                Some(secret) if got == [escape(secret).as_str()] => {}
                Some(_) => differences.push(format!(
                    "`{name}` (sensitive): the guest's value is not the one supplied"
                )),
                None => {}
            },
        }
    }
    for name in received.keys() {
        differences.push(format!(
            "the guest read `{name}`, which the appliance does not have"
        ));
    }
    differences
}

fn shown<S: AsRef<str>>(values: &[S]) -> String {
    if values.is_empty() {
        return "nothing".to_string();
    }
    values
        .iter()
        .map(|v| format!("`{}`", v.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_quote_bare_values_and_keep_cvl_ones() {
        let got = from_lines(
            "# the zone\ndomain=acme.org\n\ndnshosts = { name => \"www\", ip => \"10.0.0.5\" }\nforwarders=\"a\", \"b\"\n",
        )
        .unwrap();
        assert_eq!(got[0].value, "\"acme.org\"");
        assert_eq!(got[1].name, "dnshosts");
        assert_eq!(got[1].value, "{ name => \"www\", ip => \"10.0.0.5\" }");
        assert_eq!(got[2].value, "\"a\", \"b\"");
    }

    #[test]
    fn bad_lines_name_their_line_and_the_fix() {
        let e = from_lines("domain=acme.org\nnonsense\n").unwrap_err();
        assert!(
            e.to_string().starts_with("2: `nonsense` is not NAME=VALUE"),
            "{e}"
        );
        let e = from_lines("9lives=x\n").unwrap_err();
        assert!(e.to_string().contains("is not a parameter's name"), "{e}");
        let e = from_lines("a=\"open\n").unwrap_err();
        assert!(
            e.to_string().starts_with("1: `\"open` is not a CVL value"),
            "{e}"
        );
    }

    #[test]
    fn cvl_files_give_their_assignments() {
        let got = from_cvl(
            "CVL = \"0.8\";\nTest extends DNS {\n  domain = \"acme.org\";\n  dnshosts = { name => \"www\", ip => \"10.0.0.5\" };\n}\n",
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "domain");
        assert_eq!(got[1].value, "{ name => \"www\", ip => \"10.0.0.5\" }");
        // With an import of the appliance, it is an ordinary CVL file that
        // `cvl check` and the language server check; the import is not a
        // parameter.
        let got = from_cvl(
            "import { url => \"file://./repos/DNS\", cvl => \"DNS.cvl\" } DNS;\nT extends DNS { domain = \"acme.org\"; }\n",
        )
        .unwrap();
        assert_eq!(
            got,
            [Assignment {
                name: "domain".into(),
                value: "\"acme.org\"".into(),
                line: 2,
            }]
        );
        let e = from_cvl("Test extends DNS {\n  var x;\n}\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("2: a parameters file only assigns"),
            "{e}"
        );
        let e = from_cvl("Test extends DNS {\n  x = ;\n}\n").unwrap_err();
        assert!(e.to_string().starts_with("2: "), "{e}");
    }

    #[test]
    fn comparison_names_each_difference_and_hides_secrets() {
        let evaluated: BTreeMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"domain": ["acme.org"], "dns": [], "ethernet0.ip": null, "rootpw": {"sensitive": "supplied at deploy time"}, "port": ["53"]}"#,
        )
        .unwrap();
        let secrets = BTreeMap::from([("rootpw".to_string(), "s3cret!".to_string())]);
        let good = "domain=acme%2Eorg\nethernet0.ip=10%2E0%2E0%2E1\nport=53\nrootpw=s3cret%21\n";
        assert!(compare(&evaluated, &secrets, good).is_empty());
        let bad = "domain=acme%2Enet\nport=53\nrootpw=other\nextra=1\n";
        let said = compare(&evaluated, &secrets, bad);
        assert_eq!(said.len(), 4, "{said:#?}");
        assert!(said[0].contains("`acme%2Eorg`, the guest read `acme%2Enet`"));
        assert!(said.iter().any(|s| s.contains("ethernet0.ip")));
        assert!(said
            .iter()
            .any(|s| s.contains("rootpw") && !s.contains("s3cret")));
        assert!(said.iter().any(|s| s.contains("`extra`")));
    }

    #[test]
    fn an_interface_that_joins_no_network_has_no_address_on_the_wire() {
        let mut evaluated: BTreeMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"ethernet0.ip": null, "ethernet0.mac": null, "ethernet1.ip": null, "ethernet1.subnet": null, "ethernet1.mac": null}"#,
        )
        .unwrap();
        let plan: serde_json::Value = serde_json::from_str(
            r#"{"interfaces": {"ethernet0": {"ip": "10.0.1.2", "mac": "0a:00:00:00:00:01"}, "ethernet1": {"ip": null, "mac": "0a:00:00:00:00:02"}}}"#,
        )
        .unwrap();
        unallocated(&mut evaluated, &plan);
        assert!(evaluated["ethernet0.ip"].is_null());
        assert_eq!(evaluated["ethernet1.ip"], serde_json::json!([]));
        assert_eq!(evaluated["ethernet1.subnet"], serde_json::json!([]));
        assert!(evaluated["ethernet1.mac"].is_null(), "a MAC it has");
        let guest = "ethernet0.ip=10%2E0%2E1%2E2\nethernet0.mac=0a:00\nethernet1.mac=0a:01\n";
        assert!(compare(&evaluated, &BTreeMap::new(), guest).is_empty());
    }
}
