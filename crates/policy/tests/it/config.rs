//! Loading and validating configurations.

use policy::{Config, Handling, Hosting};

use crate::common::{example_setup, secrets, MINIMAL};

#[test]
fn the_shipped_example_loads() {
    let dir = tempfile::tempdir().unwrap();
    let text = example_setup(dir.path());
    let path = dir.path().join("phigate.yaml");
    std::fs::write(&path, &text).unwrap();
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.providers[0].base_url, "http://127.0.0.1:8000/v1");
    assert_eq!(c.providers[0].hosting, Hosting::Private);
    assert_eq!(c.use_cases.len(), 2);
    assert_eq!(
        c.use_cases[0].phi.categories.get(&phi::Category::Mrn),
        Some(&Handling::PrivateOnly)
    );
    assert_eq!(c.organization.blocked_categories, vec![phi::Category::Ssn]);
    assert!(c.store_url().ends_with("phigate-data/phigate.db"), "{}", c.store_url());
    assert!(c.store_url().starts_with(dir.path().to_str().unwrap()));
    let p = policy::Policy::new(c).unwrap();
    assert_eq!(p.version().len(), 16);
}

#[test]
fn minimal_loads() {
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let c = Config::from_yaml(MINIMAL, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.providers.len(), 3);
    assert_eq!(c.audit.hmac_key.to_string(), "[secret]");
    assert!(!format!("{c:?}").contains(&c.audit.hmac_key.expose().to_string()));
}
