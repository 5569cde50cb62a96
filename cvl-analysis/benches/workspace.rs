//! A generated workspace for benchmarks: `files` files of `per_file`
//! appliances each, plus `base.cvl`. In each file, chains of five-level
//! inheritance (L0 extends the imported Base, L1 extends L0, ... L4) and one
//! VAN of 100 components built from the chains' leaves.

/// The import every generated file starts with (a plain-folder import of
/// `base.cvl` beside it).
pub const BASE_URL: &str = "file://./";
pub const BASE_CVL: &str = "base.cvl";

pub const BASE: &str = "CVL = \"0.8\";\n/* The shared base of every chain. */\nBase extends VMAppliance {\n  var \"required\" domain;\n  var port, hosts;\n  Interface ethernet1;\n  vm = \"base.vmx\";\n}\n";

/// `(file name, text)` for every generated file, `base.cvl` first.
pub fn generate(files: usize, per_file: usize) -> Vec<(String, String)> {
    let mut out = vec![(BASE_CVL.to_string(), BASE.to_string())];
    let chains = per_file / 5;
    for f in 0..files {
        let mut text = format!(
            "CVL = \"0.8\";\nimport {{ url => \"{BASE_URL}\", cvl => \"{BASE_CVL}\" }} Base;\n"
        );
        for c in 0..chains {
            for level in 0..5 {
                let parent = if level == 0 {
                    "Base".to_string()
                } else {
                    format!("C{c}L{}", level - 1)
                };
                text.push_str(&format!(
                    "/* chain {c}, level {level} */\nC{c}L{level} extends {parent} {{\n  var v{level};\n  v{level} = \"{f}-{c}-{level}\";\n  port = \"{}\";\n  provides = \"S{c}L{level}\";\n}}\n",
                    1000 + level
                ));
            }
        }
        text.push_str(&format!(
            "Net{f} extends VANAppliance {{\n  var \"required\" domain;\n"
        ));
        for i in 0..100 {
            text.push_str(&format!("  C{}L4 c{i};\n", i % chains.max(1)));
        }
        for i in 0..100 {
            text.push_str(&format!("  c{i}.domain = domain;\n"));
        }
        text.push_str(
            "  c1.hosts = { name => c0.name, ip => c0.ethernet0.ip, port => c0.port };\n",
        );
        text.push_str("  vanIF = \"c0.ethernet1\";\n  defaultroute = c0.ethernet0.ip;\n}\n");
        out.push((format!("f{f:03}.cvl"), text));
    }
    out
}

/// One large file of `objects` appliances, each like the sample
/// (two required parameters, a nested map, three assignments): about 200
/// bytes an object, so 5,000 objects are 1 MB.
pub fn large_file(objects: usize) -> String {
    let mut text = String::with_capacity(objects * 210);
    for i in 1..=objects {
        text.push_str(&format!(
            "A{i} extends VMAppliance {{\n  var \"required\" domain, x1;\n  var motd;\n  vm = \"a.vmx\";\n  motd = {{ host => \"h1\", dom => domain, n => {{ a => \"x y\", b => \"z\" }} }};\n  domain = \"acme{i}.org\";\n  x1 = \"v\";\n}}\n"
        ));
    }
    text
}
