//! pgivf: a pgvector-compatible `vector` type and `ivfflat` index access method.
//!
//! This crate is glue only: it turns PostgreSQL datums, buffers and catalog lookups into plain Rust
//! data and calls `pgivf_core`, where the algorithms live. All SQL objects are declared by hand in
//! `sql/pgivf.sql` (pgvector's names and signatures), and every C-callable symbol is defined with
//! [`pg_function!`] so that the SQL and the symbols are under our control rather than generated.

#[macro_use]
mod fmgr;
mod am;
mod compat;
mod error;
mod types;

::pgrx::pg_module_magic!(name, version);

::pgrx::extension_sql_file!("../sql/pgivf.sql", name = "pgivf", bootstrap);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    am::init();
}

/// Tests run through `cargo pgrx test` need this module even though ours live in `tests/`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
