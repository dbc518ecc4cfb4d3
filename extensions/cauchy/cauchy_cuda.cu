// CUDA kernels of the symmetric (conjugate-pair) Cauchy sum used by S4:
//
//   r[b, l] = sum_n  v[b,n] K1[b,n,l] + conj(v[b,n]) K2[b,n,l],
//   K1 = 1 / (z[l] - w[b,n]),   K2 = 1 / (z[l] - conj(w[b,n])).
//
// Backward (PyTorch's convention: the gradient of a real loss is dL/d(conj x)), with g = dout[b, l]:
//   dv[b,n] = sum_l  g conj(K1) + conj(g) K2
//   dw[b,n] = sum_l  g conj(v K1^2) + conj(g) conj(v) K2^2
// because dr/dv = K1, dr/dconj(v) = K2, dr/dw = v K1^2, dr/dconj(w) = conj(v) K2^2.
//
// Complex64 throughout, float accumulation; reciprocals are scaled (Smith), so |z| up to the float range
// does not overflow.
//
// Only c10/cuda headers are used (not ATen/cuda/CUDAContext.h, which pulls in cuBLAS/cuSPARSE headers that
// minimal CUDA toolkits lack).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <tuple>

namespace cauchy {
namespace {

constexpr int kFwdThreads = 256;   // one node l per thread
constexpr int kBwdLanes = 32;      // one warp strides over the nodes l ...
constexpr int kBwdWarps = 8;       // ... for one mode n; 8 modes per block
constexpr int64_t kMaxGridY = 65535;

__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

__device__ __forceinline__ float2 cconj(float2 a) { return make_float2(a.x, -a.y); }

__device__ __forceinline__ float2 cadd(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }

// 1 / (x + i y) without forming x^2 + y^2 (no overflow for huge |d|; 1/inf = 0).
__device__ __forceinline__ float2 crecip(float x, float y) {
  if (fabsf(x) >= fabsf(y)) {
    const float r = y / x;
    const float t = 1.0f / (x + y * r);
    return make_float2(t, -r * t);
  }
  const float r = x / y;
  const float t = 1.0f / (x * r + y);
  return make_float2(r * t, -t);
}

__device__ __forceinline__ float2 warp_sum(float2 a) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    a.x += __shfl_down_sync(0xffffffffu, a.x, off);
    a.y += __shfl_down_sync(0xffffffffu, a.y, off);
  }
  return a;
}

// grid (node blocks, batch rows); v and w of row b staged in shared memory (2 N float2).
__global__ void sym_fwd_kernel(const float2* __restrict__ v, const float2* __restrict__ z,
                               const float2* __restrict__ w, float2* __restrict__ out,
                               int64_t batch, int n_modes, int64_t length) {
  extern __shared__ float2 smem[];
  float2* sv = smem;
  float2* sw = smem + n_modes;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    __syncthreads();  // previous row's readers are done with the shared buffers
    for (int i = threadIdx.x; i < n_modes; i += blockDim.x) {
      sv[i] = v[b * n_modes + i];
      sw[i] = w[b * n_modes + i];
    }
    __syncthreads();
    for (int64_t l = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; l < length;
         l += (int64_t)gridDim.x * blockDim.x) {
      const float2 zl = z[l];
      float2 acc = make_float2(0.f, 0.f);
      for (int n = 0; n < n_modes; ++n) {
        const float2 vn = sv[n];
        const float2 wn = sw[n];
        const float dx = zl.x - wn.x;
        const float2 k1 = crecip(dx, zl.y - wn.y);
        const float2 k2 = crecip(dx, zl.y + wn.y);
        acc = cadd(acc, cadd(cmul(vn, k1), cmul(cconj(vn), k2)));
      }
      out[b * length + l] = acc;
    }
  }
}

