//! Type hierarchy (LSP 3.17): what an appliance extends and what extends
//! it, through imports and across the workspace. An item carries its
//! file's URI and its object's name, to find it again.

use cvl_analysis::ide::TypeItem;
use cvl_analysis::Def;
use serde_json::json;
use tower_lsp::lsp_types::{
    SymbolKind, TypeHierarchyItem, TypeHierarchyPrepareParams, TypeHierarchySubtypesParams,
    TypeHierarchySupertypesParams, Url,
};

use crate::state::Answer;
use crate::world::Snapshot;

pub fn prepare(
    snap: &Snapshot,
    params: TypeHierarchyPrepareParams,
) -> Answer<Option<Vec<TypeHierarchyItem>>> {
    let Some((file, offset)) = snap.at(&params.text_document_position_params) else {
        return Ok(None);
    };
    Ok(snap
        .analysis
        .type_at(file, offset)?
        .and_then(|item| to_item(snap, &item))
        .map(|item| vec![item]))
}

pub fn supertypes(
    snap: &Snapshot,
    params: TypeHierarchySupertypesParams,
) -> Answer<Option<Vec<TypeHierarchyItem>>> {
    let Some(def) = from_item(snap, &params.item) else {
        return Ok(None);
    };
    let items = snap.analysis.supertypes(&def)?;
    Ok(Some(
        items.iter().filter_map(|i| to_item(snap, i)).collect(),
    ))
}

pub fn subtypes(
    snap: &Snapshot,
    params: TypeHierarchySubtypesParams,
) -> Answer<Option<Vec<TypeHierarchyItem>>> {
    let Some(def) = from_item(snap, &params.item) else {
        return Ok(None);
    };
    let items = snap.analysis.subtypes(&def, snap.local_files())?;
    Ok(Some(
        items.iter().filter_map(|i| to_item(snap, i)).collect(),
    ))
}

fn to_item(snap: &Snapshot, item: &TypeItem) -> Option<TypeHierarchyItem> {
    // The prelude's objects have no file to open: shown by name only.
    let uri = snap
        .uri(item.def.file)
        .or_else(|| Url::parse("cvl-prelude:///predefined.cvl").ok())?;
    let index = snap.line_index(item.def.file);
    Some(TypeHierarchyItem {
        name: item.def.name.to_string(),
        kind: SymbolKind::CLASS,
        tags: None,
        detail: Some(item.kind.to_string()),
        uri: uri.clone(),
        range: index.range(item.range),
        selection_range: index.range(item.name_range),
        data: Some(json!({ "uri": uri.to_string(), "name": item.def.name.to_string() })),
    })
}

fn from_item(snap: &Snapshot, item: &TypeHierarchyItem) -> Option<Def> {
    let data = item.data.as_ref()?;
    let name = data.get("name")?.as_str()?;
    let uri = Url::parse(data.get("uri")?.as_str()?).ok()?;
    let file = if uri.scheme() == "cvl-prelude" {
        snap.analysis.prelude()
    } else {
        snap.loaded_file(&uri)?
    };
    Some(Def {
        file,
        name: name.into(),
    })
}
