//! Append throughput benchmark (filled in next).

fn main() {}
