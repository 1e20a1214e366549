// avaction's thin C++ shim over the TensorRT C++ API (TensorRT 10; 8.5+ also builds).
//
// It exposes the `extern "C"` functions of shim.h over opaque handles so Rust never
// sees a C++ type. Nothing here allocates or frees per inference: buffers are made in
// avt_engine_load and reused by avt_engine_run. No exception crosses the boundary.

#include "shim.h"

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace {

std::atomic<AvtLogFn> g_log_callback{nullptr};
// The last error TensorRT logged on this thread, appended to failure messages.
thread_local std::string t_last_error;

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, nvinfer1::AsciiChar const *msg) noexcept override {
    if (severity <= Severity::kERROR) {
      try {
        t_last_error = msg ? msg : "";
      } catch (...) {
      }
    }
    AvtLogFn cb = g_log_callback.load();
    if (cb != nullptr && msg != nullptr) {
      cb(static_cast<int32_t>(severity), msg);
    }
  }
};

Logger &logger() {
  static Logger instance;
  return instance;
}

// Writes "what[: detail][ (TensorRT: last error)]" into err and returns 1.
int32_t fail(char *err, size_t err_len, const std::string &what, const std::string &detail = "") {
  std::string msg = what;
  if (!detail.empty()) msg += ": " + detail;
  if (!t_last_error.empty()) {
    msg += " (TensorRT: " + t_last_error + ")";
    t_last_error.clear();
  }
  if (err != nullptr && err_len > 0) {
    std::snprintf(err, err_len, "%s", msg.c_str());
  }
  return 1;
}

int32_t cuda_fail(char *err, size_t err_len, const std::string &what, cudaError_t e) {
  return fail(err, err_len, what,
              std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")");
}

template <typename T>
struct TrtDelete {
  void operator()(T *p) const { delete p; }
};
template <typename T>
using TrtPtr = std::unique_ptr<T, TrtDelete<T>>;

int32_t normalise_version(int32_t v) {
  // TensorRT 10 encodes major*10000 + minor*100 + patch; 8.x used major*1000 + ...
  if (v < 100000) {
    return (v / 1000) * 10000 + ((v / 100) % 10) * 100 + v % 100;
  }
  return v;
}

bool find_shape(const char *name, int32_t n, const char *const *names, const int64_t *const *dims,
                const int32_t *nb_dims, nvinfer1::Dims *out) {
  for (int32_t i = 0; i < n; ++i) {
    if (std::strcmp(names[i], name) == 0) {
      if (nb_dims[i] < 0 || nb_dims[i] > nvinfer1::Dims::MAX_DIMS) return false;
      out->nbDims = nb_dims[i];
      for (int32_t k = 0; k < nb_dims[i]; ++k) {
        out->d[k] = static_cast<decltype(out->d[0] + 0)>(dims[i][k]);
      }
      return true;
    }
  }
  return false;
}

std::string dims_text(const nvinfer1::Dims &d) {
  std::string s = "[";
  for (int32_t k = 0; k < d.nbDims; ++k) {
    if (k) s += ", ";
    s += std::to_string(static_cast<long long>(d.d[k]));
  }
  return s + "]";
}

struct Io {
  std::string name;
  bool input = false;
  nvinfer1::Dims dims{};
  size_t elems = 0;
  void *device = nullptr;  // what TensorRT reads/writes
  void *host = nullptr;    // integrated GPUs only: the mapped pinned buffer
};

}  // namespace

struct AvtEngine {
  int32_t device = 0;
  bool integrated = false;
  TrtPtr<nvinfer1::IRuntime> runtime;
  TrtPtr<nvinfer1::ICudaEngine> engine;
  TrtPtr<nvinfer1::IExecutionContext> context;
  cudaStream_t stream = nullptr;
  std::vector<Io> io;

  ~AvtEngine() {
    for (Io &b : io) {
      if (integrated) {
        if (b.host) cudaFreeHost(b.host);
      } else if (b.device) {
        cudaFree(b.device);
      }
    }
    if (stream) cudaStreamDestroy(stream);
    // context, engine, runtime: destroyed in reverse order of declaration.
  }
};

