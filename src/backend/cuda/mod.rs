//! The CUDA backend: the same phases and update as the CPU kernels, on an NVIDIA GPU.
//!
//! cudarc loads the driver, NVRTC and cuBLAS at run time, so this module builds without CUDA;
//! [`Gpu::open`] says clearly what is missing on a machine without them. The kernels
//! (`kernels.cu`, compiled by NVRTC for the device found) are:
//!
//! * The input drive `x W_1` is constant while the input is clamped: one cuBLAS GEMM per phase
//!   ([`Gpu::input_drive`]) computes it for the batch.
//! * `relax_pair` (`relax_pair.cu`): all `T` steps of a phase of a one-hidden-layer net
//!   (784-H-10) in one launch, one sample per thread block. NVRTC compiles it for the net's
//!   shape, so each thread keeps its hidden units' states, fixed drives and rows of `W_2` in
//!   registers for the whole phase; the output sits in shared memory.
//! * `relax`: the same for any depth: every free state in shared memory, free-to-free
//!   couplings read from global memory (they stay in L1/L2), one launch per phase, not one per
//!   step or elementwise op.
//! * Both write the final energy and the prediction from the same launch.
//! * `update`: `W_k += c (P_a^T Q_a - P_b^T Q_b)` and the bias, in one tiled pass per coupling.
//!
//! The input layer is clamped and every other layer free: the classification phases that
//! training and evaluation run (dreaming, with the input free, stays on the CPU). The CUDA
//! engine that trains with them is [`crate::device`]'s.

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys::cublasOperation_t};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PushKernelArg, sys::CUfunction_attribute,
};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use crate::network::Network;

const KERNELS: &str = include_str!("kernels.cu");
const RELAX_PAIR: &str = include_str!("relax_pair.cu");
/// Registers per thread `relax_pair` may give to rows of `W_2` (units x outputs).
const PAIR_MAX_WEIGHTS: usize = 96;
/// `MAX_LAYERS` and `NARROW` of `kernels.cu`.
const MAX_LAYERS: usize = 8;
const NARROW: usize = 32;
/// Shared memory a block may use on the GPUs we target (sm_80 and later allow 163-227 KiB).
const MAX_SHARED_BYTES: usize = 160 * 1024;

/// Why the CUDA backend cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error(
        "no CUDA driver found (libcuda.so could not be loaded): --device cuda needs an NVIDIA GPU \
         and its driver; use --device cpu"
    )]
    NoDriver,
    #[error(
        "{0} could not be loaded: install the CUDA toolkit (or the pip wheel nvidia-{1}) and put \
         its lib folder on LD_LIBRARY_PATH"
    )]
    MissingLibrary(&'static str, &'static str),
    #[error("no CUDA device was found: {0}")]
    NoDevice(String),
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    #[error("cuBLAS: {0}")]
    Blas(#[from] cudarc::cublas::result::CublasError),
    #[error("compiling the kernels with NVRTC: {0}")]
    Compile(String),
    #[error("the CUDA backend does not support {0}")]
    Unsupported(String),
}

/// Hidden units, output units and threads per block of a compiled `relax_pair`.
type PairShape = (usize, usize, usize);

/// An open GPU: its stream, cuBLAS handle and compiled kernels.
pub struct Gpu {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    name: String,
    _module: Arc<CudaModule>,
    relax: CudaFunction,
    update: CudaFunction,
    load_batch: CudaFunction,
    move_rows: CudaFunction,
    /// Dynamic shared memory the relax kernel was last allowed (above the default 48 KiB).
    relax_smem_allowed: Cell<usize>,
    /// `relax_pair` compiled per (hidden, output, threads) shape, with its module.
    pair_kernels: RefCell<HashMap<PairShape, (Arc<CudaModule>, CudaFunction)>>,
    /// Whether one-hidden-layer nets use `relax_pair` (else the general kernel).
    use_pair: Cell<bool>,
    arch: String,
}

