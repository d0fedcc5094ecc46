//! End-to-end tests of the `phigate` binary: the output contract, errors, formats.

mod audit;
mod backup;
mod cli;
mod policy_cli;
mod serve;
mod vault;
