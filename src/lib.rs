//! # eqprop: Equilibrium Propagation in Rust
//!
//! A layered Hopfield-like energy network that learns by physics (Scellier & Bengio 2017).
pub mod data;