impl Gpu {
    /// Opens GPU 0 and compiles the kernels for it.
    pub fn open() -> Result<Self, CudaError> {
        // cudarc panics when a library is missing: look for each one first.
        // SAFETY: these only try to dlopen the libraries.
        unsafe {
            if !cudarc::driver::sys::is_culib_present() {
                return Err(CudaError::NoDriver);
            }
            if !cudarc::nvrtc::sys::is_culib_present() {
                return Err(CudaError::MissingLibrary(
                    "NVRTC (libnvrtc.so)",
                    "cuda-nvrtc",
                ));
            }
            if !cudarc::cublas::sys::is_culib_present() {
                return Err(CudaError::MissingLibrary("cuBLAS (libcublas.so)", "cublas"));
            }
        }
        let count = CudaContext::device_count().map_err(|e| CudaError::NoDevice(e.to_string()))?;
        if count < 1 {
            return Err(CudaError::NoDevice("the driver reports 0 devices".into()));
        }
        let ctx = CudaContext::new(0).map_err(|e| CudaError::NoDevice(e.to_string()))?;
        // SAFETY: one stream does all the work, so no cross-stream events are needed.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability()?;
        let arch = format!("--gpu-architecture=compute_{major}{minor}");
        let module = ctx.load_module(compile(KERNELS, &arch, &[])?)?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())?;
        let f = |name: &str| module.load_function(name);
        Ok(Self {
            name: format!("{} (sm_{major}{minor})", ctx.name()?),
            relax: f("relax")?,
            update: f("update")?,
            load_batch: f("load_batch")?,
            move_rows: f("move_rows")?,
            _module: module,
            stream,
            blas,
            relax_smem_allowed: Cell::new(48 * 1024),
            pair_kernels: RefCell::new(HashMap::new()),
            use_pair: Cell::new(true),
            arch,
        })
    }

    /// Lets one-hidden-layer nets use the specialised `relax_pair` kernel (the default) or
    /// makes them take the general one (to compare the two).
    pub fn set_pair_kernel(&self, on: bool) {
        self.use_pair.set(on);
    }

    /// `relax_pair` for `sizes` and its threads per block, if that kernel serves them.
    fn pair_kernel(&self, sizes: &[usize]) -> Result<Option<(CudaFunction, usize)>, CudaError> {
        let &[_, hidden, out] = sizes else {
            return Ok(None);
        };
        let threads = (hidden.div_ceil(4)).next_power_of_two().clamp(64, 512);
        if !self.use_pair.get() || hidden.div_ceil(threads) * out > PAIR_MAX_WEIGHTS {
            return Ok(None);
        }
        let key = (hidden, out, threads);
        if let Some((_, f)) = self.pair_kernels.borrow().get(&key) {
            return Ok(Some((f.clone(), threads)));
        }
        let defines = [("HID", hidden), ("OUT", out), ("THREADS", threads)];
        let ptx = compile(RELAX_PAIR, &self.arch, &defines)?;
        let module = self.stream.context().load_module(ptx)?;
        let f = module.load_function("relax_pair")?;
        self.pair_kernels
            .borrow_mut()
            .insert(key, (module, f.clone()));
        Ok(Some((f, threads)))
    }

    /// The device's name and compute capability.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Registers and local (spilled) bytes per thread of the relax and update kernels.
    pub fn kernel_resources(&self) -> Result<String, CudaError> {
        let mut out = Vec::new();
        for (name, f) in [("relax", &self.relax), ("update", &self.update)] {
            out.push(format!(
                "{name}: {} registers, {} B local per thread",
                f.num_regs()?,
                f.local_size_bytes()?
            ));
        }
        Ok(out.join("; "))
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits for every queued kernel.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        Ok(self.stream.synchronize()?)
    }

    /// A device copy of `host`.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>, CudaError> {
        Ok(self.stream.clone_htod(host)?)
    }

    /// `n` zeros on the device.
    pub fn zeros(&self, n: usize) -> Result<CudaSlice<f32>, CudaError> {
        Ok(self.stream.alloc_zeros::<f32>(n.max(1))?)
    }

    /// A host copy of `dev`.
    pub fn download<T: DeviceRepr + Default + Clone>(
        &self,
        dev: &CudaSlice<T>,
    ) -> Result<Vec<T>, CudaError> {
        Ok(self.stream.clone_dtoh(dev)?)
    }

    /// `input = x W_1` for a batch: the drive of the clamped input on layer 1 (the phases add
    /// the bias).
    pub fn input_drive(
        &self,
        net: &GpuNetwork,
        x: &CudaSlice<f32>,
        batch: usize,
        input: &mut CudaSlice<f32>,
    ) -> Result<(), CudaError> {
        let (m, n) = (net.sizes[0], net.sizes[1]);
        // Row-major C (batch x n) = X (batch x m) W (m x n) is column-major C^T = W^T X^T.
        let gemm = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_N,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: n as i32,
            n: batch as i32,
            k: m as i32,
            alpha: 1.0f32,
            lda: n as i32,
            ldb: m as i32,
            beta: 0.0f32,
            ldc: n as i32,
        };
        // SAFETY: shapes as above; every buffer holds at least what the GEMM reads or writes.
        unsafe { self.blas.gemm(gemm, &net.w[1], x, input) }?;
        Ok(())
    }

    /// Relaxes the free layers of `states` (batch x size each) for one phase.
    ///
    /// `input` is the input drive `x W_1` of [`input_drive`](Self::input_drive). The phase
    /// starts as `start` says. `nudge` pulls the output toward `target` with strength `beta`.
    /// `out` receives, per sample, the energy at the final state and the predicted class.
    /// One-hidden-layer nets run the specialised `relax_pair` kernel, others the general one.
    #[allow(clippy::too_many_arguments)]
    pub fn relax(
        &self,
        net: &GpuNetwork,
        input: &CudaSlice<f32>,
        states: &mut Layers,
        start: Start,
        phase: GpuPhase,
        nudge: Option<(f32, &CudaSlice<f32>)>,
        out: Option<Outputs>,
    ) -> Result<(), CudaError> {
        let batch = states.batch;
        if batch == 0 {
            return Ok(());
        }
        assert!(input.len() >= batch * net.sizes[1], "input drive too small");
        let (beta, target) = match nudge {
            Some((beta, t)) => (beta, ptr(t, &self.stream)),
            None => (0.0, 0),
        };
        let (energy, argmax, offset) = match &out {
            Some(o) => (
                ptr(o.energy, &self.stream),
                ptr(o.argmax, &self.stream),
                o.offset as i32,
            ),
            None => (0, 0, 0),
        };
        let steps = phase.steps as i32;
        if let Some((f, threads)) = self.pair_kernel(&net.sizes)? {
            let (h, y) = (
                ptr(&states.s[1], &self.stream),
                ptr(&states.s[2], &self.stream),
            );
            let (h0, y0) = match &start {
                Start::Zero => (0, 0),
                Start::InPlace => (h, y),
                Start::From(init) => {
                    assert_eq!(init.batch, batch, "start states of another batch size");
                    (ptr(&init.s[1], &self.stream), ptr(&init.s[2], &self.stream))
                }
            };
            let cfg = LaunchConfig {
                grid_dim: (batch as u32, 1, 1),
                block_dim: (threads as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut launch = self.stream.launch_builder(&f);
            launch
                .arg(&net.w[2])
                .arg(&net.b[1])
                .arg(&net.b[2])
                .arg(input)
                .arg(&h)
                .arg(&y)
                .arg(&h0)
                .arg(&y0)
                .arg(&steps)
                .arg(&phase.eps)
                .arg(&beta)
                .arg(&target)
                .arg(&energy)
                .arg(&argmax)
                .arg(&offset);
            // SAFETY: the kernel was compiled for these sizes; states hold batch rows each.
            unsafe { launch.launch(cfg) }?;
            return Ok(());
        }
        let threads = block_threads(&net.sizes);
        let (desc, shared_floats) = self.describe(net, input, states, &start, threads)?;
        let bytes = shared_floats * 4;
        if bytes > self.relax_smem_allowed.get() {
            self.relax.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )?;
            self.relax_smem_allowed.set(bytes);
        }
        let cfg = LaunchConfig {
            grid_dim: (batch as u32, 1, 1),
            block_dim: (threads as u32, 1, 1),
            shared_mem_bytes: bytes as u32,
        };
        let nudge_layer = match nudge {
            Some(_) => net.sizes.len() as i32 - 1,
            None => -1,
        };
        let mut launch = self.stream.launch_builder(&self.relax);
        launch
            .arg(&desc)
            .arg(&steps)
            .arg(&phase.eps)
            .arg(&beta)
            .arg(&nudge_layer)
            .arg(&target)
            .arg(&energy)
            .arg(&argmax)
            .arg(&offset);
        // SAFETY: `describe` checked every buffer against the sizes the kernel indexes.
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }

    /// The general kernel's view of a phase, and the shared memory (floats) it needs.
    fn describe(
        &self,
        net: &GpuNetwork,
        input: &CudaSlice<f32>,
        states: &Layers,
        start: &Start,
        threads: usize,
    ) -> Result<(NetDesc, usize), CudaError> {
        let sizes = &net.sizes;
        let layers = sizes.len();
        let batch = states.batch;
        let mut d = NetDesc::zeroed();
        d.layers = layers as i32;
        d.batch = batch as i32;
        d.input = ptr(input, &self.stream);
        let mut at = 0usize;
        for (k, &n) in sizes.iter().enumerate() {
            d.size[k] = n as i32;
        }
        #[allow(clippy::needless_range_loop)] // k indexes eight parallel arrays
        for k in 1..layers {
            d.off_s[k] = at as i32;
            at += sizes[k];
            if k >= 2 {
                d.off_dn[k] = at as i32;
                at += if sizes[k] >= NARROW {
                    sizes[k]
                } else {
                    (threads / 32) * NARROW
                };
            }
            if k + 1 < layers {
                d.off_up[k] = at as i32;
                at += sizes[k];
            }
            d.w[k] = ptr(&net.w[k], &self.stream);
            d.s[k] = ptr(&states.s[k], &self.stream);
            d.bias[k] = ptr(&net.b[k], &self.stream);
            d.init[k] = match start {
                Start::Zero => 0,
                Start::InPlace => d.s[k],
                Start::From(init) => {
                    assert_eq!(init.batch, batch, "start states of another batch size");
                    ptr(&init.s[k], &self.stream)
                }
            };
        }
        if at * 4 > MAX_SHARED_BYTES {
            return Err(CudaError::Unsupported(format!(
                "layers {sizes:?}: their free states need {} KiB of shared memory per sample, \
                 more than {} KiB",
                at * 4 / 1024,
                MAX_SHARED_BYTES / 1024
            )));
        }
        Ok((d, at))
    }

    /// The EqProp update of every coupling and bias:
    /// `W_k += c_k (a_{k-1}^T a_k - b_{k-1}^T b_k)`, `b_k += c_k sum (a_k - b_k)`, with
    /// `c_k = scale[k-1]` and layer 0 the clamped input `x` in both.
    pub fn update(
        &self,
        net: &mut GpuNetwork,
        scale: &[f32],
        x: &CudaSlice<f32>,
        a: &Layers,
        b: &Layers,
    ) -> Result<(), CudaError> {
        let batch = a.batch as i32;
        for k in 1..net.sizes.len() {
            let (m, n) = (net.sizes[k - 1], net.sizes[k]);
            let (pa, pb) = match k {
                1 => (x, x),
                _ => (&a.s[k - 1], &b.s[k - 1]),
            };
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(32) as u32, (m + 1).div_ceil(32) as u32, 1),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            let (m_i, n_i) = (m as i32, n as i32);
            let (w, bias) = net.coupling_mut(k);
            let mut launch = self.stream.launch_builder(&self.update);
            launch
                .arg(w)
                .arg(bias)
                .arg(&m_i)
                .arg(&n_i)
                .arg(&batch)
                .arg(pa)
                .arg(&a.s[k])
                .arg(pb)
                .arg(&b.s[k])
                .arg(&scale[k - 1]);
            // SAFETY: W is m x n, the bias n, P batch x m, Q batch x n.
            unsafe { launch.launch(cfg) }?;
        }
        Ok(())
    }

    /// Inputs (and one-hot targets) of examples `order[first..first + batch]`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load_batch(
        &self,
        data: &GpuDataset,
        order: &CudaSlice<i32>,
        first: usize,
        batch: usize,
        targets: (f32, f32),
        x: &mut CudaSlice<f32>,
        target: &mut CudaSlice<f32>,
    ) -> Result<(), CudaError> {
        let cfg = LaunchConfig {
            grid_dim: (batch as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (first, batch_i) = (first as i32, batch as i32);
        let (pixels, classes) = (data.pixels as i32, data.classes as i32);
        let mut launch = self.stream.launch_builder(&self.load_batch);
        launch
            .arg(&data.images)
            .arg(&data.labels)
            .arg(order)
            .arg(&first)
            .arg(&batch_i)
            .arg(&pixels)
            .arg(&classes)
            .arg(&targets.0)
            .arg(&targets.1)
            .arg(x)
            .arg(target);
        // SAFETY: order holds at least first + batch indices below the dataset's length.
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }

    /// Row `b` of `rows` <-> row `order[first + b]` of `store`, for every free layer.
    pub(crate) fn move_rows(
        &self,
        to_store: bool,
        rows: &mut Layers,
        store: &mut Layers,
        order: &CudaSlice<i32>,
        first: usize,
    ) -> Result<(), CudaError> {
        let batch = rows.batch;
        let cfg = LaunchConfig {
            grid_dim: (batch as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let (first, batch_i) = (first as i32, batch as i32);
        let to_store = i32::from(to_store);
        for k in 1..rows.s.len() {
            let n = rows.sizes[k] as i32;
            let mut launch = self.stream.launch_builder(&self.move_rows);
            launch
                .arg(&mut rows.s[k])
                .arg(order)
                .arg(&first)
                .arg(&batch_i)
                .arg(&n)
                .arg(&mut store.s[k])
                .arg(&to_store);
            // SAFETY: the store has a row for every index in `order`.
            unsafe { launch.launch(cfg) }?;
        }
        Ok(())
    }

    /// Copies every free layer of `src` into `dst` (same shapes).
    pub fn copy_layers(&self, src: &Layers, dst: &mut Layers) -> Result<(), CudaError> {
        for k in 1..src.s.len() {
            self.stream.memcpy_dtod(&src.s[k], &mut dst.s[k])?;
        }
        Ok(())
    }
}

/// PTX of `source` for `arch`, with `defines` as `-D` macros.
fn compile(source: &str, arch: &str, defines: &[(&str, usize)]) -> Result<Ptx, CudaError> {
    let mut options = vec![arch.to_string()];
    options.extend(defines.iter().map(|(k, v)| format!("-D{k}={v}")));
    let opts = CompileOptions {
        options,
        ..Default::default()
    };
    compile_ptx_with_opts(source, opts).map_err(|e| CudaError::Compile(format!("{e:?}")))
}

/// The raw device address of a buffer (for the kernel's descriptor).
fn ptr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _sync) = s.device_ptr(stream);
    p
}

/// Threads per block of the general relax kernel: more for wide layers, and a full block when
/// two wide free layers are coupled (a warp per row of their coupling, a thread per column).
fn block_threads(sizes: &[usize]) -> usize {
    let widest = sizes[1..].iter().copied().max().unwrap_or(1);
    let wide_pair = sizes[1..]
        .windows(2)
        .any(|p| p[0] >= NARROW && p[1] >= NARROW);
    match (wide_pair, widest > 1024) {
        (true, _) => 1024,
        (false, true) => 512,
        (false, false) => 256,
    }
}

/// `struct Net` of `kernels.cu`.
#[repr(C)]
#[derive(Clone, Copy)]
struct NetDesc {
    layers: i32,
    batch: i32,
    size: [i32; MAX_LAYERS],
    off_s: [i32; MAX_LAYERS],
    off_dn: [i32; MAX_LAYERS],
    off_up: [i32; MAX_LAYERS],
    w: [u64; MAX_LAYERS],
    s: [u64; MAX_LAYERS],
    init: [u64; MAX_LAYERS],
    bias: [u64; MAX_LAYERS],
    input: u64,
}

// SAFETY: plain data with the layout of the kernel's `struct Net` (`#[repr(C)]`, same fields).
unsafe impl DeviceRepr for NetDesc {}

impl NetDesc {
    fn zeroed() -> Self {
        Self {
            layers: 0,
            batch: 0,
            size: [0; MAX_LAYERS],
            off_s: [-1; MAX_LAYERS],
            off_dn: [-1; MAX_LAYERS],
            off_up: [-1; MAX_LAYERS],
            w: [0; MAX_LAYERS],
            s: [0; MAX_LAYERS],
            init: [0; MAX_LAYERS],
            bias: [0; MAX_LAYERS],
            input: 0,
        }
    }
}

/// Steps and step size of a phase.
#[derive(Clone, Copy, Debug)]
pub struct GpuPhase {
    pub steps: usize,
    pub eps: f32,
}

/// Where a phase starts.
pub enum Start<'a> {
    /// Every free unit at 0.
    Zero,
    /// From the states it relaxes (persistent particles, or a phase continued).
    InPlace,
    /// From other states of the same batch size (the nudged phase from the free fixed point).
    From(&'a Layers),
}

/// Per-sample results a phase writes at `offset + b`.
pub struct Outputs<'a> {
    pub energy: &'a CudaSlice<f32>,
    pub argmax: &'a CudaSlice<i32>,
    pub offset: usize,
}

