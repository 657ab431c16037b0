// The relaxation of a one-hidden-layer net (input clamped, hidden <-> output free), compiled by
// NVRTC for one shape: -DHID=<hidden units> -DOUT=<output units> -DTHREADS=<threads per block>.
//
// One sample per block. Each thread owns UNITS hidden units (i = tid + u * THREADS) and keeps
// their state, fixed drive b_1 + x W_1 and rows of W_2 in registers for all T steps; the output
// lives in shared memory. A step (synchronous, from the old states):
//
//   h_i <- clamp(h_i + eps (b1_i + (x W_1)_i + sum_j W2_ij y_j - h_i), 0, 1)
//   y_j <- clamp(y_j + eps (b2_j + sum_i h_i W2_ij - y_j [+ beta (t_j - y_j)]), 0, 1)
//
// The sums over i reduce in registers, then across lanes (shuffles), then across warps.

#define UNITS ((HID + THREADS - 1) / THREADS)
#define WARPS (THREADS / 32)

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float clamp01(float v) { return fminf(fmaxf(v, 0.0f), 1.0f); }

// parts[w][j] = this warp's share of sum_i h_i W2_ij.
__device__ __forceinline__ void hidden_to_output(const float (&h)[UNITS],
                                                 const float (&w)[UNITS][OUT],
                                                 float (*parts)[OUT]) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float acc[OUT];
#pragma unroll
    for (int j = 0; j < OUT; ++j) acc[j] = 0.0f;
#pragma unroll
    for (int u = 0; u < UNITS; ++u)
#pragma unroll
        for (int j = 0; j < OUT; ++j) acc[j] = fmaf(h[u], w[u][j], acc[j]);
#pragma unroll
    for (int j = 0; j < OUT; ++j) {
        const float v = warp_sum(acc[j]);
        if (lane == 0) parts[warp][j] = v;
    }
}

// The drive of output j from below (sum over the warps' parts), in every lane of the warp.
__device__ __forceinline__ float output_drive(const float (*parts)[OUT], int j) {
    const int lane = threadIdx.x & 31;
    float d = 0.0f;
    for (int k = lane; k < WARPS; k += 32) d += parts[k][j];
    return warp_sum(d);
}

extern "C" __global__ void __launch_bounds__(THREADS)
    relax_pair(const float* __restrict__ w2, const float* __restrict__ b1,
               const float* __restrict__ b2, const float* __restrict__ input, float* h_out,
               float* y_out, const float* h_init, const float* y_init, int steps, float eps,
               float beta, const float* __restrict__ target, float* energy, int* argmax,
               int out_offset) {
    __shared__ float y[OUT];
    __shared__ float parts[WARPS][OUT];
    __shared__ float scratch[WARPS];
    const int b = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float h[UNITS], f[UNITS], w[UNITS][OUT];
#pragma unroll
    for (int u = 0; u < UNITS; ++u) {
        const int i = tid + u * THREADS;
        const bool real = i < HID;
        // Padding units have no drive and no couplings: they stay at 0 and add nothing.
        f[u] = real ? b1[i] + input[b * HID + i] : 0.0f;
        h[u] = real && h_init ? h_init[b * HID + i] : 0.0f;
#pragma unroll
        for (int j = 0; j < OUT; ++j) w[u][j] = real ? w2[i * OUT + j] : 0.0f;
    }
    if (tid < OUT) y[tid] = y_init ? y_init[b * OUT + tid] : 0.0f;
    __syncthreads();
    for (int t = 0; t < steps; ++t) {
        float yv[OUT];
#pragma unroll
        for (int j = 0; j < OUT; ++j) yv[j] = y[j];
        hidden_to_output(h, w, parts);
#pragma unroll
        for (int u = 0; u < UNITS; ++u) {
            float d = f[u];
#pragma unroll
            for (int j = 0; j < OUT; ++j) d = fmaf(w[u][j], yv[j], d);
            h[u] = clamp01(fmaf(eps, d - h[u], h[u]));
        }
        __syncthreads();
        for (int j = warp; j < OUT; j += WARPS) {
            const float d = output_drive(parts, j) + b2[j];
            if (lane == 0) {
                const float x = y[j];
                float step = d - x;
                if (target) step = fmaf(beta, target[b * OUT + j] - x, step);
                y[j] = clamp01(fmaf(eps, step, x));
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int u = 0; u < UNITS; ++u) {
        const int i = tid + u * THREADS;
        if (i < HID) h_out[b * HID + i] = h[u];
    }
    if (tid < OUT) y_out[b * OUT + tid] = y[tid];
    if (argmax && tid == 0) {
        int best = 0;
        for (int j = 1; j < OUT; ++j)
            if (y[j] > y[best]) best = j;
        argmax[out_offset + b] = best;
    }
    if (energy) {
        // E = sum_i (h_i^2 / 2 - h_i f_i) + sum_j (y_j^2 / 2 - y_j (b2_j + sum_i h_i W2_ij))
        hidden_to_output(h, w, parts);
        float e = 0.0f;
#pragma unroll
        for (int u = 0; u < UNITS; ++u) e += h[u] * (0.5f * h[u] - f[u]);
        __syncthreads();
        for (int j = warp; j < OUT; j += WARPS) {
            const float d = output_drive(parts, j) + b2[j];
            if (lane == 0) e += y[j] * (0.5f * y[j] - d);
        }
        e = warp_sum(e);
        if (lane == 0) scratch[warp] = e;
        __syncthreads();
        if (tid == 0) {
            float total = 0.0f;
            for (int k = 0; k < WARPS; ++k) total += scratch[k];
            energy[out_offset + b] = total;
        }
    }
}
