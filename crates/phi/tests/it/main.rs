//! Integration tests of the `phi` crate: the golden corpus (data files) and property tests.

mod golden;
mod props;