extern "C" {

void avt_set_log_callback(AvtLogFn callback) { g_log_callback.store(callback); }

int32_t avt_header_version(void) {
  return NV_TENSORRT_MAJOR * 10000 + NV_TENSORRT_MINOR * 100 + NV_TENSORRT_PATCH;
}

int32_t avt_library_version(void) { return normalise_version(getInferLibVersion()); }

int32_t avt_cuda_device(int32_t device, char *name, size_t name_len, int32_t *cc_major,
                        int32_t *cc_minor, int32_t *integrated, char *err, size_t err_len) {
  try {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return cuda_fail(err, err_len, "no usable CUDA driver", e);
    if (device < 0 || device >= count) {
      return fail(err, err_len,
                  "CUDA device " + std::to_string(device) + " does not exist (" +
                      std::to_string(count) + " found)");
    }
    cudaDeviceProp prop{};
    e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) return cuda_fail(err, err_len, "cudaGetDeviceProperties", e);
    if (name != nullptr && name_len > 0) std::snprintf(name, name_len, "%s", prop.name);
    *cc_major = prop.major;
    *cc_minor = prop.minor;
    *integrated = prop.integrated ? 1 : 0;
    return 0;
  } catch (const std::exception &ex) {
    return fail(err, err_len, "avt_cuda_device: C++ exception", ex.what());
  } catch (...) {
    return fail(err, err_len, "avt_cuda_device: unknown C++ exception");
  }
}

int32_t avt_build_engine(int32_t device, const uint8_t *onnx, size_t onnx_len,
                         int32_t precision, uint64_t workspace_bytes, int32_t n_shapes,
                         const char *const *names, const int64_t *const *dims,
                         const int32_t *nb_dims, uint8_t **plan, size_t *plan_len, char *err,
                         size_t err_len) {
  try {
    t_last_error.clear();
    *plan = nullptr;
    *plan_len = 0;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return cuda_fail(err, err_len, "cudaSetDevice", e);
    TrtPtr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger()));
    if (!builder) return fail(err, err_len, "createInferBuilder failed");
#if NV_TENSORRT_MAJOR >= 10
    const uint32_t flags = 0;  // networks are always explicit-batch in TensorRT 10
#else
    const uint32_t flags =
        1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
#endif
    TrtPtr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(flags));
    if (!network) return fail(err, err_len, "createNetworkV2 failed");
    TrtPtr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger()));
    if (!parser) return fail(err, err_len, "nvonnxparser::createParser failed");
    if (!parser->parse(onnx, onnx_len)) {
      std::string all;
      for (int32_t i = 0; i < parser->getNbErrors(); ++i) {
        if (i) all += "; ";
        all += parser->getError(i)->desc();
      }
      return fail(err, err_len, "the ONNX parser rejected the model", all);
    }
    TrtPtr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
    if (!config) return fail(err, err_len, "createBuilderConfig failed");
    if (workspace_bytes > 0) {
      config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, workspace_bytes);
    }
    if (precision == 1) {
      // Deprecated since TensorRT 10.12 in favour of strongly typed networks, but the
      // only way to let the builder pick FP16 kernels for an FP32 ONNX graph on every
      // TensorRT this shim supports (JetPack 6 ships 10.3).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
      config->setFlag(nvinfer1::BuilderFlag::kFP16);
#pragma GCC diagnostic pop
    } else if (precision != 0)
      return fail(err, err_len, "unsupported precision code " + std::to_string(precision));

    nvinfer1::IOptimizationProfile *profile = nullptr;
    for (int32_t i = 0; i < network->getNbInputs(); ++i) {
      nvinfer1::ITensor *input = network->getInput(i);
      nvinfer1::Dims d = input->getDimensions();
      bool dynamic = false;
      for (int32_t k = 0; k < d.nbDims; ++k) dynamic = dynamic || d.d[k] < 0;
      if (!dynamic) continue;
      nvinfer1::Dims fixed{};
      if (!find_shape(input->getName(), n_shapes, names, dims, nb_dims, &fixed)) {
        return fail(err, err_len,
                    std::string("input `") + input->getName() + "` has dynamic shape " +
                        dims_text(d) + " and the manifest gives no shape for it");
      }
      if (profile == nullptr) profile = builder->createOptimizationProfile();
      if (profile == nullptr) return fail(err, err_len, "createOptimizationProfile failed");
      using Sel = nvinfer1::OptProfileSelector;
      if (!profile->setDimensions(input->getName(), Sel::kMIN, fixed) ||
          !profile->setDimensions(input->getName(), Sel::kOPT, fixed) ||
          !profile->setDimensions(input->getName(), Sel::kMAX, fixed)) {
        return fail(err, err_len,
                    std::string("input `") + input->getName() + "`: shape " + dims_text(fixed) +
                        " does not fit the graph's " + dims_text(d));
      }
    }
    if (profile != nullptr && config->addOptimizationProfile(profile) < 0) {
      return fail(err, err_len, "addOptimizationProfile failed");
    }
    TrtPtr<nvinfer1::IHostMemory> serialized(builder->buildSerializedNetwork(*network, *config));
    if (!serialized || serialized->size() == 0) {
      return fail(err, err_len, "buildSerializedNetwork failed");
    }
    auto *buf = static_cast<uint8_t *>(std::malloc(serialized->size()));
    if (buf == nullptr) return fail(err, err_len, "out of host memory for the engine");
    std::memcpy(buf, serialized->data(), serialized->size());
    *plan = buf;
    *plan_len = serialized->size();
    return 0;
  } catch (const std::exception &ex) {
    return fail(err, err_len, "avt_build_engine: C++ exception", ex.what());
  } catch (...) {
    return fail(err, err_len, "avt_build_engine: unknown C++ exception");
  }
}

