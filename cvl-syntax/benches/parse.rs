//! Throughput of the front end on a generated 10+ MB corpus of realistic CVL
//! (many appliances and VANs, maps, comments): lex+parse into the rowan tree,
//! the logos lexer alone on the same bytes, and, for comparison, taplo's
//! rowan-based TOML parser on a TOML document of the same size. Freeing a
//! tree is not timed (`iter_with_large_drop`), for both parsers alike.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The allocator `cvl` ships with (cvl/src/main.rs), so the figures are the
/// command's; taplo runs under it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TARGET_BYTES: usize = 10 * 1024 * 1024;

/// A realistic CVL corpus: imports, VM appliances with parameters, data disks
/// and comments, VANs wiring components with maps.
pub fn cvl_corpus(target: usize) -> String {
    let mut out = String::with_capacity(target + 4096);
    out.push_str("/* Generated benchmark corpus */\nCVL = \"0.8\";\n");
    let mut i = 0usize;
    while out.len() < target {
        out.push_str(&format!(
            "import {{\n  url => \"http://repo.example.org/App{i}\",\n  cvl => \"App{i}.cvl\",\n  version => \"{}\"\n}} Base{i};\n",
            i % 7 + 1
        ));
        out.push_str(&format!(
            "/* Appliance {i}: a service with a data disk. */\nApp{i} extends VMAppliance {{\n  \
             var \"required\" domain, hostname;\n  var \"required\" \"sensitive\" rootpw;\n  \
             var port, sport, dnshosts; // listening ports\n  Interface ethernet1;\n  \
             port = \"{}\";\n  sport = \"{}\";\n  requires = \"DNS\", \"DHCP\";\n  provides = \"SVC{i}\";\n  \
             datadisks = {{ device => \"ide0:1\", size => \"{}M\" }};\n  vm = \"app{i}.vmx\";\n}}\n",
            1000 + i % 5000,
            2000 + i % 5000,
            100 + i % 900
        ));
        out.push_str(&format!(
            "Net{i} extends VANAppliance {{\n  var \"required\" domain;\n  App{i} a, b;\n  Base{i} c;\n  \
             a.domain = domain;\n  b.domain = domain;\n  c.domain = domain;\n  \
             a.dnshosts = {{ name => b.name, ip => b.ethernet0.ip }},\n               \
             {{ name => c.name, ip => c.ethernet0.ip, meta => {{ port => b.port, \"x y\" => \"z\" }} }};\n  \
             vanIF = \"a.ethernet1\";\n  defaultroute = a.ethernet0.ip;\n}}\n"
        ));
        i += 1;
    }
    out
}

/// A TOML document of about the same size and shape.
fn toml_corpus(target: usize) -> String {
    let mut out = String::with_capacity(target + 4096);
    out.push_str("# Generated benchmark corpus\nversion = \"0.8\"\n");
    let mut i = 0usize;
    while out.len() < target {
        out.push_str(&format!(
            "\n# Appliance {i}: a service with a data disk.\n[app{i}]\nextends = \"VMAppliance\"\n\
             required = [\"domain\", \"hostname\"] # parameters\nport = {}\nsport = {}\n\
             requires = [\"DNS\", \"DHCP\"]\nprovides = \"SVC{i}\"\n\
             datadisks = {{ device = \"ide0:1\", size = \"{}M\" }}\nvm = \"app{i}.vmx\"\n\
             [net{i}]\nextends = \"VANAppliance\"\ncomponents = {{ a = \"App{i}\", b = \"App{i}\" }}\n\
             dnshosts = [{{ name = \"b\", ip = \"b.ethernet0.ip\" }}, {{ name = \"c\", meta = {{ port = 1, x = \"z\" }} }}]\n\
             vanIF = \"a.ethernet1\"\n",
            1000 + i % 5000,
            2000 + i % 5000,
            100 + i % 900
        ));
        i += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let cvl = cvl_corpus(TARGET_BYTES);
    let toml = toml_corpus(cvl.len());
    assert!(
        cvl_syntax::parse(&cvl).errors().is_empty(),
        "the corpus is valid CVL"
    );
    assert!(
        taplo::parser::parse(&toml).errors.is_empty(),
        "the corpus is valid TOML"
    );
    eprintln!(
        "corpus: CVL {:.1} MB, TOML {:.1} MB",
        cvl.len() as f64 / 1e6,
        toml.len() as f64 / 1e6
    );

    let mut group = c.benchmark_group("front-end");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(cvl.len() as u64));
    group.bench_function("cvl lex (logos)", |b| {
        b.iter(|| cvl_syntax::lexer::lex(std::hint::black_box(&cvl)))
    });
    group.bench_function("cvl lex+parse (rowan)", |b| {
        b.iter_with_large_drop(|| cvl_syntax::parse(std::hint::black_box(&cvl)))
    });
    group.throughput(Throughput::Bytes(toml.len() as u64));
    group.bench_function("taplo parse (rowan, TOML)", |b| {
        b.iter_with_large_drop(|| taplo::parser::parse(std::hint::black_box(&toml)).into_syntax())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
