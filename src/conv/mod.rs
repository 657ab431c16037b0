//! Networks of any architecture: convolutional and dense couplings, mixed at any depth.
//!
//! The energy keeps the form of the layered network, each coupling contributing its primitive
//! `Phi_k` (Laborieux et al. 2021):
//!
//! ```text
//! E = sum_k ( 1/2 ||s_k||^2 - b_k . rho(s_k) ) - sum_k Phi_k(s_{k-1}, s_k)
//! Phi_k = < rho(s_k), P(conv(rho(s_{k-1}), W_k)) >    or    rho(s_{k-1}) W_k . rho(s_k)
//! ```
//!
//! with `P` a max-pool inside the coupling. [`architecture`] parses a spec such as
//! `1x28x28,conv32k5+pool,conv64k5+pool,10`; [`net`] holds the parameters; [`relax`] relaxes a
//! chunk of samples (synchronously, or alternating odd and even layers) and computes
//! `dPhi/dtheta`; [`optimizer`] turns the estimate into a step (SGD or Adam); [`kernels`] are the channels-last im2col convolution, its transpose and the
//! pooling; [`train`] is EqProp on mini-batches; [`checkpoint`] saves the network with its
//! architecture; [`crate::run::ConvRun`] is a whole run (epochs, evaluation, files).
pub mod architecture;
pub mod checkpoint;
pub mod generative;
pub mod kernels;
pub mod net;
pub mod optimizer;
pub mod relax;
pub mod train;

pub use architecture::{ArchError, Architecture, Coupling, Shape, StateRange};
pub use generative::{ConvDream, dream};
pub use net::{ConvNet, Gradient, ParamError};
pub use optimizer::{Adam, Optimizer};
pub use relax::{ConvPhase, ConvState, Pull, Sweep, Workspace, symmetric_difference};
pub use train::{ConvConfig, ConvEpoch, ConvTrainer, Normalization, evaluate};
