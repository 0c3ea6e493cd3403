//! Embedded simulator.
