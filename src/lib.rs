//! # eqprop: Equilibrium Propagation in Rust
//!
//! A layered Hopfield-like energy network that learns by physics (Scellier & Bengio 2017).
//! Neurons relax to a minimum of
//!
//! ```text
//! E = 1/2 sum_k ||s_k||^2 - sum_k rho(s_{k-1})^T W_k rho(s_k) - sum_k b_k^T rho(s_k)
//! ```
//!
//! (`rho` the hard sigmoid); training compares a free phase with a phase nudged toward the target
//! and updates each weight from purely local activity differences.
//!
//! Modules follow the paper: [`network`] (couplings), [`energy`], [`dynamics`] (relaxation),
//! [`learning_rule`] (the EqProp update), [`data`], [`train`], [`dream`] (the label clamped, the
//! input free), [`prior`] (a class-conditional prior over the hidden code to dream from),
//! [`modulator`] (surprise-gated learning), [`continual`] (task after task, with dream replay),
//! [`world_model`] and [`agent`] (an online EqProp world model and the planner that
//! acts with it on CartPole and Pendulum, both on [`task`]); [`backend`] holds the kernels.
#![deny(clippy::missing_safety_doc, clippy::undocumented_unsafe_blocks)]
pub mod agent;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod continual;
pub mod conv;
pub mod data;
pub mod device;
pub mod dream;
pub mod dream_common;
pub mod dynamics;
pub mod energy;
pub mod env;
pub mod error;
pub mod judge;
pub mod learning_rule;
pub mod metrics;
pub mod modulator;
pub mod network;
pub(crate) mod parallel;
pub mod picture;
pub mod prior;
pub mod run;
pub mod stats;
pub mod task;
pub mod tensor;
pub mod train;
pub mod world_model;

pub use error::{Error, Result};

/// Starts the worker threads every engine shares: `threads` of them (default: rayon's, one per
/// core, or `RAYON_NUM_THREADS`). Call it before any work; results never depend on the count.
/// Fails if the workers were already started.
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        builder = builder.num_threads(n);
    }
    builder
        .build_global()
        .map_err(|e| Error::Invalid(format!("threads: starting the worker threads: {e}")))
}
