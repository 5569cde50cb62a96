//! Test parameters files (`cvl test --params FILE`, e.g. `test.params`):
//! `NAME=VALUE` lines that set an appliance's parameters, checked as CVL.
//! The file is turned into the deployment `cvl test` makes (the
//! appliance's own text, then a VAN holding it alone and assigning each
//! line), which is analysed like any CVL; what is said about a line is
//! said at its place in the parameters file, and a required parameter
//! without a value is said with the line to add. Completion inside a name
//! is the completion of the member it names. No I/O: the caller finds the
//! appliance (`cvl_repo::appliance::of_params`).
//!
//! A line: `NAME=VALUE`, blank, or a `#` comment. NAME is identifiers
//! joined by dots (`domain`, `ethernet0.defaultroute`); a VALUE starting
//! with `"` or `{` is CVL (strings, a map), any other one string as it is.

use cvl_syntax::{TextRange, TextSize};

use crate::diagnostics::{Code, Diagnostic, Fix, Severity, Span};

/// The component the deployment names the appliance (as `cvl test` does).
pub const COMPONENT: &str = "app";

/// A parsed parameters file: its lines that assign (or begin to), and
/// what is wrong with the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamsFile {
    pub lines: Vec<ParamLine>,
    /// Lines that are not `NAME=VALUE`: where, and why (with the fix).
    pub errors: Vec<(TextRange, String)>,
}

/// One `NAME=VALUE` line (or a NAME being typed, without `=` yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamLine {
    /// 1-based.
    pub line: usize,
    pub name: String,
    pub name_range: TextRange,
    /// The value as CVL's right-hand side (`"acme.org"`); `None` while the
    /// line has no `=` or its value is not CVL (then it is in `errors`).
    pub value: Option<String>,
    /// The value's text in the file (empty at the line's end without `=`).
    pub value_range: TextRange,
}

impl ParamsFile {
    /// The lines that assign: name and CVL value, in order.
    pub fn assignments(&self) -> impl Iterator<Item = (&ParamLine, &str)> {
        self.lines
            .iter()
            .filter_map(|l| l.value.as_deref().map(|v| (l, v)))
    }
}

/// Reads `text` line by line; never fails (what is wrong is in `errors`).
pub fn parse(text: &str) -> ParamsFile {
    let mut out = ParamsFile::default();
    let mut start = 0usize;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let line_start = start;
        start += raw.len();
        let body = raw.trim_end_matches(['\n', '\r']);
        let lead = body.len() - body.trim_start().len();
        let trimmed = body.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = |from: usize, len: usize| {
            let from = line_start + from;
            TextRange::at(size(from), size(len))
        };
        let line = i + 1;
        let Some(eq) = body.find('=') else {
            let whole = at(lead, trimmed.len());
            out.errors.push((
                whole,
                format!("`{trimmed}` is not NAME=VALUE (for example `domain=acme.org`)"),
            ));
            // A name being typed: kept for completion.
            if is_name(trimmed.trim_end_matches('.')) {
                out.lines.push(ParamLine {
                    line,
                    name: trimmed.to_string(),
                    name_range: whole,
                    value: None,
                    value_range: at(body.len(), 0),
                });
            }
            continue;
        };
        let name_text = &body[..eq];
        let name = name_text.trim();
        let name_range = at(lead.min(eq), name.len());
        if !is_name(name) {
            out.errors.push((
                if name.is_empty() { at(eq, 1) } else { name_range },
                format!(
                    "`{name}` is not a parameter's name (letters, digits and `_`, dotted below a component: `ethernet0.defaultroute`)"
                ),
            ));
            continue;
        }
        let after = &body[eq + 1..];
        let value_text = after.trim();
        let value_start = eq + 1 + (after.len() - after.trim_start().len());
        let value_range = at(value_start, value_text.len());
        let value = if value_text.starts_with('"') || value_text.starts_with('{') {
            match cvl_value_error(value_text) {
                None => Some(value_text.to_string()),
                Some(why) => {
                    out.errors.push((
                        value_range,
                        format!(
                            "`{value_text}` is not a CVL value ({why}): quote strings (`\"a\", \"b\"`) or write a map (`{{ k => \"v\" }}`)"
                        ),
                    ));
                    None
                }
            }
        } else {
            Some(quote(value_text))
        };
        out.lines.push(ParamLine {
            line,
            name: name.to_string(),
            name_range,
            value,
            value_range,
        });
    }
    out
}

