/* The dialect every kernel is written in: one source that OpenCL C 1.2 and
 * CUDA C++ (NVRTC) both compile. The host prepends the program's constants
 * (`#define`s) and this header, then the kernel files.
 *
 * - KERNEL declares an entry point (unmangled under CUDA).
 * - GLOBAL marks device memory; SHARED declares a work-group (block) array
 *   inside a kernel, SHARED_PTR marks a pointer to one in a parameter
 *   (OpenCL 1.2 has no generic address space, CUDA needs no qualifier).
 * - Shared arrays have static sizes: CUDA's `extern __shared__` has no
 *   OpenCL counterpart, so sizes come from the program's constants.
 * - Work-items are threads of a block; LID/GROUP/LOCAL_SIZE are 1-D in
 *   dimension 0, GROUP(d) indexes the grid. BARRIER syncs the block and
 *   orders its shared memory; no kernel relies on warp-synchronous
 *   execution (PoCL runs work-items one after another, so a missing
 *   barrier shows).
 */
#if defined(__OPENCL_VERSION__)

#define KERNEL __kernel
#define GLOBAL __global
#define SHARED __local
#define SHARED_PTR __local
/* static: C99 inline alone may leave no definition if a call is not inlined */
#define DEVICE_FN static inline
#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
#define LID() ((int)get_local_id(0))
#define LOCAL_SIZE() ((int)get_local_size(0))
#define GROUP(d) ((int)get_group_id(d))
typedef uchar u8;
typedef char i8;
typedef ushort u16;
typedef uint u32;
typedef long i64;
#define BITS_TO_FLOAT(u) as_float(u)
#define FLOAT_TO_BITS(f) as_uint(f)
#define EXPF(x) exp(x)
#define TANHF(x) tanh(x)
#define SQRTF(x) sqrt(x)
#define FMAXF(a, b) fmax(a, b)

#else /* CUDA */

#define KERNEL extern "C" __global__
#define GLOBAL
#define SHARED __shared__
#define SHARED_PTR
#define DEVICE_FN __device__ __forceinline__
#define BARRIER() __syncthreads()
#define LID() ((int)threadIdx.x)
#define LOCAL_SIZE() ((int)blockDim.x)
#define GROUP(d) ((int)((d) == 0 ? blockIdx.x : (d) == 1 ? blockIdx.y : blockIdx.z))
typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;
#define BITS_TO_FLOAT(u) __uint_as_float(u)
#define FLOAT_TO_BITS(f) __float_as_uint(f)
#define EXPF(x) expf(x)
#define TANHF(x) tanhf(x)
#define SQRTF(x) sqrtf(x)
#define FMAXF(a, b) fmaxf(a, b)

#endif

#define NEG_INF BITS_TO_FLOAT(0xFF800000u)

/* Little-endian loads from byte streams (quantized blocks are not aligned). */
DEVICE_FN u32 load_u16(GLOBAL const u8 *p) { return (u32)p[0] | ((u32)p[1] << 8); }
DEVICE_FN u32 load_u32(GLOBAL const u8 *p) {
  return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}
DEVICE_FN float load_f32(GLOBAL const u8 *p) { return BITS_TO_FLOAT(load_u32(p)); }

/* IEEE half to float by hand: OpenCL 1.2 without cl_khr_fp16 has no half
 * arithmetic, and the bit arithmetic is the same under both compilers. */
DEVICE_FN float half_to_float(u32 h) {
  u32 sign = (h & 0x8000u) << 16;
  u32 e = (h >> 10) & 0x1Fu;
  u32 man = h & 0x3FFu;
  if (e == 0x1Fu) return BITS_TO_FLOAT(sign | 0x7F800000u | (man << 13));
  if (e != 0) return BITS_TO_FLOAT(sign | ((e + 112u) << 23) | (man << 13));
  /* zero or subnormal: man * 2^-24 */
  float v = (float)man * 5.9604644775390625e-8f;
  return sign ? -v : v;
}
DEVICE_FN float load_f16(GLOBAL const u8 *p) { return half_to_float(load_u16(p)); }
DEVICE_FN float bf16_to_float(u32 b) { return BITS_TO_FLOAT(b << 16); }
DEVICE_FN float load_bf16(GLOBAL const u8 *p) { return bf16_to_float(load_u16(p)); }