/// The couplings and biases of a [`Network`] on the device.
pub struct GpuNetwork {
    sizes: Vec<usize>,
    /// `w[k]` is `W_k` (`w[0]` an unused placeholder), row-major like the host's.
    w: Vec<CudaSlice<f32>>,
    b: Vec<CudaSlice<f32>>,
}

impl GpuNetwork {
    /// A device copy of `net` (at most 8 layers).
    pub fn upload(gpu: &Gpu, net: &Network) -> Result<Self, CudaError> {
        if net.num_layers() > MAX_LAYERS {
            return Err(CudaError::Unsupported(format!(
                "{} layers (at most {MAX_LAYERS})",
                net.num_layers()
            )));
        }
        let mut w = vec![gpu.zeros(1)?];
        for k in 1..net.num_layers() {
            w.push(gpu.upload(net.weight(k).as_slice())?);
        }
        let b = net
            .biases()
            .iter()
            .map(|b| gpu.upload(b))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            sizes: net.sizes().to_vec(),
            w,
            b,
        })
    }

    /// Copies the device's couplings and biases into `net` (same sizes).
    pub fn download_into(&self, gpu: &Gpu, net: &mut Network) -> Result<(), CudaError> {
        let (weights, biases) = net.params_mut();
        for (k, w) in weights.iter_mut().enumerate() {
            gpu.stream.memcpy_dtoh(&self.w[k + 1], w.as_mut_slice())?;
        }
        for (k, b) in biases.iter_mut().enumerate() {
            gpu.stream.memcpy_dtoh(&self.b[k], b.as_mut_slice())?;
        }
        gpu.synchronize()
    }

    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    fn coupling_mut(&mut self, k: usize) -> (&mut CudaSlice<f32>, &mut CudaSlice<f32>) {
        (&mut self.w[k], &mut self.b[k])
    }
}