/// `value` as one CVL string.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Identifiers joined by dots.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Why `value` is not an assignment's right-hand side, if it is not.
fn cvl_value_error(value: &str) -> Option<String> {
    let probe = format!("X extends VMAppliance {{ x = {value}; }}");
    cvl_syntax::parse(&probe)
        .errors()
        .first()
        .map(|e| e.message.to_string())
}

/// The object a CVL file exports (as an import binds it:
/// [`crate::resolve::exported_of`]).
pub fn exported_object(text: &str, stem: &str) -> Option<String> {
    let parse = cvl_syntax::parse(text);
    let names: Vec<String> = parse
        .tree()
        .objects()
        .filter_map(|o| o.name().map(|n| n.text().to_string()))
        .collect();
    crate::resolve::exported_of(&names, stem).ok().cloned()
}

fn size(n: usize) -> TextSize {
    TextSize::from(n as u32)
}

/// The deployment a parameters file stands for: CVL text to analyse (with
/// `deployment` deployed), and where each line went in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub text: String,
    /// The object to check as deployed.
    pub deployment: String,
    /// The appliance's object.
    appliance: String,
    /// Where the appliance's own text ends in `text`.
    appliance_end: TextSize,
    /// Just after a `app.` in `text`: completion of a name not begun.
    anchor: TextSize,
    /// Per line of the file (the index in `ParamsFile::lines`): where its
    /// statement is in `text`, and where its name starts there.
    placed: Vec<(usize, TextRange, TextSize)>,
}

/// `cvl test`'s deployment of `appliance` (declared in `appliance_text`)
/// with the file's lines: the VAN that holds it alone (its `requires`
/// cleared, `interface` its VAN interface), each line an assignment.
pub fn deployment(
    appliance_text: &str,
    appliance: &str,
    interface: &str,
    file: &ParamsFile,
) -> Deployment {
    let deployment = format!("{appliance}Test");
    let mut text = appliance_text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let appliance_end = size(text.len());
    text.push_str(&format!(
        "/* `cvl test`'s deployment: {appliance} alone in a VAN, with the parameters file's values. */\n\
         {deployment} extends VANAppliance {{\n  \
           var none; /* never assigned: the empty list */\n  \
           {appliance} {COMPONENT};\n  \
           vanIF = \"{COMPONENT}.{interface}\";\n"
    ));
    text.push_str(&format!("  {COMPONENT}."));
    let anchor = size(text.len());
    text.push_str("requires = none;\n");
    let mut placed = Vec::new();
    for (i, line) in file.lines.iter().enumerate() {
        let start = text.len();
        text.push_str(&format!("  {COMPONENT}."));
        let name_at = size(text.len());
        text.push_str(&line.name);
        match &line.value {
            Some(value) => text.push_str(&format!(" = {value};")),
            // A name being typed: completion reads the tokens before it.
            None => text.push(';'),
        }
        placed.push((i, TextRange::new(size(start), size(text.len())), name_at));
        text.push('\n');
    }
    text.push_str("}\n");
    Deployment {
        text,
        deployment,
        appliance: appliance.to_string(),
        appliance_end,
        anchor,
        placed,
    }
}

