// EqProp kernels for the CUDA backend, compiled at run time by NVRTC.
//
// Layer 0 (the input) is clamped; every other layer is free. States are kept in [0, 1], where
// rho(s) = s. One synchronous step of a phase, for every free layer k at once:
//
//   drive_k = b_k + x W_1 [k = 1] + s_{k-1} W_k [k >= 2] + s_{k+1} W_{k+1}^T [k < L]
//   s_k    <- clamp(s_k + eps (drive_k - s_k [+ beta (target - s_k)]), 0, 1)
//
// where the input drive x W_1 is one cuBLAS GEMM per phase.

#define MAX_LAYERS 8
// Layers narrower than this reduce their incoming drive across the block (one value per warp
// and unit, summed when the state is updated) instead of giving a whole loop to each unit.
#define NARROW 32

struct Net {
    int layers;
    int batch;
    int size[MAX_LAYERS];
    // Shared-memory offsets (in floats) of each free layer's state, its drive from below (wide
    // layers) or per-warp partial drives (narrow layers), and its drive from above; -1: none.
    int off_s[MAX_LAYERS];
    int off_dn[MAX_LAYERS];
    int off_up[MAX_LAYERS];
    const float* w[MAX_LAYERS];      // w[k], k >= 1: size[k-1] x size[k], row-major
    float* s[MAX_LAYERS];            // batch x size[k]: the phase's states, read and written
    const float* init[MAX_LAYERS];   // where the phase starts (null: from zero)
    const float* bias[MAX_LAYERS];   // b_k
    const float* input;              // batch x size[1]: the input drive x W_1
};

// b_k plus, on layer 1, the input drive: the part of unit i's drive that the phase holds fixed.
__device__ __forceinline__ float fixed_drive(const Net& net, int k, int b, int i) {
    const float d = net.bias[k][i];
    return k == 1 ? d + net.input[b * net.size[1] + i] : d;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float clamp01(float v) { return fminf(fmaxf(v, 0.0f), 1.0f); }

// Phase 1 of a step: every drive that couples two free layers, from the current states.
__device__ void couplings(const Net& net, float* sm) {
    const int tid = threadIdx.x, nt = blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nwarps = nt >> 5;
    for (int k = 2; k < net.layers; ++k) {
        const int m = net.size[k - 1], n = net.size[k];
        const float* __restrict__ w = net.w[k];
        const float* a = sm + net.off_s[k - 1];
        const float* c = sm + net.off_s[k];
        float* dn = sm + net.off_dn[k];
        float* up = sm + net.off_up[k - 1];
        if (n >= NARROW) {
            // Drive from below: one unit per thread, coalesced over the columns of W_k.
            for (int j = tid; j < n; j += nt) {
                // Four independent sums keep four loads in flight.
                float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
                int r = 0;
                for (; r + 3 < m; r += 4) {
                    s0 = fmaf(a[r], w[r * n + j], s0);
                    s1 = fmaf(a[r + 1], w[(r + 1) * n + j], s1);
                    s2 = fmaf(a[r + 2], w[(r + 2) * n + j], s2);
                    s3 = fmaf(a[r + 3], w[(r + 3) * n + j], s3);
                }
                for (; r < m; ++r) s0 = fmaf(a[r], w[r * n + j], s0);
                dn[j] = (s0 + s1) + (s2 + s3);
            }
            // Drive from above: one row of W_k per warp.
            for (int r = warp; r < m; r += nwarps) {
                float acc = 0.0f;
                for (int j = lane; j < n; j += 32) acc = fmaf(w[r * n + j], c[j], acc);
                acc = warp_sum(acc);
                if (lane == 0) up[r] = acc;
            }
        } else {
            // Narrow layer: each thread sums its rows for every unit, the warp reduces, and the
            // update sums the warps' partials.
            float acc[NARROW];
#pragma unroll
            for (int j = 0; j < NARROW; ++j) acc[j] = 0.0f;
            for (int r = tid; r < m; r += nt) {
                const float ar = a[r];
                const float* row = w + r * n;
                float back = 0.0f;
#pragma unroll
                for (int j = 0; j < NARROW; ++j) {
                    if (j < n) {
                        const float wj = row[j];
                        acc[j] = fmaf(ar, wj, acc[j]);
                        back = fmaf(wj, c[j], back);
                    }
                }
                up[r] = back;
            }
#pragma unroll
            for (int j = 0; j < NARROW; ++j) {
                if (j < n) {
                    const float v = warp_sum(acc[j]);
                    if (lane == 0) dn[warp * NARROW + j] = v;
                }
            }
        }
    }
}

// The full drive of unit i of free layer k (after phase 1).
__device__ __forceinline__ float drive(const Net& net, const float* sm, int k, int b, int i) {
    float d = fixed_drive(net, k, b, i);
    if (k >= 2) {
        const float* dn = sm + net.off_dn[k];
        if (net.size[k] >= NARROW) {
            d += dn[i];
        } else {
            const int nwarps = blockDim.x >> 5;
            for (int w = 0; w < nwarps; ++w) d += dn[w * NARROW + i];
        }
    }
    if (k + 1 < net.layers) d += sm[net.off_up[k] + i];
    return d;
}

// Block-wide sum (every thread passes its value; thread 0 gets the total).
__device__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.0f;
    if (threadIdx.x == 0)
        for (int w = 0; w < nwarps; ++w) total += scratch[w];
    return total;
}