void avt_free(void *buffer) { std::free(buffer); }

AvtEngine *avt_engine_load(int32_t device, const uint8_t *plan, size_t plan_len, int32_t n_shapes,
                           const char *const *names, const int64_t *const *dims,
                           const int32_t *nb_dims, char *err, size_t err_len) {
  try {
    t_last_error.clear();
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) {
      cuda_fail(err, err_len, "cudaSetDevice", e);
      return nullptr;
    }
    cudaDeviceProp prop{};
    e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
      cuda_fail(err, err_len, "cudaGetDeviceProperties", e);
      return nullptr;
    }
    std::unique_ptr<AvtEngine> out(new AvtEngine());
    out->device = device;
    out->integrated = prop.integrated != 0;
    out->runtime.reset(nvinfer1::createInferRuntime(logger()));
    if (!out->runtime) {
      fail(err, err_len, "createInferRuntime failed");
      return nullptr;
    }
    out->engine.reset(out->runtime->deserializeCudaEngine(plan, plan_len));
    if (!out->engine) {
      fail(err, err_len, "deserializeCudaEngine failed (engine from another TensorRT version?)");
      return nullptr;
    }
    out->context.reset(out->engine->createExecutionContext());
    if (!out->context) {
      fail(err, err_len, "createExecutionContext failed");
      return nullptr;
    }
    e = cudaStreamCreateWithFlags(&out->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
      cuda_fail(err, err_len, "cudaStreamCreate", e);
      return nullptr;
    }
    const int32_t n = out->engine->getNbIOTensors();
    out->io.resize(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) {
      Io &b = out->io[static_cast<size_t>(i)];
      b.name = out->engine->getIOTensorName(i);
      b.input = out->engine->getTensorIOMode(b.name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
      if (out->engine->getTensorDataType(b.name.c_str()) != nvinfer1::DataType::kFLOAT) {
        fail(err, err_len, "tensor `" + b.name + "` is not float32; only float32 I/O is supported");
        return nullptr;
      }
      if (b.input) {
        nvinfer1::Dims fixed{};
        if (find_shape(b.name.c_str(), n_shapes, names, dims, nb_dims, &fixed) &&
            !out->context->setInputShape(b.name.c_str(), fixed)) {
          fail(err, err_len, "input `" + b.name + "`: shape " + dims_text(fixed) + " refused");
          return nullptr;
        }
      }
    }
    if (!out->context->allInputDimensionsSpecified()) {
      fail(err, err_len, "some input has a dynamic shape the manifest does not fix");
      return nullptr;
    }
    for (Io &b : out->io) {
      b.dims = out->context->getTensorShape(b.name.c_str());
      size_t elems = 1;
      for (int32_t k = 0; k < b.dims.nbDims; ++k) {
        if (b.dims.d[k] < 0) {
          fail(err, err_len, "tensor `" + b.name + "` has unresolved shape " + dims_text(b.dims));
          return nullptr;
        }
        elems *= static_cast<size_t>(b.dims.d[k]);
      }
      b.elems = elems;
      const size_t bytes = elems * sizeof(float) + (elems == 0 ? 1 : 0);
      if (out->integrated) {
        e = cudaHostAlloc(&b.host, bytes, cudaHostAllocMapped);
        if (e == cudaSuccess) e = cudaHostGetDevicePointer(&b.device, b.host, 0);
      } else {
        e = cudaMalloc(&b.device, bytes);
      }
      if (e != cudaSuccess) {
        cuda_fail(err, err_len, "allocating " + std::to_string(bytes) + " bytes for `" + b.name + "`",
                  e);
        return nullptr;
      }
      if (!out->context->setTensorAddress(b.name.c_str(), b.device)) {
        fail(err, err_len, "setTensorAddress `" + b.name + "` failed");
        return nullptr;
      }
    }
    return out.release();
  } catch (const std::exception &ex) {
    fail(err, err_len, "avt_engine_load: C++ exception", ex.what());
    return nullptr;
  } catch (...) {
    fail(err, err_len, "avt_engine_load: unknown C++ exception");
    return nullptr;
  }
}