/// The states of every free layer for a batch on the device (`s[0]`, the input, unused).
pub struct Layers {
    batch: usize,
    sizes: Vec<usize>,
    s: Vec<CudaSlice<f32>>,
}

impl Layers {
    /// Zero states of `batch` samples.
    pub fn zeros(gpu: &Gpu, sizes: &[usize], batch: usize) -> Result<Self, CudaError> {
        let mut s = vec![gpu.zeros(1)?];
        for &n in &sizes[1..] {
            s.push(gpu.zeros(batch * n)?);
        }
        Ok(Self {
            batch,
            sizes: sizes.to_vec(),
            s,
        })
    }

    /// Sets layer `k` from a host buffer (`batch x sizes[k]`).
    pub fn set(&mut self, gpu: &Gpu, k: usize, host: &[f32]) -> Result<(), CudaError> {
        assert_eq!(host.len(), self.batch * self.sizes[k], "layer shape");
        Ok(gpu.stream.memcpy_htod(host, &mut self.s[k])?)
    }

    /// Layer `k` as a host buffer (`batch x sizes[k]`).
    pub fn get(&self, gpu: &Gpu, k: usize) -> Result<Vec<f32>, CudaError> {
        let mut v = gpu.download(&self.s[k])?;
        v.truncate(self.batch * self.sizes[k]);
        Ok(v)
    }

    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// A dataset on the device: images as floats in `[0, 1]`, labels as bytes.
pub(crate) struct GpuDataset {
    images: CudaSlice<f32>,
    labels: CudaSlice<u8>,
    pixels: usize,
    classes: usize,
}

impl GpuDataset {
    /// Copies `data` to the device; `classes` output units.
    pub(crate) fn upload(
        gpu: &Gpu,
        data: &crate::data::Dataset,
        classes: usize,
    ) -> Result<Self, CudaError> {
        if !data.targets.is_empty() {
            return Err(CudaError::Unsupported("per-example target rows".into()));
        }
        Ok(Self {
            images: gpu.upload(&data.images)?,
            labels: gpu.upload(&data.labels)?,
            pixels: data.pixels(),
            classes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels compile with NVRTC wherever its library is found (no GPU needed): set
    /// `LD_LIBRARY_PATH` to a CUDA toolkit's or the `nvidia-cuda-nvrtc` wheel's lib folder.
    #[test]
    fn kernels_compile_for_hopper() {
        // SAFETY: only tries to dlopen the library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            let required = std::env::var("EQPROP_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "EQPROP_REQUIRE_GPU=1, but NVRTC was not found");
            eprintln!("skipped: NVRTC not found");
            return;
        }
        let opts = CompileOptions {
            options: vec!["--gpu-architecture=compute_90".into()],
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(KERNELS, opts).expect("kernels compile");
        let text = ptx.to_src();
        for name in ["relax", "update", "load_batch", "move_rows"] {
            assert!(text.contains(&format!(".entry {name}(")), "{name} missing");
        }
        for (hid, out, threads) in [(500, 10, 128), (4096, 10, 512), (7, 3, 64)] {
            let defines = [("HID", hid), ("OUT", out), ("THREADS", threads)];
            let ptx = compile(RELAX_PAIR, "--gpu-architecture=compute_90", &defines)
                .expect("relax_pair compiles");
            assert!(ptx.to_src().contains(".entry relax_pair("));
        }
    }

    #[test]
    fn the_descriptor_has_the_kernels_layout() {
        // 34 ints, then 4 x 8 + 1 pointers.
        assert_eq!(std::mem::size_of::<NetDesc>(), 136 + 33 * 8);
        assert_eq!(std::mem::offset_of!(NetDesc, w), 136);
    }
}
