//! Diagnostics as plain values: a stable code, a severity, a message, a
//! primary span and secondary labels. Rendering (terminal, JSON, SARIF, LSP)
//! happens at the edges, never here.

use std::fmt;

use cvl_syntax::TextRange;

/// Declares every diagnostic code once: its variant, its stable name and
/// its one-line summary; the enum, `Code::ALL`, `as_str` and `summary` are
/// generated from this list (and `tests/codes.rs` checks the reference's
/// table against it).
macro_rules! codes {
    ($($variant:ident = $name:literal: $summary:literal,)*) => {
        /// The stable, kebab-case diagnostic codes of the language reference (§10).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// One line on what the code means, for `--help`, SARIF rules and hovers.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Code::$variant => $summary,)*
                }
            }
        }
    };
}

codes! {
    SyntaxError = "syntax-error": "the text does not follow CVL's grammar",
    UnresolvedName = "unresolved-name": "a name refers to nothing: a type, component, parameter or import",
    MissingRequired = "missing-required": "a \"required\" parameter has no value in the deployed appliance",
    SensitiveLiteral = "sensitive-literal": "a \"sensitive\" parameter is given a value written in a file",
    SensitiveFlow = "sensitive-flow": "a sensitive value flows into a parameter that is not sensitive",
    DuplicateDeclaration = "duplicate-declaration": "a parameter, component or object is declared twice",
    InheritanceCycle = "inheritance-cycle": "objects extend each other in a cycle",
    ReferenceCycle = "reference-cycle": "parameters refer to each other in a cycle",
    InvalidComponentKind = "invalid-component-kind": "a component's kind may not be placed in this object",
    InvalidExtends = "invalid-extends": "an object extends something it may not extend",
    BadVanif = "bad-vanif": "vanIF does not name an interface",
    BadImport = "bad-import": "an import cannot be resolved, fetched or verified",
    UnsupportedVersion = "unsupported-version": "the file states a CVL version other than 0.8",
    RequiresUnsatisfied = "requires-unsatisfied": "a required service is provided by no component",
    DependencyCycle = "dependency-cycle": "components require each other's services in a cycle",
    BlacklistedVersion = "blacklisted-version": "an imported version is on the administrator's blacklist",
    OverriddenAssignment = "overridden-assignment": "an assignment is overridden later in the same object",
    UnknownAttribute = "unknown-attribute": "a var attribute other than \"required\" or \"sensitive\"",
    MapValueNotScalar = "map-value-not-scalar": "a map value refers to a parameter with several values",
    InvalidVm = "invalid-vm": "the VM description that `vm` names is missing or invalid",
    UnsignedRepository = "unsigned-repository": "an import comes from a repository its publisher did not sign",
}

impl Code {
    pub fn from_name(code: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Something users of a library object must do; not a problem here.
    Hint,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Hint => "hint",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A place in a file: the file's display name (a path or URL) and a byte range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: String,
    pub range: TextRange,
}

/// A secondary place that explains the diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
    /// A mechanical fix, when there is an obvious one.
    pub fix: Option<Fix>,
}

/// Text edits that fix a diagnostic, with a title for people.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fix {
    pub title: String,
    /// Replace each span's text with the string.
    pub edits: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn new(code: Code, severity: Severity, message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            code,
            severity,
            message: message.into(),
            span,
            labels: Vec::new(),
            notes: Vec::new(),
            fix: None,
        }
    }

    pub fn error(code: Code, message: impl Into<String>, span: Span) -> Self {
        Self::new(code, Severity::Error, message, span)
    }

    pub fn warning(code: Code, message: impl Into<String>, span: Span) -> Self {
        Self::new(code, Severity::Warning, message, span)
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The diagnostics of a file's syntax errors.
    pub fn from_syntax_errors(file: &str, errors: &[cvl_syntax::SyntaxError]) -> Vec<Diagnostic> {
        errors
            .iter()
            .map(|e| {
                Diagnostic::error(
                    Code::SyntaxError,
                    e.message.clone(),
                    Span {
                        file: file.to_string(),
                        range: e.range,
                    },
                )
            })
            .collect()
    }
}

/// Where a diagnostic points before it is rendered: a file, the object the
/// range is relative to (`None`: relative to the file), and the range. Kept
/// relative so per-object results survive edits elsewhere in the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Loc {
    pub file: crate::db::SourceFile,
    pub object: Option<crate::resolve::Name>,
    pub range: TextRange,
}

impl Loc {
    pub fn in_object(def: &crate::resolve::Def, range: TextRange) -> Loc {
        Loc {
            file: def.file,
            object: Some(def.name.clone()),
            range,
        }
    }

    pub fn in_file(file: crate::db::SourceFile, range: TextRange) -> Loc {
        Loc {
            file,
            object: None,
            range,
        }
    }

    /// Source order across files and objects: file name, the owning
    /// object's place in its file, then the range.
    pub fn order_key(&self, db: &dyn crate::db::Db) -> (String, usize, cvl_syntax::TextSize) {
        let (file, index) = match &self.object {
            Some(name) => crate::resolve::source_order(
                db,
                &crate::resolve::Def {
                    file: self.file,
                    name: name.clone(),
                },
            ),
            None => (self.file.name(db).clone(), 0),
        };
        (file, index, self.range.start())
    }

    /// The absolute span, for rendering.
    pub fn span(&self, db: &dyn crate::db::Db) -> Span {
        let offset = self
            .object
            .as_ref()
            .and_then(|name| {
                crate::resolve::item_tree(db, self.file)
                    .object(name)
                    .map(|o| o.start)
            })
            .unwrap_or_default();
        Span {
            file: self.file.name(db).clone(),
            range: self.range + offset,
        }
    }
}

/// A diagnostic whose places are [`Loc`]s.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalDiagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub loc: Loc,
    pub labels: Vec<(Loc, String)>,
    pub notes: Vec<String>,
    /// A fix: its title and its edits.
    pub fix: Option<(String, Vec<(Loc, String)>)>,
}

impl LocalDiagnostic {
    pub fn new(code: Code, severity: Severity, message: impl Into<String>, loc: Loc) -> Self {
        LocalDiagnostic {
            code,
            severity,
            message: message.into(),
            loc,
            labels: Vec::new(),
            notes: Vec::new(),
            fix: None,
        }
    }

    pub fn with_fix(mut self, title: impl Into<String>, edits: Vec<(Loc, String)>) -> Self {
        self.fix = Some((title.into(), edits));
        self
    }

    pub fn label(mut self, loc: Loc, message: impl Into<String>) -> Self {
        self.labels.push((loc, message.into()));
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn render(&self, db: &dyn crate::db::Db) -> Diagnostic {
        Diagnostic {
            code: self.code,
            severity: self.severity,
            message: self.message.clone(),
            span: self.loc.span(db),
            labels: self
                .labels
                .iter()
                .map(|(loc, message)| Label {
                    span: loc.span(db),
                    message: message.clone(),
                })
                .collect(),
            notes: self.notes.clone(),
            fix: self.fix.as_ref().map(|(title, edits)| Fix {
                title: title.clone(),
                edits: edits
                    .iter()
                    .map(|(loc, text)| (loc.span(db), text.clone()))
                    .collect(),
            }),
        }
    }
}