int32_t avt_engine_io_count(const AvtEngine *engine) {
  return engine ? static_cast<int32_t>(engine->io.size()) : 0;
}

int32_t avt_engine_io(const AvtEngine *engine, int32_t index, const char **name, int32_t *is_input,
                      int64_t *dims, int32_t *nb_dims) {
  if (engine == nullptr || index < 0 || static_cast<size_t>(index) >= engine->io.size()) return 1;
  const Io &b = engine->io[static_cast<size_t>(index)];
  if (*nb_dims < b.dims.nbDims) return 1;
  *name = b.name.c_str();
  *is_input = b.input ? 1 : 0;
  for (int32_t k = 0; k < b.dims.nbDims; ++k) dims[k] = static_cast<int64_t>(b.dims.d[k]);
  *nb_dims = b.dims.nbDims;
  return 0;
}

int32_t avt_engine_run(AvtEngine *engine, float *const *host, const size_t *lens, int32_t n_io,
                       char *err, size_t err_len) {
  try {
    t_last_error.clear();
    if (engine == nullptr) return fail(err, err_len, "no engine");
    if (n_io < 0 || static_cast<size_t>(n_io) != engine->io.size()) {
      return fail(err, err_len,
                  std::to_string(n_io) + " buffers given, the engine has " +
                      std::to_string(engine->io.size()) + " I/O tensors");
    }
    for (size_t i = 0; i < engine->io.size(); ++i) {
      if (lens[i] != engine->io[i].elems) {
        return fail(err, err_len,
                    "tensor `" + engine->io[i].name + "`: " + std::to_string(lens[i]) +
                        " values given, shape " + dims_text(engine->io[i].dims) + " holds " +
                        std::to_string(engine->io[i].elems));
      }
    }
    cudaError_t e = cudaSetDevice(engine->device);
    if (e != cudaSuccess) return cuda_fail(err, err_len, "cudaSetDevice", e);
    for (size_t i = 0; i < engine->io.size(); ++i) {
      const Io &b = engine->io[i];
      if (!b.input) continue;
      const size_t bytes = b.elems * sizeof(float);
      if (engine->integrated) {
        std::memcpy(b.host, host[i], bytes);
      } else {
        e = cudaMemcpyAsync(b.device, host[i], bytes, cudaMemcpyHostToDevice, engine->stream);
        if (e != cudaSuccess) return cuda_fail(err, err_len, "copying `" + b.name + "` in", e);
      }
    }
    if (!engine->context->enqueueV3(engine->stream)) return fail(err, err_len, "enqueueV3 failed");
    if (!engine->integrated) {
      for (size_t i = 0; i < engine->io.size(); ++i) {
        const Io &b = engine->io[i];
        if (b.input) continue;
        e = cudaMemcpyAsync(host[i], b.device, b.elems * sizeof(float), cudaMemcpyDeviceToHost,
                            engine->stream);
        if (e != cudaSuccess) return cuda_fail(err, err_len, "copying `" + b.name + "` out", e);
      }
    }
    e = cudaStreamSynchronize(engine->stream);
    if (e != cudaSuccess) return cuda_fail(err, err_len, "inference on the GPU failed", e);
    if (engine->integrated) {
      for (size_t i = 0; i < engine->io.size(); ++i) {
        const Io &b = engine->io[i];
        if (!b.input) std::memcpy(host[i], b.host, b.elems * sizeof(float));
      }
    }
    return 0;
  } catch (const std::exception &ex) {
    return fail(err, err_len, "avt_engine_run: C++ exception", ex.what());
  } catch (...) {
    return fail(err, err_len, "avt_engine_run: unknown C++ exception");
  }
}

void avt_engine_free(AvtEngine *engine) { delete engine; }

}  // extern "C"
