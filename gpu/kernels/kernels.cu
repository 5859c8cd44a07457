// kernels.cu: the CUDA C kernels of ringtrain's GPU backend.
//
// Compiled to kernels.ptx by `go generate ./gpu/kernels` (NVRTC, options in
// internal/nvrtc/build.go: compute_75, --fmad=false). Every kernel has a Go
// twin in twins.go doing the same arithmetic on the CPU; keep them in step.
//
// Rules this file keeps:
//   - No includes: NVRTC then needs no CUDA headers, and the half-precision
//     conversions are single PTX instructions written as inline asm.
//   - Deterministic: no atomics. Every sum has one fixed order, decided by
//     the kernel and its launch geometry (launch.go), so a rerun, another
//     GPU or the Go twin gives the same bits.
//   - Element counts fit in a signed 32-bit int (the host checks). Flat
//     indices run in unsigned 32-bit arithmetic, where i + stride cannot wrap
//     for i < 2^31 and the divisions are cheaper than 64-bit ones; pointer
//     offsets of [rows, cols] tensors are formed in 64 bits.
//   - Elementwise kernels loop grid-stride over their output, so any 1-D
//     grid is correct; the launch helpers only choose a fast one.

typedef unsigned int u32;
typedef unsigned short u16;

// FOR_EACH visits 0 <= i < n once over the whole 1-D grid.
#define FOR_EACH(i, n)                                                        \
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x;                       \
         (n) > 0 && i < (u32)(n); i += blockDim.x * gridDim.x)

// ---------------------------------------------------------------------------
// Elementwise. Launch: Elementwise(n).

// relu_fwd: y = x >= 0 ? x : 0 (NaN gives 0, -0 stays -0).
extern "C" __global__ void relu_fwd(const float* x, float* y, int n) {
    FOR_EACH(i, n) {
        float v = x[i];
        y[i] = v >= 0.0f ? v : 0.0f;
    }
}

// relu_bwd: dx = x >= 0 ? dy : 0. The gradient at exactly 0 is 1, as on the
// CPU path, so both backends pick the same subgradient.
extern "C" __global__ void relu_bwd(const float* x, const float* dy, float* dx, int n) {
    FOR_EACH(i, n) { dx[i] = x[i] >= 0.0f ? dy[i] : 0.0f; }
}

// mul: y = a * b (dropout: b is the host-drawn, pre-scaled mask).
extern "C" __global__ void mul(const float* a, const float* b, float* y, int n) {
    FOR_EACH(i, n) { y[i] = a[i] * b[i]; }
}

// add_inplace: y += x.
extern "C" __global__ void add_inplace(float* y, const float* x, int n) {
    FOR_EACH(i, n) { y[i] = y[i] + x[i]; }
}

// add_bias_rows: y[r, c] += b[c] for y [rows, cols].
extern "C" __global__ void add_bias_rows(float* y, const float* b, int rows, int cols) {
    if (rows <= 0 || cols <= 0) return;
    u32 n = (u32)rows * (u32)cols;
    FOR_EACH(i, n) { y[i] = y[i] + b[i % (u32)cols]; }
}

// ---------------------------------------------------------------------------
// Reductions, in a fixed order.

// col_sum: out[c] = (accumulate ? out[c] : 0) + sum_r x[r, c] for x [rows, cols].
//
// Launch: ColSumLaunch (block 32 x 32, grid.x column groups). threadIdx.x
// picks a column of a 32-column group, so a warp reads 32 consecutive floats
// of one row (coalesced when cols is large); threadIdx.y = t sums rows t,
// t+32, t+64, ... in ascending order; then a shared-memory tree adds
// partial t+16 into t, then t+8, +4, +2, +1. Block-uniform loop bounds keep
// the __syncthreads legal. The Go twin ColSum follows the same order.
#define CS_W 32
#define CS_H 32
extern "C" __global__ void col_sum(const float* x, float* out, int rows, int cols, int accumulate) {
    __shared__ float part[CS_H][CS_W + 1];  // +1: no bank conflicts
    u32 tx = threadIdx.x, ty = threadIdx.y;
    if (cols <= 0) return;
    for (u32 g = blockIdx.x; g * CS_W < (u32)cols; g += gridDim.x) {
        u32 c = g * CS_W + tx;
        float s = 0.0f;
        if (c < (u32)cols) {
            for (u32 r = ty; (int)r < rows; r += CS_H) s = s + x[(unsigned long long)r * (u32)cols + c];
        }
        part[ty][tx] = s;
        __syncthreads();
        for (u32 h = CS_H / 2; h > 0; h >>= 1) {
            if (ty < h) part[ty][tx] = part[ty][tx] + part[ty + h][tx];
            __syncthreads();
        }
        if (ty == 0 && c < (u32)cols) {
            float t = part[0][tx];
            out[c] = accumulate ? out[c] + t : t;
        }
        __syncthreads();  // part is reused by the next column group
    }
}

