//! The store's vocabulary, shared by both backends: the rows the engine
//! and the API read and the changes they write, per concern. The SQL for
//! each concern lives in `postgres/` and `sqlite/` under the same file
//! names.

pub mod access;
pub mod alerts;
pub mod records;
pub mod reports;
pub mod rules;
pub mod views;
