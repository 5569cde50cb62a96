//! The IDE layer's plain data (byte offsets, labels, markdown) converted to
//! LSP types (UTF-16 positions). Every conversion lives here, so a handler
//! reads as: ask the analysis, convert the answer.

use std::collections::HashMap;
use std::sync::Arc;

use cvl_analysis::ide::{self, CompletionKind, Highlight};
use cvl_analysis::{Severity, SourceFile};
use cvl_syntax::{TextRange, TextSize};
use tower_lsp::lsp_types::*;

use crate::line_index::LineIndex;

/// The semantic token types the server declares, in the order the indexes
/// of [`semantic_tokens`] refer to.
pub const TOKEN_TYPES: [SemanticTokenType; 7] = [
    SemanticTokenType::KEYWORD,
    SemanticTokenType::STRING,
    SemanticTokenType::COMMENT,
    SemanticTokenType::TYPE,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::VARIABLE,
    SemanticTokenType::OPERATOR,
];

fn token_type(h: Highlight) -> u32 {
    match h {
        Highlight::Keyword => 0,
        Highlight::String => 1,
        Highlight::Comment => 2,
        Highlight::Type => 3,
        Highlight::Parameter => 4,
        Highlight::Component => 5,
        Highlight::Operator => 6,
    }
}

pub fn severity(severity: Severity) -> DiagnosticSeverity {
    match severity {
        Severity::Error => DiagnosticSeverity::ERROR,
        Severity::Warning => DiagnosticSeverity::WARNING,
        Severity::Hint => DiagnosticSeverity::HINT,
    }
}

/// A diagnostic of `file` (whose name is `own`): the same code and message
/// as `cvl check`; a diagnostic about another file is placed at the top and
/// names it. Labels in files with a path become related information, placed
/// with `index_of` (which should build each file's index once).
pub fn diagnostic(
    d: &cvl_analysis::Diagnostic,
    own: &str,
    index: &LineIndex,
    names: &HashMap<String, (Url, SourceFile)>,
    index_of: &mut dyn FnMut(SourceFile) -> Arc<LineIndex>,
) -> Diagnostic {
    let (range, mut message) = if d.span.file == own {
        (index.range(d.span.range), d.message.clone())
    } else {
        (
            Range::default(),
            format!("in `{}`: {}", d.span.file, d.message),
        )
    };
    for note in &d.notes {
        message.push('\n');
        message.push_str(note);
    }
    let related: Vec<DiagnosticRelatedInformation> = d
        .labels
        .iter()
        .filter_map(|l| {
            let (uri, other) = names.get(&l.span.file)?;
            let label_index = index_of(*other);
            Some(DiagnosticRelatedInformation {
                location: Location::new(uri.clone(), label_index.range(l.span.range)),
                message: l.message.clone(),
            })
        })
        .collect();
    Diagnostic {
        range,
        severity: Some(severity(d.severity)),
        code: Some(NumberOrString::String(d.code.as_str().to_string())),
        source: Some("cvl".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        ..Default::default()
    }
}

pub fn hover(index: &LineIndex, (range, text): (TextRange, String)) -> Hover {
    Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: text,
        }),
        range: Some(index.range(range)),
    }
}

pub fn completion_item(c: ide::CompletionItem) -> CompletionItem {
    CompletionItem {
        label: c.label,
        kind: Some(match c.kind {
            CompletionKind::Parameter => CompletionItemKind::PROPERTY,
            CompletionKind::Component => CompletionItemKind::FIELD,
            CompletionKind::Type => CompletionItemKind::CLASS,
            CompletionKind::Keyword => CompletionItemKind::KEYWORD,
            CompletionKind::Attribute => CompletionItemKind::VALUE,
            CompletionKind::ImportKey => CompletionItemKind::PROPERTY,
        }),
        detail: Some(c.detail),
        documentation: c.documentation.map(|d| {
            Documentation::MarkupContent(MarkupContent {
                kind: MarkupKind::Markdown,
                value: d,
            })
        }),
        ..Default::default()
    }
}

#[allow(deprecated)] // `deprecated` is a required field
pub fn document_symbol(s: ide::Symbol, index: &LineIndex) -> DocumentSymbol {
    DocumentSymbol {
        name: s.name,
        detail: (!s.detail.is_empty()).then_some(s.detail),
        kind: match s.kind {
            ide::SymbolKind::Object => SymbolKind::CLASS,
            ide::SymbolKind::Parameter => SymbolKind::PROPERTY,
            ide::SymbolKind::Component => SymbolKind::FIELD,
            ide::SymbolKind::Import => SymbolKind::MODULE,
        },
        tags: None,
        deprecated: None,
        range: index.range(s.range),
        selection_range: index.range(s.selection),
        children: Some(
            s.children
                .into_iter()
                .map(|c| document_symbol(c, index))
                .collect(),
        ),
    }
}

#[allow(deprecated)] // `deprecated` is a required field
pub fn workspace_symbol(name: String, location: Location) -> SymbolInformation {
    SymbolInformation {
        name,
        kind: SymbolKind::CLASS,
        tags: None,
        deprecated: None,
        location,
        container_name: None,
    }
}

pub fn folding_range(index: &LineIndex, range: TextRange) -> FoldingRange {
    let range = index.range(range);
    FoldingRange {
        start_line: range.start.line,
        end_line: range.end.line,
        ..Default::default()
    }
}

/// Highlights as LSP's relative tokens; a token may not span lines, so a
/// multi-line comment becomes one token per line.
pub fn semantic_tokens(
    text: &str,
    index: &LineIndex,
    highlights: Vec<(TextRange, Highlight)>,
) -> SemanticTokens {
    let mut data = Vec::new();
    let (mut last_line, mut last_start) = (0u32, 0u32);
    for (range, h) in highlights {
        let mut start = range.start();
        for line in text[range].split_inclusive('\n') {
            let piece = line.trim_end_matches(['\n', '\r']);
            let len: u32 = piece.chars().map(|c| c.len_utf16() as u32).sum();
            let pos = index.position(start);
            if len > 0 {
                let delta_line = pos.line - last_line;
                let delta_start = if delta_line == 0 {
                    pos.character - last_start
                } else {
                    pos.character
                };
                data.push(SemanticToken {
                    delta_line,
                    delta_start,
                    length: len,
                    token_type: token_type(h),
                    token_modifiers_bitset: 0,
                });
                last_line = pos.line;
                last_start = pos.character;
            }
            start += TextSize::of(line);
        }
    }
    SemanticTokens {
        result_id: None,
        data,
    }
}

pub fn inlay_hint(index: &LineIndex, (offset, label): (TextSize, String)) -> InlayHint {
    InlayHint {
        position: index.position(offset),
        label: InlayHintLabel::String(label),
        kind: None,
        text_edits: None,
        tooltip: Some(InlayHintTooltip::String(
            "the final value in this object".into(),
        )),
        padding_left: Some(false),
        padding_right: None,
        data: None,
    }
}

/// A quick fix editing the document at `uri`.
pub fn code_action(
    uri: &Url,
    index: &LineIndex,
    fix: cvl_analysis::diagnostics::Fix,
) -> CodeAction {
    let edits = fix
        .edits
        .iter()
        .map(|(span, text)| TextEdit::new(index.range(span.range), text.clone()))
        .collect();
    CodeAction {
        title: fix.title,
        kind: Some(CodeActionKind::QUICKFIX),
        edit: Some(WorkspaceEdit {
            changes: Some(HashMap::from([(uri.clone(), edits)])),
            ..Default::default()
        }),
        is_preferred: Some(true),
        ..Default::default()
    }
}
