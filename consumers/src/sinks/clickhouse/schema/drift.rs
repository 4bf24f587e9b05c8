//! Drift: how what a server reports (`system.tables`, `system.columns`) differs from a [`Plan`]
//! ([`check`]), and the columns a migration may add to a table that lacks them ([`additions`]).

use std::collections::BTreeMap;
use std::fmt;

use super::ddl::qualified;
use super::objects::{ColumnKind, ObjectKind, Plan};

/// A column as the server describes it (`system.columns`, the same as `DESCRIBE TABLE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedColumn {
    /// The table or view.
    pub table: String,
    /// The column.
    pub name: String,
    /// Its type.
    pub ty: String,
    /// `default_kind`: `''`, `DEFAULT`, `MATERIALIZED`, `ALIAS`, `EPHEMERAL`.
    pub default_kind: String,
}

/// One difference between the plan and the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// `database.object`.
    pub object: String,
    /// What differs.
    pub problem: DriftProblem,
}

/// What differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftProblem {
    /// The object has another engine (e.g. a table where a view belongs).
    Engine {
        /// The engine the plan wants.
        expected: String,
        /// The server's.
        found: String,
    },
    /// A column is missing.
    MissingColumn {
        /// The column.
        column: String,
        /// Its planned type.
        expected: String,
    },
    /// A column has another type.
    ColumnType {
        /// The column.
        column: String,
        /// The planned type.
        expected: String,
        /// The server's.
        found: String,
    },
    /// A column is computed differently (stored vs `DEFAULT` vs `ALIAS`).
    ColumnKind {
        /// The column.
        column: String,
        /// The planned kind.
        expected: String,
        /// The server's.
        found: String,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.object;
        match &self.problem {
            DriftProblem::Engine { expected, found } => write!(f, "{o} has engine {found}, expected {expected}"),
            DriftProblem::MissingColumn { column, expected } => {
                write!(f, "{o} has no column `{column}` (expected {expected})")
            }
            DriftProblem::ColumnType { column, expected, found } => {
                write!(f, "{o}: column `{column}` is {found}, expected {expected}")
            }
            DriftProblem::ColumnKind { column, expected, found } => {
                write!(f, "{o}: column `{column}` is {found}, expected {expected}")
            }
        }
    }
}

/// Types compare without spaces and quote escapes: servers differ in `DateTime64(3, 'UTC')` vs
/// `DateTime64(3,'UTC')`.
pub(super) fn normalized(ty: &str) -> String {
    ty.chars().filter(|c| !c.is_whitespace() && *c != '\\').collect()
}

/// Compares what the server has (`engines`: object name → engine, from `system.tables`;
/// `described`: its columns) with the plan. Objects the server lacks are not reported (migrate
/// creates them); extra columns are allowed (an operator may add some for analysts).
/// The `ALTER TABLE … ADD COLUMN` statements that give the existing objects which evolve (see
/// [`Object::evolves`](super::Object::evolves)) the stored columns they lack, as `(object, column, statement)`.
pub fn additions(plan: &Plan, described: &[DescribedColumn]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for object in plan.objects.iter().filter(|o| o.evolves) {
        let have: Vec<&str> = described.iter().filter(|c| c.table == object.name).map(|c| c.name.as_str()).collect();
        if have.is_empty() {
            continue; // Not there yet: its CREATE has every column.
        }
        for column in object.columns.iter().filter(|c| c.kind == ColumnKind::Stored && !have.contains(&c.name.as_str()))
        {
            let sql = format!(
                "ALTER TABLE {}{} ADD COLUMN {}",
                qualified(&plan.database, &object.name),
                plan.on_cluster(),
                column.ddl()
            );
            out.push((qualified(&plan.database, &object.name), column.name.clone(), sql));
        }
    }
    out
}

pub fn check(plan: &Plan, engines: &BTreeMap<String, String>, described: &[DescribedColumn]) -> Vec<Drift> {
    let mut drift = Vec::new();
    for object in &plan.objects {
        let Some(engine) = engines.get(&object.name) else { continue };
        let name = qualified(&plan.database, &object.name);
        if *engine != object.engine {
            drift.push(Drift {
                object: name,
                problem: DriftProblem::Engine { expected: object.engine.clone(), found: engine.clone() },
            });
            continue;
        }
        let have: BTreeMap<&str, &DescribedColumn> =
            described.iter().filter(|c| c.table == object.name).map(|c| (c.name.as_str(), c)).collect();
        for column in &object.columns {
            let problem = match have.get(column.name.as_str()) {
                None => {
                    Some(DriftProblem::MissingColumn { column: column.name.to_owned(), expected: column.ty.clone() })
                }
                Some(found) if normalized(&found.ty) != normalized(&column.ty) => Some(DriftProblem::ColumnType {
                    column: column.name.to_owned(),
                    expected: column.ty.clone(),
                    found: found.ty.clone(),
                }),
                // A view's columns are its query's: their kind is not the server's business.
                Some(found)
                    if matches!(object.kind, ObjectKind::Table | ObjectKind::Distributed)
                        && ColumnKind::from_server(&found.default_kind) != Some(column.kind) =>
                {
                    Some(DriftProblem::ColumnKind {
                        column: column.name.to_owned(),
                        expected: column.kind.to_string(),
                        found: if found.default_kind.is_empty() {
                            "stored".to_owned()
                        } else {
                            found.default_kind.clone()
                        },
                    })
                }
                Some(_) => None,
            };
            drift.extend(problem.map(|problem| Drift { object: name.clone(), problem }));
        }
    }
    drift
}
