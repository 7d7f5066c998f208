//! The SASL mechanisms Sluice's broker serves, as pure functions of the
//! client's tokens: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802,
//! RFC 7677). A crate of its own so that the fuzz targets (`fuzz/`) build
//! it alone; the broker (`security::sasl`) does the I/O, the delays and
//! the counting around them.

pub mod plain;
pub mod scram;
