//! Integration tests of the `phi` crate: the golden corpus (data files), property tests and
//! cues across field layouts.

mod addresses;
mod casing;
mod golden;
mod layout;
mod lookalikes;
mod props;
mod repeat;
