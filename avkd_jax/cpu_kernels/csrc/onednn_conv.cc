// The students' 2-D convolutions on the CPU through oneDNN, as XLA FFI custom calls.
//
// XLA:CPU lowers a convolution to Eigen's im2col + GEMM, slowest exactly where a ResNet
// spends its time on the CPU: the weight gradients of the large layers and the lopsided
// matrices of the late ones. oneDNN (the library PyTorch calls for the same work) has
// direct kernels. Activations stay NHWC and weights HWIO, as JAX holds them; the kernel
// gets the NHWC activations as they are and the weights reordered into the blocked layout
// it asks for (blocking the activations too costs a reorder each way per call).
//
// Three targets, float32 or bfloat16 throughout, stride and padding as attributes:
//   avkd_conv_fwd          x [N, H, W, C],   w [KH, KW, C, O] → y  [N, Ho, Wo, O]
//   avkd_conv_bwd_data     g [N, Ho, Wo, O], w [KH, KW, C, O] → dx [N, H, W, C]
//   avkd_conv_bwd_weights  x [N, H, W, C],   g [N, Ho, Wo, O] → dw [KH, KW, C, O]

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

namespace {

enum Kind { kFwd = 0, kBwdData = 1, kBwdWeights = 2 };

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One primitive per (kind, shapes, strides, padding), built on first use. Its three
// operands (two inputs, then the output) are in JAX's layouts (`user`); where the kernel
// wants another layout (`want`), an input is reordered into a scratch buffer before and
// the output from one after.
struct Conv {
  dnnl::primitive prim;
  int args[3];
  memory::desc user[3], want[3], scratch;
  dnnl::reorder reorders[3];
};

// Scratch: [0..2] the operands in the kernel's layouts, [3] oneDNN's scratchpad. Shared,
// as one convolution runs at a time (`run_mutex`).
std::vector<char> buffers[4];

char* Buffer(int i, size_t n) {
  if (buffers[i].size() < n) buffers[i].resize(n);
  return buffers[i].data();
}

std::mutex cache_mutex, run_mutex;
std::unordered_map<std::string, std::shared_ptr<Conv>> cache;

std::string Key(int kind, const memory::dims& src, const memory::dims& wei,
                const memory::dims& dst, const memory::dims& strides,
                const memory::dims& pad_l, const memory::dims& pad_r) {
  std::string key = std::to_string(kind);
  for (const auto* d : {&src, &wei, &dst, &strides, &pad_l, &pad_r}) {
    key += '|';
    for (int64_t v : *d) key += std::to_string(v) + ',';
  }
  return key;
}

// `type`: the operands' data type; `compute`: the kernel's (the same, unless bfloat16
// operands are converted to float32 around a float32 kernel).
std::shared_ptr<Conv> Build(int kind, memory::data_type type, memory::data_type compute,
                            const memory::dims& src, const memory::dims& wei,
                            const memory::dims& dst, const memory::dims& strides,
                            const memory::dims& pad_l, const memory::dims& pad_r) {
  auto& eng = Engine();
  memory::desc src_md(src, type, tag::nhwc), dst_md(dst, type, tag::nhwc);
  memory::desc wei_md(wei, type, tag::hwio);
  memory::desc src_k(src, compute, tag::nhwc), dst_k(dst, compute, tag::nhwc);
  memory::desc wei_any(wei, compute, tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto conv = std::make_shared<Conv>();
  dnnl::convolution_forward::primitive_desc fwd(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_k,
      wei_any, dst_k, strides, pad_l, pad_r, attr);
  if (kind == kFwd) {
    conv->prim = dnnl::convolution_forward(fwd);
    conv->args[0] = DNNL_ARG_SRC, conv->args[1] = DNNL_ARG_WEIGHTS, conv->args[2] = DNNL_ARG_DST;
    conv->user[0] = src_md, conv->user[1] = wei_md, conv->user[2] = dst_md;
    conv->want[0] = fwd.src_desc(), conv->want[1] = fwd.weights_desc();
    conv->want[2] = fwd.dst_desc(), conv->scratch = fwd.scratchpad_desc();
  } else if (kind == kBwdData) {
    dnnl::convolution_backward_data::primitive_desc bwd(
        eng, dnnl::algorithm::convolution_direct, src_k, wei_any, dst_k, strides, pad_l,
        pad_r, fwd, attr);
    conv->prim = dnnl::convolution_backward_data(bwd);
    conv->args[0] = DNNL_ARG_DIFF_DST, conv->args[1] = DNNL_ARG_WEIGHTS;
    conv->args[2] = DNNL_ARG_DIFF_SRC;
    conv->user[0] = dst_md, conv->user[1] = wei_md, conv->user[2] = src_md;
    conv->want[0] = bwd.diff_dst_desc(), conv->want[1] = bwd.weights_desc();
    conv->want[2] = bwd.diff_src_desc(), conv->scratch = bwd.scratchpad_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc bwd(
        eng, dnnl::algorithm::convolution_direct, src_k, wei_any, dst_k, strides, pad_l,
        pad_r, fwd, attr);
    conv->prim = dnnl::convolution_backward_weights(bwd);
    conv->args[0] = DNNL_ARG_SRC, conv->args[1] = DNNL_ARG_DIFF_DST;
    conv->args[2] = DNNL_ARG_DIFF_WEIGHTS;
    conv->user[0] = src_md, conv->user[1] = dst_md, conv->user[2] = wei_md;
    conv->want[0] = bwd.src_desc(), conv->want[1] = bwd.diff_dst_desc();
    conv->want[2] = bwd.diff_weights_desc(), conv->scratch = bwd.scratchpad_desc();
  }
  for (int i = 0; i < 3; ++i) {
    if (conv->want[i] == conv->user[i]) continue;
    conv->reorders[i] = i < 2 ? dnnl::reorder(dnnl::reorder::primitive_desc(
                                    eng, conv->user[i], eng, conv->want[i]))
                              : dnnl::reorder(dnnl::reorder::primitive_desc(
                                    eng, conv->want[i], eng, conv->user[i]));
  }
  return conv;
}

std::shared_ptr<Conv> Get(int kind, memory::data_type type, const memory::dims& src, const memory::dims& wei,
                          const memory::dims& dst, const memory::dims& strides,
                          const memory::dims& pad_l, const memory::dims& pad_r) {
  const std::string key = Key(kind * 100 + static_cast<int>(type), src, wei, dst, strides, pad_l, pad_r);
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  std::shared_ptr<Conv> conv;
  try {
    conv = Build(kind, type, type, src, wei, dst, strides, pad_l, pad_r);
  } catch (const dnnl::error&) {
    // A CPU without bfloat16 kernels in this oneDNN: float32 ones, converting around them.
    if (type != memory::data_type::bf16) throw;
    conv = Build(kind, type, memory::data_type::f32, src, wei, dst, strides, pad_l, pad_r);
  }
  std::lock_guard<std::mutex> lock(cache_mutex);
  return cache.emplace(key, conv).first->second;
}

// JAX's NHWC / HWIO shapes → oneDNN's logical NCHW / OIHW dims.
memory::dims Nchw(ffi::Span<const int64_t> d) { return {d[0], d[3], d[1], d[2]}; }
memory::dims Oihw(ffi::Span<const int64_t> d) { return {d[3], d[2], d[0], d[1]}; }

ffi::Error Run(int kind, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
               ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding) {
  if (strides.size() != 2 || padding.size() != 4)
    return ffi::Error::InvalidArgument("avkd conv: strides must have 2, padding 4 entries");
  const ffi::DataType element = a.element_type();
  if (element != ffi::DataType::F32 && element != ffi::DataType::BF16)
    return ffi::Error::InvalidArgument("avkd conv: operands must be float32 or bfloat16");
  for (auto* buf : {&a, &b})
    if (buf->element_type() != element || buf->dimensions().size() != 4)
      return ffi::Error::InvalidArgument("avkd conv: operands must be 4-D, of one type");
  if (out->element_type() != element)
    return ffi::Error::InvalidArgument("avkd conv: the result must have the operands' type");
  const auto type =
      element == ffi::DataType::F32 ? memory::data_type::f32 : memory::data_type::bf16;
  // Which operand holds which shape: x, w, y for the forward pass.
  ffi::Span<const int64_t> x, w, y;
  if (kind == kFwd) x = a.dimensions(), w = b.dimensions(), y = out->dimensions();
  if (kind == kBwdData) y = a.dimensions(), w = b.dimensions(), x = out->dimensions();
  if (kind == kBwdWeights) x = a.dimensions(), y = b.dimensions(), w = out->dimensions();
  const memory::dims st = {strides[0], strides[1]};
  const memory::dims pl = {padding[0], padding[2]}, pr = {padding[1], padding[3]};
  try {
    auto conv = Get(kind, type, Nchw(x), Oihw(w), Nchw(y), st, pl, pr);
    auto& eng = Engine();
    // One convolution at a time: each already uses every core through OpenMP, and XLA
    // runs the two students' branches concurrently; two teams on the same cores wait
    // for each other's descheduled threads at every barrier.
    std::lock_guard<std::mutex> exclusive(run_mutex);
    dnnl::stream stream(eng);
    void* data[3] = {a.untyped_data(), b.untyped_data(), out->untyped_data()};
    std::unordered_map<int, memory> args;
    memory user[3];
    for (int i = 0; i < 3; ++i) {
      user[i] = memory(conv->user[i], eng, data[i]);
      if (conv->want[i] == conv->user[i]) {
        args[conv->args[i]] = user[i];
        continue;
      }
      memory want(conv->want[i], eng, Buffer(i, conv->want[i].get_size()));
      if (i < 2) conv->reorders[i].execute(stream, user[i], want);
      args[conv->args[i]] = want;
    }
    args[DNNL_ARG_SCRATCHPAD] = memory(conv->scratch, eng, Buffer(3, conv->scratch.get_size()));
    conv->prim.execute(stream, args);
    if (conv->want[2] != conv->user[2])
      conv->reorders[2].execute(stream, args[conv->args[2]], user[2]);
    stream.wait();
  } catch (const std::exception& e) {  // oneDNN's errors, and out of memory.
    return ffi::Error::Internal(std::string("avkd conv (oneDNN): ") + e.what());
  }
  return ffi::Error::Success();
}

#define AVKD_BIND                                                                     \
  ffi::Ffi::Bind()                                                                    \
      .Arg<ffi::AnyBuffer>()                                                          \
      .Arg<ffi::AnyBuffer>()                                                          \
      .Ret<ffi::AnyBuffer>()                                                          \
      .Attr<ffi::Span<const int64_t>>("strides")                                      \
      .Attr<ffi::Span<const int64_t>>("padding")

ffi::Error Fwd(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
               ffi::Span<const int64_t> s, ffi::Span<const int64_t> p) {
  return Run(kFwd, a, b, out, s, p);
}
ffi::Error BwdData(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                   ffi::Span<const int64_t> s, ffi::Span<const int64_t> p) {
  return Run(kBwdData, a, b, out, s, p);
}
ffi::Error BwdWeights(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                      ffi::Span<const int64_t> s, ffi::Span<const int64_t> p) {
  return Run(kBwdWeights, a, b, out, s, p);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AvkdConvFwd, Fwd, AVKD_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(AvkdConvBwdData, BwdData, AVKD_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(AvkdConvBwdWeights, BwdWeights, AVKD_BIND);
