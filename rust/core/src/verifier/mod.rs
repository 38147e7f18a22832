//! The verifier: proves programs safe by abstract interpretation.