// grid (mode blocks of kBwdWarps, batch rows), block (32, kBwdWarps): warp ty owns mode n and
// reduces over the nodes l with its 32 lanes.
__global__ void sym_bwd_kernel(const float2* __restrict__ v, const float2* __restrict__ z,
                               const float2* __restrict__ w, const float2* __restrict__ dout,
                               float2* __restrict__ dv, float2* __restrict__ dw,
                               int64_t batch, int n_modes, int64_t length) {
  const int n = blockIdx.x * blockDim.y + threadIdx.y;
  if (n >= n_modes) return;  // whole warps only: no warp-level op is split
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const float2 vn = v[b * n_modes + n];
    const float2 wn = w[b * n_modes + n];
    const float2* g_row = dout + b * length;
    float2 acc_v = make_float2(0.f, 0.f);
    float2 acc_a = make_float2(0.f, 0.f);  // sum_l g conj(K1^2)
    float2 acc_c = make_float2(0.f, 0.f);  // sum_l conj(g) K2^2
    for (int64_t l = threadIdx.x; l < length; l += blockDim.x) {
      const float2 zl = z[l];
      const float2 g = g_row[l];
      const float dx = zl.x - wn.x;
      const float2 k1 = crecip(dx, zl.y - wn.y);
      const float2 k2 = crecip(dx, zl.y + wn.y);
      const float2 gc = cconj(g);
      acc_v = cadd(acc_v, cadd(cmul(g, cconj(k1)), cmul(gc, k2)));
      acc_a = cadd(acc_a, cmul(g, cconj(cmul(k1, k1))));
      acc_c = cadd(acc_c, cmul(gc, cmul(k2, k2)));
    }
    acc_v = warp_sum(acc_v);
    acc_a = warp_sum(acc_a);
    acc_c = warp_sum(acc_c);
    if (threadIdx.x == 0) {
      dv[b * n_modes + n] = acc_v;
      // dw = conj(v) * (sum g conj(K1^2) + sum conj(g) K2^2)
      dw[b * n_modes + n] = cmul(cconj(vn), cadd(acc_a, acc_c));
    }
  }
}

inline const float2* as_float2(const at::Tensor& t) {
  return reinterpret_cast<const float2*>(t.data_ptr<c10::complex<float>>());
}

inline float2* as_float2_mut(at::Tensor& t) {
  return reinterpret_cast<float2*>(t.data_ptr<c10::complex<float>>());
}

}  // namespace

at::Tensor sym_fwd_cuda(const at::Tensor& v, const at::Tensor& z, const at::Tensor& w) {
  const c10::cuda::CUDAGuard guard(v.device());
  const int64_t batch = v.size(0);
  const int n_modes = static_cast<int>(v.size(1));
  const int64_t length = z.size(0);
  at::Tensor out = at::empty({batch, length}, v.options());
  if (batch == 0 || length == 0) return out;
  const int64_t node_blocks = std::min<int64_t>((length + kFwdThreads - 1) / kFwdThreads, 1 << 30);
  const dim3 grid(static_cast<unsigned>(node_blocks), static_cast<unsigned>(std::min(batch, kMaxGridY)));
  const size_t smem = 2 * static_cast<size_t>(n_modes) * sizeof(float2);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  sym_fwd_kernel<<<grid, kFwdThreads, smem, stream>>>(as_float2(v), as_float2(z), as_float2(w),
                                                      as_float2_mut(out), batch, n_modes, length);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> sym_bwd_cuda(const at::Tensor& v, const at::Tensor& z, const at::Tensor& w,
                                                const at::Tensor& dout) {
  const c10::cuda::CUDAGuard guard(v.device());
  const int64_t batch = v.size(0);
  const int n_modes = static_cast<int>(v.size(1));
  const int64_t length = z.size(0);
  at::Tensor dv = at::zeros_like(v);
  at::Tensor dw = at::zeros_like(w);
  if (batch == 0 || length == 0) return {dv, dw};
  const dim3 block(kBwdLanes, kBwdWarps);
  const dim3 grid(static_cast<unsigned>((n_modes + kBwdWarps - 1) / kBwdWarps),
                  static_cast<unsigned>(std::min(batch, kMaxGridY)));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  sym_bwd_kernel<<<grid, block, 0, stream>>>(as_float2(v), as_float2(z), as_float2(w), as_float2(dout),
                                             as_float2_mut(dv), as_float2_mut(dw), batch, n_modes, length);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {dv, dw};
}

}  // namespace cauchy
