//! Reading `[projections.<name>.couchbase]` (see [`crate::topology::CouchbaseSink`]): bucket,
//! scope and collection, the document id template, the document's fields, and the durability of
//! the writes.

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::DeValue;

use super::super::columns::FieldPath;
use super::super::diagnostics::Issue;
use super::super::model::{
    COUCHBASE_DEFAULT_COLLECTION, CouchbaseDurability, CouchbaseSink, DocumentField, DocumentId, OnErase,
};
use super::names::{display_path, valid_couchbase_bucket, valid_couchbase_collection};
use super::string_offset;
use super::walker::{Secrets, Table, Walker};

impl Walker<'_> {
    pub(super) fn couchbase(&mut self, t: &mut Table<'_, '_>) -> CouchbaseSink {
        let collection_rule = "a Couchbase scope or collection name (letters, digits, `_`, `-`, `%`; not starting with `_` or `%` unless `_default`)";
        let bucket = self.checked_string(t, "bucket", valid_couchbase_bucket, "a Couchbase bucket name");
        let scope = self.checked_string(t, "scope", valid_couchbase_collection, collection_rule);
        let collection = self.checked_string(t, "collection", valid_couchbase_collection, collection_rule);
        let document_id = self.string(t, "document_id").and_then(|text| match DocumentId::parse(&text) {
            Ok(id) => Some(id),
            Err(e) => {
                let span = t.span_of("document_id");
                let at = string_offset(self.src, span, &text, e.offset, 1);
                self.issues.push(Issue::error(at, format!("`document_id`: {}", e.message)));
                None
            }
        });
        let document_id = t.require(self, "document_id", document_id, "\"<entity>::{aggregate_id}\"");
        let ttl = self.duration(t, "ttl", false);
        let erase_on = self.strings(t, "erase_on").unwrap_or_default();
        let on_erase = self.choice(t, "on_erase", OnErase::NAMES);
        let fields = self.fields(t);
        let durability = self.choice(t, "durability", CouchbaseDurability::NAMES);
        CouchbaseSink {
            bucket,
            scope: scope.unwrap_or_else(|| COUCHBASE_DEFAULT_COLLECTION.to_owned()),
            collection: collection.unwrap_or_else(|| COUCHBASE_DEFAULT_COLLECTION.to_owned()),
            document_id: document_id.unwrap_or_else(DocumentId::missing),
            ttl,
            erase_on,
            on_erase: on_erase.unwrap_or_default(),
            fields,
            durability: durability.unwrap_or_default(),
        }
    }

    /// `fields = { doc_field = "path" | ["path", …] | { set_by = […], cleared_by = […] } }`: each
    /// path's range is recorded at `fields/<doc_field>/<index>` (a single one as index 0).
    pub(super) fn fields(&mut self, t: &mut Table<'_, '_>) -> Option<BTreeMap<String, DocumentField>> {
        let value = t.value("fields")?;
        let path = t.child("fields");
        let Some(entries) = value.get_ref().as_table() else {
            self.type_error(&path, value, "table");
            return None;
        };
        self.spans.insert(&path, value.span());
        if entries.is_empty() {
            self.issues.push(
                Issue::error(
                    value.span(),
                    format!("`{}` is empty: documents would get no fields", display_path(&path)),
                )
                .hint("leave `fields` out to merge every payload field of each event into the document"),
            );
        }
        let mut out = BTreeMap::new();
        for (key, source) in entries.iter() {
            let doc_field = key.get_ref().to_string();
            let mut source_path = path.clone();
            source_path.push(doc_field.clone());
            let items: Vec<(usize, &Spanned<DeValue<'_>>)> = match source.get_ref() {
                DeValue::String(_) => vec![(0, source)],
                DeValue::Array(items) if !items.is_empty() => items.iter().enumerate().collect(),
                DeValue::Table(entries) => {
                    self.spans.insert(&source_path, source.span());
                    let mut flag = Table::new(source_path.clone(), entries, source.span(), Secrets::Other);
                    let set_by = self.strings(&mut flag, "set_by").unwrap_or_default();
                    let cleared_by = self.strings(&mut flag, "cleared_by").unwrap_or_default();
                    flag.finish(self);
                    // Any other key was reported as unknown, with what it likely meant.
                    if entries.is_empty() {
                        self.issues.push(
                            Issue::error(
                                source.span(),
                                format!("flag `{}` needs `set_by` or `cleared_by`", display_path(&source_path)),
                            )
                            .hint(format!(
                                "e.g. `{doc_field} = {{ set_by = [\"order.shipped\"], cleared_by = [\"order.returned\"] }}`"
                            )),
                        );
                    }
                    out.insert(doc_field, DocumentField::Flag { set_by, cleared_by });
                    continue;
                }
                _ => {
                    self.issues.push(
                        Issue::error(
                            source.span(),
                            format!(
                                "`{}` must name an event field, a list of them, or be a flag `{{ set_by = […], cleared_by = […] }}`",
                                display_path(&source_path)
                            ),
                        )
                        .hint(format!("e.g. `{doc_field} = \"{doc_field}\"`")),
                    );
                    continue;
                }
            };
            let mut paths = Vec::new();
            for (i, item) in items {
                let mut item_path = source_path.clone();
                item_path.push(i.to_string());
                match item.get_ref().as_str() {
                    Some(text) => match FieldPath::parse(text) {
                        Some(field) => {
                            self.spans.insert(&item_path, item.span());
                            paths.push(field);
                        }
                        None => {
                            self.spans.mark_broken(&item_path);
                            self.issues.push(
                                Issue::error(
                                    item.span(),
                                    format!("{text:?} in `{}` is not a field path", display_path(&source_path)),
                                )
                                .hint(
                                    "write a field (\"total\"), a nested one (\"customer.id\"), an array \
                                     element (\"items[0].sku\") or every element (\"items[].sku\")",
                                ),
                            );
                        }
                    },
                    None => self.type_error(&item_path, item, "string"),
                }
            }
            out.insert(doc_field, DocumentField::First(paths));
        }
        Some(out)
    }
}
