/* The C surface of avaction's TensorRT shim (runtime/backend/tensorrt/shim.cpp).
 *
 * Opaque handles and plain C types only, so Rust declares the same functions in
 * runtime/backend/tensorrt/ffi.rs. Every fallible function returns 0 on success and
 * otherwise writes a NUL-terminated message into `err` (at most `err_len` bytes,
 * truncated) naming the step that failed and TensorRT's or CUDA's own words. No
 * function throws or aborts; C++ exceptions are caught at this boundary.
 */
#ifndef AVACTION_TRT_SHIM_H
#define AVACTION_TRT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A deserialised engine with its execution context, CUDA stream and I/O buffers. */
typedef struct AvtEngine AvtEngine;

/* Receives TensorRT's log lines: severity 0 internal error, 1 error, 2 warning,
 * 3 info, 4 verbose. Called from whichever thread TensorRT logs on. */
typedef void (*AvtLogFn)(int32_t severity, const char *message);

/* Installs the log callback (NULL: drop log lines). */
void avt_set_log_callback(AvtLogFn callback);

/* The TensorRT version of the headers the shim was compiled with and of the
 * libnvinfer loaded at run time, each as major*10000 + minor*100 + patch. */
int32_t avt_header_version(void);
int32_t avt_library_version(void);

/* Describes CUDA device `device`: its name (NUL-terminated, truncated to name_len),
 * compute capability, and whether it is integrated (Jetson: memory shared with the
 * CPU). Fails where there is no CUDA driver or no such device. */
int32_t avt_cuda_device(int32_t device, char *name, size_t name_len, int32_t *cc_major,
                        int32_t *cc_minor, int32_t *integrated, char *err, size_t err_len);

/* Builds a serialised engine from an ONNX model held in memory.
 * precision: 0 = fp32, 1 = fp16. INT8 is not offered (the Rust side refuses it).
 * workspace_bytes: builder memory pool limit (0 = TensorRT's default).
 * Inputs with dynamic dimensions get one optimisation profile with min = opt = max =
 * the shape given here for the input of the same name (n_shapes entries; dims of
 * shape i are dims[i][0..nb_dims[i]]).
 * On success *plan is a buffer of *plan_len bytes owned by the caller, released with
 * avt_free. */
int32_t avt_build_engine(int32_t device, const uint8_t *onnx, size_t onnx_len,
                         int32_t precision, uint64_t workspace_bytes, int32_t n_shapes,
                         const char *const *names, const int64_t *const *dims,
                         const int32_t *nb_dims, uint8_t **plan, size_t *plan_len,
                         char *err, size_t err_len);

/* Releases a buffer returned by avt_build_engine. */
void avt_free(void *buffer);

/* Deserialises a plan on `device`, creates an execution context and a CUDA stream,
 * sets every input's shape from (names, dims, nb_dims) as above, and allocates every
 * I/O buffer once: device memory on discrete GPUs, mapped pinned host memory on
 * integrated ones (no copies). All I/O tensors must be float32.
 * Returns NULL on failure (message in err). */
AvtEngine *avt_engine_load(int32_t device, const uint8_t *plan, size_t plan_len,
                           int32_t n_shapes, const char *const *names,
                           const int64_t *const *dims, const int32_t *nb_dims, char *err,
                           size_t err_len);

/* Number of I/O tensors, and the name, direction (1 input, 0 output) and resolved
 * shape of tensor `index` (0 <= index < count). *nb_dims is the capacity of dims on
 * entry and the rank on return. The name stays valid while the engine lives. */
int32_t avt_engine_io_count(const AvtEngine *engine);
int32_t avt_engine_io(const AvtEngine *engine, int32_t index, const char **name,
                      int32_t *is_input, int64_t *dims, int32_t *nb_dims);

/* Runs once. host[i] points at io tensor i's float32 values (inputs are read,
 * outputs written), lens[i] is its element count, which must match the resolved
 * shape. Returns when the outputs are in host memory. */
int32_t avt_engine_run(AvtEngine *engine, float *const *host, const size_t *lens,
                       int32_t n_io, char *err, size_t err_len);

/* Frees the engine, its context, stream and buffers. NULL is ignored. */
void avt_engine_free(AvtEngine *engine);

#ifdef __cplusplus
}
#endif

#endif