impl Deployment {
    /// Where completion at `offset` of the file (`text`) is asked in the
    /// deployment's text: inside (or at the end of) a line's name, the
    /// same place in its assignment; at a line's start, after `app.`.
    pub fn offset_of(&self, file: &ParamsFile, text: &str, offset: TextSize) -> Option<TextSize> {
        let in_name = self.name_offset(file, offset);
        let at = u32::from(offset) as usize;
        let line_start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
        let blank = text[line_start..at].trim().is_empty();
        in_name.or(blank.then_some(self.anchor))
    }

    /// The offset in the deployment's text of `offset` in the file, inside
    /// (or at the end of) a line's name: for hover and definition.
    pub fn name_offset(&self, file: &ParamsFile, offset: TextSize) -> Option<TextSize> {
        self.placed.iter().find_map(|&(i, _, name_at)| {
            let range = file.lines[i].name_range;
            range
                .contains_inclusive(offset)
                .then(|| name_at + (offset - range.start()))
        })
    }

    /// A range of the deployment's text inside a line's name, in the file.
    pub fn range_in_file(&self, file: &ParamsFile, range: TextRange) -> Option<TextRange> {
        self.placed.iter().find_map(|&(i, _, name_at)| {
            let name = file.lines[i].name_range;
            let placed = TextRange::at(name_at, name.len());
            placed
                .contains_range(range)
                .then(|| range - name_at + name.start())
        })
    }

    /// Whether `range` of the deployment's text is in the appliance's own
    /// text (which starts it, unchanged: the same range in its file).
    pub fn in_appliance(&self, range: TextRange) -> bool {
        range.end() <= self.appliance_end
    }

