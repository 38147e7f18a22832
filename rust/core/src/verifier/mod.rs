//! The verifier: proves programs safe by abstract interpretation.

pub mod scalar;
pub mod tnum;