// All `steps` steps of one phase, one sample per block, every free state in shared memory.
//
// nudge_layer < 0: free phase. `target` is batch x size[nudge_layer].
// energy (optional): E at the final state, without the clamped input's own terms:
//   E = sum_{k>=1} (1/2 ||s_k||^2 - s_k . (b_k + [k = 1] x W_1)) - sum_{k>=2} s_{k-1}^T W_k s_k
// argmax (optional): the first most active output unit.
// Both are written at index out_offset + b.
extern "C" __global__ void __launch_bounds__(1024) relax(Net net, int steps, float eps, float beta, int nudge_layer,
                                 const float* __restrict__ target, float* energy, int* argmax,
                                 int out_offset) {
    extern __shared__ float sm[];
    const int b = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
    const int last = net.layers - 1;
    for (int k = 1; k < net.layers; ++k) {
        const int n = net.size[k];
        float* s = sm + net.off_s[k];
        const float* init = net.init[k];
        for (int i = tid; i < n; i += nt) s[i] = init ? init[b * n + i] : 0.0f;
    }
    __syncthreads();
    for (int t = 0; t < steps; ++t) {
        couplings(net, sm);
        __syncthreads();
        for (int k = 1; k < net.layers; ++k) {
            const int n = net.size[k];
            float* s = sm + net.off_s[k];
            const bool nudged = k == nudge_layer;
            for (int i = tid; i < n; i += nt) {
                const float x = s[i];
                float step = drive(net, sm, k, b, i) - x;
                if (nudged) step = fmaf(beta, target[b * n + i] - x, step);
                s[i] = clamp01(fmaf(eps, step, x));
            }
        }
        __syncthreads();
    }
    for (int k = 1; k < net.layers; ++k) {
        const int n = net.size[k];
        const float* s = sm + net.off_s[k];
        for (int i = tid; i < n; i += nt) net.s[k][b * n + i] = s[i];
    }
    if (argmax && tid == 0) {
        const float* y = sm + net.off_s[last];
        int best = 0;
        for (int i = 1; i < net.size[last]; ++i)
            if (y[i] > y[best]) best = i;
        argmax[out_offset + b] = best;
    }
    if (energy) {
        couplings(net, sm);
        __syncthreads();
        float e = 0.0f;
        for (int k = 1; k < net.layers; ++k) {
            const int n = net.size[k];
            const float* s = sm + net.off_s[k];
            for (int i = tid; i < n; i += nt) {
                const float x = s[i];
                float below = fixed_drive(net, k, b, i);
                if (k >= 2) {
                    // Count each free-free coupling once: the drive from below.
                    const float* dn = sm + net.off_dn[k];
                    if (n >= NARROW) {
                        below += dn[i];
                    } else {
                        for (int w = 0; w < (nt >> 5); ++w) below += dn[w * NARROW + i];
                    }
                }
                e += 0.5f * x * x - x * below;
            }
        }
        __shared__ float scratch[32];
        const float total = block_sum(e, scratch);
        if (tid == 0) energy[out_offset + b] = total;
    }
}

