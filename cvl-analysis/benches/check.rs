//! `check` on a generated workspace of 10,000 appliances in 100 files (five-
//! level inheritance, a VAN of 100 components per file): cold, and again
//! after a one-character edit in one object's body. Then one large file
//! (`workspace::large_file`): cold parse + check from 2,500 to 40,000
//! objects (the growth should be linear), and a one-character edit inside
//! one object of the 5,000-object (1 MB) file.

#[path = "workspace.rs"]
mod workspace;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use cvl_analysis::item_tree::ImportKey;
use cvl_analysis::{
    file_diagnostics, CheckOptions, ImportResolutions, ResolvedImport, RootDatabase, SourceFile,
};

/// The allocator `cvl` ships with (cvl/src/main.rs), so the figures are the
/// command's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Loaded {
    db: RootDatabase,
    files: Vec<SourceFile>,
    texts: Vec<String>,
}

fn load() -> Loaded {
    let generated = workspace::generate(100, 100);
    let mut db = RootDatabase::default();
    let mut files = Vec::new();
    let mut texts = Vec::new();
    for (name, text) in &generated {
        files.push(db.add_file(name.clone(), text.clone()));
        texts.push(text.clone());
    }
    let base = files[0];
    for &file in &files[1..] {
        let key = ImportKey {
            url: workspace::BASE_URL.into(),
            cvl: workspace::BASE_CVL.into(),
            version: None,
        };
        let resolved = ResolvedImport {
            file: base,
            version: None,
            detail: String::new(),
            repository: None,
            files: Vec::new(),
            blacklisted: None,
            unsigned: None,
        };
        db.set_imports(
            file,
            ImportResolutions {
                entries: vec![(key, Ok(resolved))],
            },
        );
    }
    Loaded { db, files, texts }
}

fn check_all(l: &Loaded) -> usize {
    l.files
        .iter()
        .map(|&f| file_diagnostics(&l.db, f, &CheckOptions::default()).len())
        .sum()
}

/// A one-character edit inside one object's body in the middle file.
fn edit(l: &mut Loaded, round: usize) {
    let i = 50;
    let digit = char::from(b'0' + (round % 10) as u8);
    let text = l.texts[i].replacen("v2 = \"49-3-2\"", &format!("v2 = \"49-3-{digit}\""), 1);
    l.db.set_text(l.files[i], text);
}

/// `iters` rounds of an edit followed by `check`; only `check` is timed.
fn edits_then(
    l: &mut Loaded,
    round: &mut usize,
    iters: u64,
    check: impl Fn(&Loaded) -> usize,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        *round += 1;
        edit(l, *round);
        let start = Instant::now();
        black_box(check(l));
        total += start.elapsed();
    }
    total
}

fn bench(c: &mut Criterion) {
    let objects: usize = workspace::generate(100, 100)
        .iter()
        .map(|(_, t)| t.matches(" extends ").count())
        .sum();
    let start = Instant::now();
    let mut l = load();
    let diagnostics = check_all(&l);
    eprintln!(
        "workspace: {} files, {objects} objects; first cold check {:?} ({diagnostics} diagnostics)",
        l.files.len(),
        start.elapsed()
    );
    edit(&mut l, 1);
    let start = Instant::now();
    check_all(&l);
    eprintln!("first incremental re-check: {:?}", start.elapsed());

    let mut group = c.benchmark_group("check");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    // Loading parses and lowers each file (the writer does): timed too.
    group.bench_function("cold: load + check 100 files", |b| {
        b.iter_batched(
            || (),
            |()| {
                let l = load();
                black_box(check_all(&l));
                l
            },
            BatchSize::PerIteration,
        )
    });
    let mut round = 0;
    group.bench_function("one-char edit, re-check all 100 files", |b| {
        b.iter_custom(|iters| edits_then(&mut l, &mut round, iters, check_all))
    });
    group.bench_function("one-char edit, re-check the edited file", |b| {
        b.iter_custom(|iters| {
            edits_then(&mut l, &mut round, iters, |l| {
                file_diagnostics(&l.db, l.files[50], &CheckOptions::default()).len()
            })
        })
    });
    group.finish();
}

fn large(c: &mut Criterion) {
    let mut group = c.benchmark_group("large file");
    group.sample_size(10);
    for objects in [2_500usize, 5_000, 10_000, 20_000, 40_000] {
        let text = workspace::large_file(objects);
        group.throughput(criterion::Throughput::Bytes(text.len() as u64));
        // As `cvl check` does it: a batch database; adding the file parses
        // and lowers it (timed, with the check).
        group.bench_function(format!("cold: parse + check, {objects} objects"), |b| {
            b.iter_batched(
                || (RootDatabase::batch(), text.clone()),
                |(db, text)| {
                    let file = db.add_file("large.cvl".into(), text);
                    black_box(file_diagnostics(&db, file, &CheckOptions::default()).len());
                    db
                },
                BatchSize::PerIteration,
            )
        });
    }
    let text = workspace::large_file(5_000);
    let mut db = RootDatabase::default();
    let file = db.add_file("large.cvl".into(), text.clone());
    file_diagnostics(&db, file, &CheckOptions::default());
    let at = text.find("acme2500.org").unwrap() + "acme".len();
    let mut round = 0u8;
    // Timed from the edit reaching the database to the file's diagnostics.
    for (name, incremental) in [
        (
            "one-char edit in one object, full reparse, re-check (5,000 objects)",
            false,
        ),
        (
            "one-char edit in one object, as the language server, re-check (5,000 objects)",
            true,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round = (round + 1) % 10;
                    let edit = cvl_syntax::TextEdit {
                        delete: cvl_syntax::TextRange::at(
                            cvl_syntax::TextSize::from(at as u32),
                            cvl_syntax::TextSize::from(1),
                        ),
                        insert: char::from(b'0' + round).to_string(),
                    };
                    let edited = edit.apply(&text).expect("the edit fits");
                    let start = Instant::now();
                    if incremental {
                        db.apply_edit(file, &edit);
                    } else {
                        db.set_text(file, edited);
                    }
                    black_box(file_diagnostics(&db, file, &CheckOptions::default()).len());
                    total += start.elapsed();
                    // Back to the original text, untimed.
                    db.set_text(file, text.clone());
                    file_diagnostics(&db, file, &CheckOptions::default());
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, large);
criterion_main!(benches);
