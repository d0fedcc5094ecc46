//! [`Revealed`] values: plaintext PHI, held in zeroizing memory, with a redacting `Debug`.

use std::collections::HashMap;
use std::fmt;

use zeroize::Zeroizing;

/// One re-identified value: its category and plaintext. `Debug` shows the category only; the
/// plaintext is zeroized on drop and reached only through [`PlainValue::expose`].
pub struct PlainValue {
    category: String,
    value: Zeroizing<String>,
}

impl PlainValue {
    pub(crate) fn new(category: String, value: Zeroizing<String>) -> PlainValue {
        PlainValue { category, value }
    }

    /// The PHI category (`NAME`, `DATE`, ...).
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The plaintext. Whoever calls this holds PHI: never log it.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for PlainValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainValue({}, <redacted>)", self.category)
    }
}

/// The result of a reveal: token → value for every token found, plus the tokens that are not in
/// the scope. `Debug` shows tokens and categories, never values.
#[derive(Default)]
pub struct Revealed {
    pub(crate) values: HashMap<String, PlainValue>,
    pub(crate) missing: Vec<String>,
}

impl Revealed {
    /// The value of `token`, if it was found.
    pub fn get(&self, token: &str) -> Option<&PlainValue> {
        self.values.get(token)
    }

    /// Every (token, value) found, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PlainValue)> {
        self.values.iter().map(|(t, v)| (t.as_str(), v))
    }

    /// How many values were revealed.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was revealed.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Tokens asked for that the scope does not hold.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }
}

impl fmt::Debug for Revealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revealed")
            .field("values", &self.values)
            .field("missing", &self.missing)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let mut r = Revealed::default();
        r.values.insert(
            "[NAME_1]".into(),
            PlainValue::new("NAME".into(), Zeroizing::new("Jane Roe".into())),
        );
        let dbg = format!("{r:?}");
        assert!(dbg.contains("[NAME_1]") && dbg.contains("NAME") && !dbg.contains("Jane"));
        assert_eq!(r.get("[NAME_1]").map(PlainValue::expose), Some("Jane Roe"));
    }
}