// row_sum: out[r] = (accumulate ? out[r] : 0) + sum_c x[r, c] for x [rows, cols].
//
// Launch: RowSumLaunch (one 256-thread block per row, grid-stride over
// rows). Thread t sums columns t, t+256, ... in ascending order (coalesced
// across the warp; cols may be hundreds of thousands), then a shared-memory
// tree adds partial t+128 into t, then +64, ..., +1. The Go twin RowSum
// follows the same order.
#define RS_T 256
extern "C" __global__ void row_sum(const float* x, float* out, int rows, int cols, int accumulate) {
    __shared__ float part[RS_T];
    u32 t = threadIdx.x;
    for (u32 r = blockIdx.x; (int)r < rows; r += gridDim.x) {
        const float* row = x + (unsigned long long)r * (u32)(cols > 0 ? cols : 0);
        float s = 0.0f;
        for (u32 c = t; (int)c < cols; c += RS_T) s = s + row[c];
        part[t] = s;
        __syncthreads();
        for (u32 h = RS_T / 2; h > 0; h >>= 1) {
            if (t < h) part[t] = part[t] + part[t + h];
            __syncthreads();
        }
        if (t == 0) {
            float v = part[0];
            out[r] = accumulate ? out[r] + v : v;
        }
        __syncthreads();
    }
}

// ---------------------------------------------------------------------------
// Convolution layout changes. Launch: Elementwise(B*C*HW).

// conv_out: dst[b, c, p] = src[c, b, p] + bias[c]. src [C, B, HW] is what
// the strided-batched GEMM W·col leaves; dst [B, C, HW] is the CPU layout.
extern "C" __global__ void conv_out(const float* src, const float* bias, float* dst, int B, int C, int HW) {
    if (B <= 0 || C <= 0 || HW <= 0) return;
    u32 n = (u32)B * (u32)C * (u32)HW;
    FOR_EACH(i, n) {
        u32 p = i % (u32)HW, q = i / (u32)HW;
        u32 c = q % (u32)C, b = q / (u32)C;
        dst[i] = src[(c * (u32)B + b) * (u32)HW + p] + bias[c];
    }
}

// conv_grad_in: dst[c, b, p] = dy[b, c, p], the inverse permutation of
// conv_out without the bias: brings the layer's output gradient into the
// GEMM layout. Loops over dst so the writes are coalesced.
extern "C" __global__ void conv_grad_in(const float* dy, float* dst, int B, int C, int HW) {
    if (B <= 0 || C <= 0 || HW <= 0) return;
    u32 n = (u32)B * (u32)C * (u32)HW;
    FOR_EACH(i, n) {
        u32 p = i % (u32)HW, q = i / (u32)HW;
        u32 b = q % (u32)B, c = q / (u32)B;
        dst[i] = dy[(b * (u32)C + c) * (u32)HW + p];
    }
}

// im2col: x [B, C, H, W] -> col [C*k*k, B*OH*OW],
// col[(c*k + ki)*k + kj, (b*OH + oh)*OW + ow] = x[b, c, oh*stride - pad + ki, ow*stride - pad + kj],
// 0 outside the image. Launch: Elementwise(C*k*k * B*OH*OW).
extern "C" __global__ void im2col(const float* x, float* col, int B, int C, int H, int W, int k, int stride,
                                  int pad, int OH, int OW) {
    if (B <= 0 || C <= 0 || k <= 0 || OH <= 0 || OW <= 0) return;
    u32 N = (u32)B * (u32)OH * (u32)OW;
    u32 n = (u32)C * (u32)k * (u32)k * N;
    FOR_EACH(i, n) {
        u32 j = i % N, row = i / N;
        u32 ow = j % (u32)OW, q = j / (u32)OW;
        u32 oh = q % (u32)OH, b = q / (u32)OH;
        u32 kj = row % (u32)k, q2 = row / (u32)k;
        u32 ki = q2 % (u32)k, c = q2 / (u32)k;
        int h = (int)oh * stride - pad + (int)ki;
        int w = (int)ow * stride - pad + (int)kj;
        float v = 0.0f;
        if (h >= 0 && h < H && w >= 0 && w < W) v = x[((b * (u32)C + c) * (u32)H + (u32)h) * (u32)W + (u32)w];
        col[i] = v;
    }
}

