//! Who may do what: the phigate configuration (one YAML file), identities (API keys, OIDC JWTs), roles, use cases as scope statements, providers with their BAA state, and the decision for one request.

#![deny(missing_docs)]
