//! Port implementations. `local`: the embedded backends (files + SQLite) a user runs on one
//! machine; they are production code, not test doubles.

pub mod local;
