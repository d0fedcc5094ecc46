//! End-to-end tests of the `phigate` binary: the output contract, errors, formats.

mod audit;
mod backup;
mod canary;
mod cli;
mod http;
mod policy_cli;
mod run;
mod serve;
mod vault;