    /// What the analysis said about the deployment (`said`, of the file
    /// named `analysed`), said about the parameters file `name`: its own
    /// line errors, each diagnostic of an assignment at its line, each
    /// required parameter without a value at the file's start with the
    /// line to add, and the appliance's own errors counted once.
    pub fn diagnostics(
        &self,
        file: &ParamsFile,
        name: &str,
        text: &str,
        analysed: &str,
        said: &[Diagnostic],
    ) -> Vec<Diagnostic> {
        let span = |range: TextRange| Span {
            file: name.to_string(),
            range,
        };
        let mut out: Vec<Diagnostic> = file
            .errors
            .iter()
            .map(|(range, message)| Diagnostic::error(Code::SyntaxError, message, span(*range)))
            .collect();
        let prefix = format!("`{COMPONENT}.");
        let plain = |message: &str| {
            message
                .replace(&prefix, "`")
                .replace(&format!(" of `{}`", self.deployment), "")
        };
        let mut appliance_errors = 0;
        for d in said.iter().filter(|d| d.span.file == analysed) {
            let at = d.span.range.start();
            if let Some(&(i, _, name_at)) = self.placed.iter().find(|p| p.1.contains(at)) {
                let line = &file.lines[i];
                if line.value.is_none() {
                    continue; // said already: not NAME=VALUE
                }
                let in_name = at >= name_at && at < name_at + size(line.name.len());
                let range = if in_name {
                    line.name_range
                } else {
                    line.value_range
                };
                let mut mapped =
                    Diagnostic::new(d.code, d.severity, plain(&d.message), span(range));
                mapped.notes = if d.code == Code::SensitiveLiteral {
                    vec![format!(
                        "`cvl test` takes a sensitive value from the environment, \
                         $CVL_SECRET_<APPLIANCE>_<NAME> (here `CVL_SECRET_{}_{}`), else makes a random one",
                        self.appliance.to_uppercase(),
                        line.name.to_uppercase().replace('.', "_")
                    )]
                } else {
                    d.notes.iter().map(|n| plain(n)).collect()
                };
                out.push(mapped);
            } else if d.code == Code::MissingRequired && d.severity == Severity::Error {
                let parameter = d
                    .message
                    .split('`')
                    .find_map(|word| word.strip_prefix(&prefix[1..]))
                    .unwrap_or_default()
                    .to_string();
                let mut mapped =
                    Diagnostic::error(d.code, plain(&d.message), span(TextRange::empty(0.into())));
                mapped.notes = vec![format!("add the line `{parameter}=VALUE`")];
                let ends_line = text.is_empty() || text.ends_with('\n');
                mapped.fix = Some(Fix {
                    title: format!("add `{parameter}=`"),
                    edits: vec![(
                        span(TextRange::empty(size(text.len()))),
                        if ends_line {
                            format!("{parameter}=\n")
                        } else {
                            format!("\n{parameter}=\n")
                        },
                    )],
                });
                out.push(mapped);
            } else if at < self.appliance_end && d.severity == Severity::Error {
                appliance_errors += 1;
            }
        }
        if appliance_errors > 0 {
            out.push(Diagnostic::error(
                Code::UnresolvedName,
                format!(
                    "the appliance's own file has {appliance_errors} error(s): `cvl check` it first"
                ),
                span(TextRange::empty(0.into())),
            ));
        }
        out.sort_by_key(|d| d.span.range.start());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_names_and_cvl_values_with_their_places() {
        let text = "# the test's values\ndomain = acme.org\nforwarders=\"10.0.0.1\", \"10.0.0.2\"\n\nnot a line\n1x=3\nmap={ a => \nethernet0.def";
        let file = parse(text);
        let got: Vec<(usize, &str, Option<&str>, &str)> = file
            .lines
            .iter()
            .map(|l| {
                (
                    l.line,
                    l.name.as_str(),
                    l.value.as_deref(),
                    &text[l.name_range],
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (2, "domain", Some("\"acme.org\""), "domain"),
                (
                    3,
                    "forwarders",
                    Some("\"10.0.0.1\", \"10.0.0.2\""),
                    "forwarders"
                ),
                (7, "map", None, "map"),
                (8, "ethernet0.def", None, "ethernet0.def"),
            ]
        );
        let errors: Vec<&str> = file.errors.iter().map(|(r, _)| &text[*r]).collect();
        assert_eq!(errors, ["not a line", "1x", "{ a =>", "ethernet0.def"]);
        assert_eq!(
            &text[file.lines[1].value_range],
            "\"10.0.0.1\", \"10.0.0.2\""
        );
    }

    #[test]
    fn a_value_that_is_not_cvl_is_quoted() {
        let file = parse("org=Acme \"Inc\" \\ Co\n");
        assert_eq!(
            file.lines[0].value.as_deref(),
            Some("\"Acme \\\"Inc\\\" \\\\ Co\"")
        );
    }

    #[test]
    fn the_deployment_places_each_line_and_maps_a_cursor_into_its_name() {
        let text = "domain=acme.org\nethernet0.de";
        let file = parse(text);
        let d = deployment("DNS extends VMAppliance { }", "DNS", "ethernet0", &file);
        assert!(
            d.text
                .contains("  app.domain = \"acme.org\";\n  app.ethernet0.de;\n}"),
            "{}",
            d.text
        );
        let cursor = TextSize::from(text.len() as u32);
        let mapped = d.offset_of(&file, text, cursor).unwrap();
        assert!(d.text[..u32::from(mapped) as usize].ends_with("app.ethernet0.de"));
        assert_eq!(
            d.offset_of(&file, text, 8.into()),
            None,
            "a value is no name"
        );
        // `ethernet0` in the deployment's text is `ethernet0` in the file.
        let at = d.name_offset(&file, 16.into()).unwrap();
        let word = TextRange::at(at, 9.into());
        assert_eq!(&d.text[word], "ethernet0");
        let back = d.range_in_file(&file, word).unwrap();
        assert_eq!(&text[back], "ethernet0");
        assert!(d.in_appliance(TextRange::at(0.into(), 3.into())));
        assert!(!d.in_appliance(word));
        let start = d.offset_of(&file, text, 0.into()).unwrap();
        assert!(d.text[..u32::from(start) as usize].ends_with("  app."));
    }
}
