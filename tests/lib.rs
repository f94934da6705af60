//! End-to-end tests of tracker-store across crates; see the files in this directory.
