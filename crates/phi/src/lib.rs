//! # phi — find and transform Protected Health Information in clinical text
//!
//! `phi` finds the HIPAA Safe Harbor identifiers in text and replaces them. It does no I/O, no
//! async and no logging: it takes `&str` and returns spans ([`Finding`]) that carry offsets,
//! a [`Category`], a confidence and the recognizer's name, never the matched text.
//!
//! ```
//! let scanner = phi::Scanner::new().unwrap();
//! let text = "Seen by Dr. Alan Smith on 03/14/2021, MRN: 4471902.";
//! let findings = scanner.scan(text);
//! let cats: Vec<&str> = findings.iter().map(|f| f.category.as_str()).collect();
//! assert_eq!(cats, ["NAME", "DATE", "MRN"]);
//! ```
//!
//! Build a [`Scanner`] once and share it (`Send + Sync`); scanning takes `&self`.

#![deny(missing_docs)]

mod category;
mod error;
mod finding;
mod fold;
pub mod text;

pub use category::{Category, UnknownCategory};
pub use error::Error;
pub use finding::Finding;
mod recognize;
mod scanner;
pub mod transform;
pub mod validate;

pub use scanner::{NamePart, Scanner, ScannerBuilder};