// col2im: the adjoint of im2col as a gather, dx [B, C, H, W] from
// col [C*k*k, B*OH*OW]: every dx element is written (no memset, no
// atomics), as the sum over ki ascending, then kj ascending, of the col
// entries that im2col copied x[b, c, h, w] into: those with
// oh = (h + pad - ki) / stride and ow = (w + pad - kj) / stride exact and in
// range. Launch: Elementwise(B*C*H*W).
extern "C" __global__ void col2im(const float* col, float* dx, int B, int C, int H, int W, int k, int stride,
                                  int pad, int OH, int OW) {
    if (B <= 0 || C <= 0 || H <= 0 || W <= 0 || k <= 0 || stride <= 0) return;
    u32 N = (u32)B * (u32)OH * (u32)OW;
    u32 n = (u32)B * (u32)C * (u32)H * (u32)W;
    FOR_EACH(i, n) {
        int w = (int)(i % (u32)W);
        u32 q = i / (u32)W;
        int h = (int)(q % (u32)H);
        q /= (u32)H;
        u32 c = q % (u32)C, b = q / (u32)C;
        float s = 0.0f;
        for (int ki = 0; ki < k; ki++) {
            int th = h + pad - ki;
            if (th < 0 || th % stride != 0) continue;
            int oh = th / stride;
            if (oh >= OH) continue;
            for (int kj = 0; kj < k; kj++) {
                int tw = w + pad - kj;
                if (tw < 0 || tw % stride != 0) continue;
                int ow = tw / stride;
                if (ow >= OW) continue;
                u32 row = (c * (u32)k + (u32)ki) * (u32)k + (u32)kj;
                s = s + col[row * N + (b * (u32)OH + (u32)oh) * (u32)OW + (u32)ow];
            }
        }
        dx[i] = s;
    }
}

// ---------------------------------------------------------------------------
// Max pooling, no padding. Launch: Elementwise(B*C*OH*OW) forward,
// Elementwise(B*C*H*W) backward.

// maxpool_fwd: y[b, c, oh, ow] = max of the k x k window at
// (oh*stride, ow*stride); arg = h*W + w (within the (b, c) plane) of the
// FIRST maximum in row-major window order: the scan replaces only on a
// strict >, as the CPU path's gradient goes to the first maximum.
extern "C" __global__ void maxpool_fwd(const float* x, float* y, int* arg, int B, int C, int H, int W, int k,
                                       int stride, int OH, int OW) {
    if (B <= 0 || C <= 0 || OH <= 0 || OW <= 0 || k <= 0) return;
    u32 n = (u32)B * (u32)C * (u32)OH * (u32)OW;
    FOR_EACH(i, n) {
        u32 ow = i % (u32)OW, q = i / (u32)OW;
        u32 oh = q % (u32)OH, plane = q / (u32)OH;
        const float* xp = x + plane * (u32)H * (u32)W;
        int h0 = (int)oh * stride, w0 = (int)ow * stride;
        int best = h0 * W + w0;
        float m = xp[best];
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                int idx = (h0 + ki) * W + (w0 + kj);
                float v = xp[idx];
                if (v > m) {
                    m = v;
                    best = idx;
                }
            }
        }
        y[i] = m;
        arg[i] = best;
    }
}

// maxpool_bwd: the adjoint of maxpool_fwd's selection, as a gather:
// dx[b, c, h, w] = sum over the windows containing (h, w), oh ascending then
// ow ascending, whose arg is h*W + w, of dy[b, c, oh, ow]. Every dx element
// is written.
extern "C" __global__ void maxpool_bwd(const float* dy, const int* arg, float* dx, int B, int C, int H, int W, int k,
                                       int stride, int OH, int OW) {
    if (B <= 0 || C <= 0 || H <= 0 || W <= 0 || k <= 0 || stride <= 0) return;
    u32 n = (u32)B * (u32)C * (u32)H * (u32)W;
    FOR_EACH(i, n) {
        int w = (int)(i % (u32)W);
        u32 q = i / (u32)W;
        int h = (int)(q % (u32)H);
        u32 plane = q / (u32)H;
        int self = h * W + w;
        // Windows oh with oh*stride <= h < oh*stride + k.
        int ohLo = h - k + 1 <= 0 ? 0 : (h - k + 1 + stride - 1) / stride;
        int ohHi = h / stride;
        if (ohHi > OH - 1) ohHi = OH - 1;
        int owLo = w - k + 1 <= 0 ? 0 : (w - k + 1 + stride - 1) / stride;
        int owHi = w / stride;
        if (owHi > OW - 1) owHi = OW - 1;
        const float* dyp = dy + plane * (u32)OH * (u32)OW;
        const int* ap = arg + plane * (u32)OH * (u32)OW;
        float s = 0.0f;
        for (int oh = ohLo; oh <= ohHi; oh++) {
            for (int ow = owLo; ow <= owHi; ow++) {
                int o = oh * OW + ow;
                if (ap[o] == self) s = s + dyp[o];
            }
        }
        dx[i] = s;
    }
}

