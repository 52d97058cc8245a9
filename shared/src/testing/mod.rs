//! Port contract suites.
