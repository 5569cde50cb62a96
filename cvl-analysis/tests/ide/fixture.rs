//! Fixtures: `//- NAME` starts a file (without one, the text is `main.cvl`);
//! `$0` marks the cursor. An import whose `cvl` names another file of the
//! fixture resolves to it, as the loader would resolve a local folder.

use cvl_analysis::ide::NavTarget;
use cvl_analysis::item_tree::ImportKey;
use cvl_analysis::{Analysis, AnalysisHost, ImportResolutions, ResolvedImport, SourceFile};
use cvl_syntax::{TextRange, TextSize};

pub struct Fixture {
    pub analysis: Analysis,
    /// Every file of the fixture, in order.
    pub files: Vec<SourceFile>,
    /// The file holding `$0` and the cursor's offset in it.
    pub file: SourceFile,
    pub offset: TextSize,
    _host: AnalysisHost,
}

pub fn fixture(text: &str) -> Fixture {
    let mut parts: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        match line.strip_prefix("//- ") {
            Some(name) => parts.push((name.trim().to_string(), String::new())),
            None if parts.is_empty() => parts.push(("main.cvl".into(), line.to_string())),
            None => parts.last_mut().unwrap().1.push_str(line),
        }
    }
    let mut host = AnalysisHost::new();
    let mut files = Vec::new();
    let mut names = Vec::new();
    let mut cursor = None;
    for (name, text) in parts {
        names.push(name.clone());
        let (text, offset) = match text.find("$0") {
            Some(at) => (text.replacen("$0", "", 1), Some(at)),
            None => (text, None),
        };
        let file = host.add_file(name, text);
        if let Some(at) = offset {
            cursor = Some((file, TextSize::from(at as u32)));
        }
        files.push(file);
    }
    for &file in &files {
        let keys: Vec<ImportKey> = host
            .item_tree(file)
            .imports
            .iter()
            .filter_map(|i| i.key())
            .collect();
        let entries = keys
            .into_iter()
            .map(|key| {
                let target = names
                    .iter()
                    .position(|n| n.ends_with(&key.cvl))
                    .map(|i| files[i])
                    .ok_or_else(|| format!("no file {} in the fixture", key.cvl));
                let resolved = target.map(|file| ResolvedImport {
                    file,
                    version: None,
                    detail: format!("the fixture's {}", key.cvl),
                    repository: None,
                    files: Vec::new(),
                    blacklisted: None,
                    unsigned: None,
                });
                (key, resolved)
            })
            .collect();
        host.set_imports(file, ImportResolutions { entries });
    }
    let (file, offset) = cursor.unwrap_or((files[0], TextSize::from(0)));
    Fixture {
        analysis: host.analysis(),
        files,
        file,
        offset,
        _host: host,
    }
}

impl Fixture {
    /// `NAME line:column "text"` of a range (lines and columns from 1).
    pub fn place(&self, file: SourceFile, range: TextRange) -> String {
        let text = self.analysis.file_text(file);
        let (line, column) = cvl_syntax::line_col(text, range.start());
        format!(
            "{} {line}:{column} {:?}",
            self.analysis.file_name(file),
            &text[range]
        )
    }

    pub fn target(&self, t: &NavTarget) -> String {
        self.place(t.file, t.range)
    }
}
