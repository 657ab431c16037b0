//! The kernels: the few linear-algebra operations EqProp needs, on the CPU, and the GPU's.
//!
//! On the CPU, model code (dynamics, learning rule) calls only these operations. The GPU does
//! not replace them one by one: `backend::cuda` (`--features cuda`) runs whole phases and updates in its own kernels, and
//! the engine seam of [`crate::device`] chooses between the two for a whole run. The CPU kernels
//! are the reference implementation:
//!
//! * `matmul_acc`: `C += alpha * op(A) op(B)`, the dense GEMM behind every coupling term;
//! * [`input_drive`] (`D += X W`) and [`SparseColumns::rank_update`] (`W += c X^T Delta`, on a
//!   column-compressed view of the clamped input batch), which skip the zero pixels (most MNIST
//!   pixels are exactly zero);
//! * `relax_fused`: all steps of a phase for a chunk of samples, one sample at a time, when the
//!   free-to-free couplings are small enough to stay in cache (the 784-500-10 case).
//!
//! Only safe entry points are public: each kernel that has an AVX2+FMA variant asks the CPU at
//! run time which variant it may run (see `simd`), so no safe call can execute an instruction
//! the CPU lacks; the kernels' variants themselves are crate-private.
pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod fused;
pub(crate) mod simd;

pub use cpu::{SparseColumns, input_drive};
pub(crate) use cpu::{
    Transpose, matmul_acc, outer_acc_rows, rank_update_chunks, step_row, step_row_watched,
};
pub(crate) use fused::{FusedCouplings, FusedPhase, FusedScratch, relax_fused};