// ---------------------------------------------------------------------------
// Loss. Launch: RowsLaunch(B).

// softmax_xent: per row i of logits [B, C], in double:
//   m = max_j logits[i, j];  s = sum_j exp(v_j - m) (j ascending);  lse = m + log(s)
//   rowloss[i] = scale * (lse - logits[i, label])
//   dlogits[i, j] = (float)(scale * (exp(v_j - lse) - [j == label]))
// the formulas of models.SoftmaxCrossEntropy. One thread per row: C is a
// class count. A label outside [0, C) makes rowloss[i] and the row of
// dlogits NaN; the host sums rowloss and reports the bad label.
extern "C" __global__ void softmax_xent(const float* logits, const int* labels, double* rowloss, float* dlogits, int B,
                                        int C, float scale) {
    if (C <= 0) return;
    double sc = (double)scale;
    FOR_EACH(i, B) {
        const float* row = logits + (unsigned long long)i * (u32)C;
        float* drow = dlogits + (unsigned long long)i * (u32)C;
        int lab = labels[i];
        if (lab < 0 || lab >= C) {
            double nan = __longlong_as_double(0x7ff8000000000000LL);
            rowloss[i] = nan;
            for (int j = 0; j < C; j++) drow[j] = __int_as_float(0x7fc00000);
            continue;
        }
        double m = -__longlong_as_double(0x7ff0000000000000LL);  // -Inf
        for (int j = 0; j < C; j++) {
            double v = (double)row[j];
            if (v > m) m = v;
        }
        double s = 0.0;
        for (int j = 0; j < C; j++) s = s + exp((double)row[j] - m);
        double lse = m + log(s);
        rowloss[i] = sc * (lse - (double)row[lab]);
        for (int j = 0; j < C; j++) {
            double p = exp((double)row[j] - lse);
            if (j == lab) p = p - 1.0;
            drow[j] = (float)(sc * p);
        }
    }
}

// ---------------------------------------------------------------------------
// Optimizers, in float32 with separate roundings (--fmad=false), so the
// results are bit-identical to models.SGD and models.Adam on the CPU.
// Launch: Elementwise(n).

// sgd_step: g' = g + wd*w; mu == 0: w -= lr*g' (v untouched, may be NULL);
// else v = mu*v + g'; w -= lr * (nesterov ? g' + mu*v : v).
extern "C" __global__ void sgd_step(float* w, const float* g, float* v, int n, float lr, float mu, float wd,
                                    int nesterov) {
    FOR_EACH(i, n) {
        float wj = w[i];
        float gj = g[i] + wd * wj;
        if (mu == 0.0f) {
            w[i] = wj - lr * gj;
        } else {
            float vj = mu * v[i] + gj;
            v[i] = vj;
            w[i] = wj - lr * (nesterov ? gj + mu * vj : vj);
        }
    }
}

// adam_step: g' = g + wd*w; m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'*g';
// w -= lr*(m/c1) / (sqrt(v/c2) + eps), with c1 = 1-b1^t and c2 = 1-b2^t
// computed on the host. sqrtf is IEEE-rounded (--prec-sqrt), which equals
// Go's float32(math.Sqrt(float64(x))).
extern "C" __global__ void adam_step(float* w, const float* g, float* m, float* v, int n, float lr, float b1,
                                     float b2, float eps, float wd, float c1, float c2) {
    FOR_EACH(i, n) {
        float wj = w[i];
        float gj = g[i] + wd * wj;
        float mj = b1 * m[i] + (1.0f - b1) * gj;
        float vj = b2 * v[i] + (1.0f - b2) * gj * gj;
        m[i] = mj;
        v[i] = vj;
        w[i] = wj - lr * (mj / c1) / (sqrtf(vj / c2) + eps);
    }
}

// ---------------------------------------------------------------------------
// Half precision for the wire. Launch: Elementwise(n).

__device__ __forceinline__ u16 f32_to_half_rn(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float half_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// f32_to_f16: y = half(x * scale), rounded to nearest even; overflow gives
// +-Inf, tiny values become half subnormals or zero.
extern "C" __global__ void f32_to_f16(const float* x, u16* y, int n, float scale) {
    FOR_EACH(i, n) { y[i] = f32_to_half_rn(x[i] * scale); }
}

// f16_to_f32: y = float(x) * scale (the widening is exact).
extern "C" __global__ void f16_to_f32(const u16* x, float* y, int n, float scale) {
    FOR_EACH(i, n) { y[i] = half_to_f32(x[i]) * scale; }
}