// The EqProp update of one coupling and its bias, in one pass:
//   W += coef * (Pa^T Qa - Pb^T Qb),   bias += coef * sum_b (Qa - Qb)
// P are batch x m (the lower layer), Q batch x n (the upper layer). Block (32, 8) computes a
// 32 x 32 tile of W; the tile row index m stands for the bias (a lower unit fixed at 1).
#define TILE 32
extern "C" __global__ void update(float* __restrict__ w, float* __restrict__ bias, int m, int n,
                                  int batch, const float* __restrict__ pa,
                                  const float* __restrict__ qa, const float* __restrict__ pb,
                                  const float* __restrict__ qb, float coef) {
    __shared__ float sPa[TILE][TILE + 1], sPb[TILE][TILE + 1], sQa[TILE][TILE], sQb[TILE][TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.x * TILE + tx;
    const int r0 = blockIdx.y * TILE;
    float acc[TILE / 8];
#pragma unroll
    for (int j = 0; j < TILE / 8; ++j) acc[j] = 0.0f;
    for (int b0 = 0; b0 < batch; b0 += TILE) {
        for (int i = ty; i < TILE; i += 8) {
            const int b = b0 + i, r = r0 + tx;
            float va = 0.0f, vb = 0.0f, wa = 0.0f, wb = 0.0f;
            if (b < batch) {
                if (r < m) {
                    va = pa[b * m + r];
                    vb = pb[b * m + r];
                } else if (r == m) {
                    va = 1.0f;
                    vb = 1.0f;
                }
                if (c < n) {
                    wa = qa[b * n + c];
                    wb = qb[b * n + c];
                }
            }
            sPa[i][tx] = va;
            sPb[i][tx] = vb;
            sQa[i][tx] = wa;
            sQb[i][tx] = wb;
        }
        __syncthreads();
        const int rows = min(TILE, batch - b0);
        for (int i = 0; i < rows; ++i) {
            const float a = sQa[i][tx], z = sQb[i][tx];
#pragma unroll
            for (int j = 0; j < TILE / 8; ++j) {
                const int rr = ty + 8 * j;
                acc[j] = fmaf(sPa[i][rr], a, acc[j]);
                acc[j] = fmaf(-sPb[i][rr], z, acc[j]);
            }
        }
        __syncthreads();
    }
    if (c >= n) return;
#pragma unroll
    for (int j = 0; j < TILE / 8; ++j) {
        const int r = r0 + ty + 8 * j;
        if (r < m) {
            w[r * n + c] += coef * acc[j];
        } else if (r == m) {
            bias[c] += coef * acc[j];
        }
    }
}

// A mini-batch from the dataset on the device: inputs, one-hot targets and (for persistent
// particles) the starting states, for the examples order[first .. first + batch).
extern "C" __global__ void load_batch(const float* __restrict__ images,
                                      const unsigned char* __restrict__ labels,
                                      const int* __restrict__ order, int first, int batch,
                                      int pixels, int classes, float off, float on, float* x,
                                      float* target) {
    const int b = blockIdx.x;
    if (b >= batch) return;
    const int e = order[first + b];
    for (int i = threadIdx.x; i < pixels; i += blockDim.x)
        x[b * pixels + i] = images[(long long)e * pixels + i];
    if (target)
        for (int i = threadIdx.x; i < classes; i += blockDim.x)
            target[b * classes + i] = i == labels[e] ? on : off;
}

// Row b of a batch <-> row order[first + b] of a per-example store (persistent particles):
// into the store when `to_store`, out of it otherwise.
extern "C" __global__ void move_rows(float* rows, const int* __restrict__ order, int first,
                                     int batch, int n, float* store, int to_store) {
    const int b = blockIdx.x;
    if (b >= batch) return;
    const long long e = order[first + b];
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (to_store) {
            store[e * n + i] = rows[b * n + i];
        } else {
            rows[b * n + i] = store[e * n + i];
        }
    }
}
