// Python bindings and input checks for the symmetric Cauchy kernel (see cauchy_cuda.cu).
//
//   cauchy_mult_sym_fwd(v, z, w)        -> r   (B, L)
//   cauchy_mult_sym_bwd(v, z, w, dout)  -> (dv, dw)   both (B, N)
//
// with r[b, l] = sum_n v[b,n] / (z[l] - w[b,n]) + conj(v[b,n]) / (z[l] - conj(w[b,n])).
// All tensors: CUDA, complex64, contiguous, on one device; v and w (B, N) with 1 <= N <= 1024, z (L,),
// dout (B, L). Gradients follow PyTorch's convention for complex tensors (conjugate Wirtinger).
#include <torch/extension.h>

#include <tuple>

namespace cauchy {

constexpr int64_t kMaxN = 1024;

torch::Tensor sym_fwd_cuda(const torch::Tensor& v, const torch::Tensor& z, const torch::Tensor& w);
std::tuple<torch::Tensor, torch::Tensor> sym_bwd_cuda(const torch::Tensor& v, const torch::Tensor& z,
                                                      const torch::Tensor& w, const torch::Tensor& dout);

namespace {

void check_tensor(const torch::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.is_cuda(), "cauchy_mult: ", name, " must be a CUDA tensor, got device ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kComplexFloat, "cauchy_mult: ", name,
              " must be complex64 (torch.cfloat), got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "cauchy_mult: ", name, " must be contiguous");
  TORCH_CHECK(t.dim() == dim, "cauchy_mult: ", name, " must have ", dim, " dimensions, got shape ", t.sizes());
}

void check_common(const torch::Tensor& v, const torch::Tensor& z, const torch::Tensor& w) {
  check_tensor(v, "v", 2);
  check_tensor(z, "z", 1);
  check_tensor(w, "w", 2);
  TORCH_CHECK(v.sizes() == w.sizes(), "cauchy_mult: v and w must both be (batch, N), got ", v.sizes(),
              " and ", w.sizes());
  TORCH_CHECK(v.device() == z.device() && v.device() == w.device(),
              "cauchy_mult: v, z and w must be on one device");
  const int64_t n = v.size(1);
  TORCH_CHECK(n >= 1 && n <= kMaxN, "cauchy_mult: N (last dimension of v and w) must be in [1, ", kMaxN,
              "], got ", n);
}

}  // namespace

torch::Tensor sym_fwd(const torch::Tensor& v, const torch::Tensor& z, const torch::Tensor& w) {
  check_common(v, z, w);
  return sym_fwd_cuda(v, z, w);
}

std::tuple<torch::Tensor, torch::Tensor> sym_bwd(const torch::Tensor& v, const torch::Tensor& z,
                                                 const torch::Tensor& w, const torch::Tensor& dout) {
  check_common(v, z, w);
  check_tensor(dout, "dout", 2);
  TORCH_CHECK(dout.size(0) == v.size(0) && dout.size(1) == z.size(0),
              "cauchy_mult: dout must be (batch, L) = (", v.size(0), ", ", z.size(0), "), got ", dout.sizes());
  TORCH_CHECK(dout.device() == v.device(), "cauchy_mult: dout must be on the device of v");
  return sym_bwd_cuda(v, z, w, dout);
}

}  // namespace cauchy

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Symmetric (conjugate-pair) Cauchy kernel for S4, CUDA, complex64";
  m.def("cauchy_mult_sym_fwd", &cauchy::sym_fwd,
        "r[b,l] = sum_n v/(z_l - w) + conj(v)/(z_l - conj(w)); v, w (B, N), z (L,) -> (B, L)",
        py::arg("v"), py::arg("z"), py::arg("w"));
  m.def("cauchy_mult_sym_bwd", &cauchy::sym_bwd,
        "gradients (dv, dw), each (B, N), of cauchy_mult_sym_fwd given dout (B, L)",
        py::arg("v"), py::arg("z"), py::arg("w"), py::arg("dout"));
  m.attr("MAX_N") = cauchy::kMaxN;
}
