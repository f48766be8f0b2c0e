/* Weight decoding, in-kernel, from the bytes as the file stores them.
 *
 * The program is built for one encoding: WTYPE is one of the W_* codes the
 * host defines (GGML block types, then gemma.cpp's codec streams). A
 * matrix is read in chunks of 32 consecutive elements of a row;
 * `decode_chunk` writes chunk `j` of row `r` (elements 32j .. 32j+31, the
 * last chunk of a row possibly short) and returns how many it wrote.
 *
 * GGML rows are byte ranges (`row_bytes` each) made of whole blocks.
 * A gemma.cpp matrix is a view of one element stream: element (r, c) is
 * stream element `elem_offset(L, r, c)`, which follows the host's Matrix
 * (first element, K/V row groups, head-major output projections). Its
 * decoded values are multiplied by `scale`.
 */
typedef struct {
  int rows;
  int cols;
  i64 row_bytes;
  i64 first;
  int head_cols;
  int group_rows;
  int group_stride;
  float scale;
} Layout;

/* A matrix parameter in a kernel's signature, and the Layout made of it. */
#define MATRIX_PARAMS(w)                                                      \
  GLOBAL const u8 *w, int w##_rows, int w##_cols, i64 w##_row_bytes,          \
      i64 w##_first, int w##_head_cols, int w##_group_rows,                   \
      int w##_group_stride, float w##_scale
#define MATRIX_LAYOUT(w, L)                                                   \
  Layout L;                                                                   \
  L.rows = w##_rows;                                                          \
  L.cols = w##_cols;                                                          \
  L.row_bytes = w##_row_bytes;                                                \
  L.first = w##_first;                                                        \
  L.head_cols = w##_head_cols;                                                \
  L.group_rows = w##_group_rows;                                              \
  L.group_stride = w##_group_stride;                                          \
  L.scale = w##_scale

#define CHUNK 32

DEVICE_FN int chunk_len(const Layout *L, int j) {
  int left = L->cols - j * CHUNK;
  return left < CHUNK ? left : CHUNK;
}

/* gemma.cpp's SFP byte (see core/src/codec/sfp.rs). */
DEVICE_FN float sfp_to_float(u32 b) {
  u32 sign = (b & 0x80u) << 24;
  u32 c = b & 0x7Fu;
  if (c == 0) return BITS_TO_FLOAT(sign);
  u32 e, man;
  if (c & 0x40u) {
    e = ((c >> 3) & 7u) + 120u;
    man = (c & 7u) << 20;
  } else {
    e = ((c >> 2) & 15u) + 104u;
    man = (c & 3u) << 21;
  }
  return BITS_TO_FLOAT(sign | (e << 23) | man);
}

/* The stream element holding (r, c) of a gemma.cpp matrix view. */
DEVICE_FN i64 elem_offset(const Layout *L, int r, int c) {
  if (L->head_cols > 0) {
    int h = c / L->head_cols, d = c % L->head_cols;
    return L->first + ((i64)h * L->rows + r) * L->head_cols + d;
  }
  i64 stored = r;
  if (L->group_rows > 0)
    stored = (i64)(r / L->group_rows) * L->group_stride + r % L->group_rows;
  return L->first + stored * L->cols + c;
}

/* Q4_K and Q5_K: the 6-bit scale and minimum of sub-block `s` (0..7). */
DEVICE_FN void kquant_scale_min(GLOBAL const u8 *q, int s, float *sc, float *mn) {
  if (s < 4) {
    *sc = (float)(q[s] & 63);
    *mn = (float)(q[s + 4] & 63);
  } else {
    *sc = (float)((q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4));
    *mn = (float)((q[s + 4] >> 4) | ((q[s] >> 6) << 4));
  }
}

DEVICE_FN int decode_chunk(GLOBAL const u8 *w, const Layout *L, int r, int j, float *out) {
  int n = chunk_len(L, j);
#if WTYPE >= W_GEMMA_FIRST
  for (int i = 0; i < n; i++) {
    i64 off = elem_offset(L, r, j * CHUNK + i);
    float v;
#if WTYPE == W_GEMMA_F32
    v = load_f32(w + 4 * off);
#elif WTYPE == W_GEMMA_BF16
    v = load_bf16(w + 2 * off);
#elif WTYPE == W_SFP
    v = sfp_to_float(w[off]);
#elif WTYPE == W_NUQ
    {
      /* 144-byte groups of 256: 16 SFP centers, then 4-bit indices. */
      i64 g = off / 256;
      int within = (int)(off % 256);
      GLOBAL const u8 *grp = w + g * 144;
      u32 b = grp[16 + within / 2];
      u32 idx = (within & 1) ? (b >> 4) : (b & 15u);
      v = sfp_to_float(grp[idx]);
    }
#elif WTYPE == W_I8
    {
      /* 132-byte groups of 128: bf16 inverse scale, bf16 zero point, codes. */
      i64 g = off / 128;
      int within = (int)(off % 128);
      GLOBAL const u8 *grp = w + g * 132;
      float inv = load_bf16(grp), zp = load_bf16(grp + 2);
      v = inv * (float)(i8)grp[4 + within] + (-zp * inv);
    }
#else
#error "unknown gemma.cpp codec"
#endif
    out[i] = v * L->scale;
  }
#else
  GLOBAL const u8 *row = w + (i64)r * L->row_bytes;
#if WTYPE == W_F32
  for (int i = 0; i < n; i++) out[i] = load_f32(row + 4 * (j * CHUNK + i));
#elif WTYPE == W_F16
  for (int i = 0; i < n; i++) out[i] = load_f16(row + 2 * (j * CHUNK + i));
#elif WTYPE == W_BF16
  for (int i = 0; i < n; i++) out[i] = load_bf16(row + 2 * (j * CHUNK + i));
#elif WTYPE == W_Q4_0
  GLOBAL const u8 *b = row + 18 * j;
  float d = load_f16(b);
  for (int i = 0; i < 16; i++) {
    u32 q = b[2 + i];
    out[i] = ((int)(q & 15u) - 8) * d;
    out[i + 16] = ((int)(q >> 4) - 8) * d;
  }
#elif WTYPE == W_Q4_1
  GLOBAL const u8 *b = row + 20 * j;
  float d = load_f16(b), m = load_f16(b + 2);
  for (int i = 0; i < 16; i++) {
    u32 q = b[4 + i];
    out[i] = (float)(q & 15u) * d + m;
    out[i + 16] = (float)(q >> 4) * d + m;
  }
#elif WTYPE == W_Q5_0
  GLOBAL const u8 *b = row + 22 * j;
  float d = load_f16(b);
  u32 qh = load_u32(b + 2);
  for (int i = 0; i < 16; i++) {
    u32 q = b[6 + i];
    int lo = (int)((q & 15u) | (((qh >> i) & 1u) << 4));
    int hi = (int)((q >> 4) | (((qh >> (i + 16)) & 1u) << 4));
    out[i] = (lo - 16) * d;
    out[i + 16] = (hi - 16) * d;
  }
#elif WTYPE == W_Q5_1
  GLOBAL const u8 *b = row + 24 * j;
  float d = load_f16(b), m = load_f16(b + 2);
  u32 qh = load_u32(b + 4);
  for (int i = 0; i < 16; i++) {
    u32 q = b[8 + i];
    u32 lo = (q & 15u) | (((qh >> i) & 1u) << 4);
    u32 hi = (q >> 4) | (((qh >> (i + 16)) & 1u) << 4);
    out[i] = (float)lo * d + m;
    out[i + 16] = (float)hi * d + m;
  }
#elif WTYPE == W_Q8_0
  GLOBAL const u8 *b = row + 34 * j;
  float d = load_f16(b);
  for (int i = 0; i < 32; i++) out[i] = (float)(i8)b[2 + i] * d;
#elif WTYPE == W_Q4_K
  /* 144-byte super-blocks of 256: d, dmin, 12 bytes of 6-bit scales and
   * minima, 128 bytes of nibbles (sub-blocks 2p and 2p+1 share 32 bytes,
   * low and high nibbles). */
  int s = j % 8;
  GLOBAL const u8 *b = row + 144 * (j / 8);
  float sc, mn;
  kquant_scale_min(b + 4, s, &sc, &mn);
  float d = load_f16(b) * sc, m = load_f16(b + 2) * mn;
  GLOBAL const u8 *qs = b + 16 + 32 * (s / 2);
  int shift = (s & 1) * 4;
  for (int i = 0; i < 32; i++) out[i] = d * (float)((qs[i] >> shift) & 15) - m;
#elif WTYPE == W_Q5_K
  /* 176-byte super-blocks: d, dmin, scales, 32 bytes of fifth bits (bit s
   * of byte i for sub-block s), 128 bytes of nibbles as in Q4_K. */
  int s = j % 8;
  GLOBAL const u8 *b = row + 176 * (j / 8);
  float sc, mn;
  kquant_scale_min(b + 4, s, &sc, &mn);
  float d = load_f16(b) * sc, m = load_f16(b + 2) * mn;
  GLOBAL const u8 *qh = b + 16;
  GLOBAL const u8 *qs = b + 48 + 32 * (s / 2);
  int shift = (s & 1) * 4;
  for (int i = 0; i < 32; i++) {
    int q = ((qs[i] >> shift) & 15) | (((qh[i] >> s) & 1) << 4);
    out[i] = d * (float)q - m;
  }
#elif WTYPE == W_Q6_K
  /* 210-byte super-blocks: 128 bytes of low nibbles, 64 of high bit pairs,
   * 16 int8 scales (one per 16 values), d. Each half of 128 values reads
   * ql[64], qh[32], scales[8]; its quarter k (32 values) takes the low
   * (k < 2) or high nibbles of ql[32 (k & 1) ..] and bits 2k of qh. */
  int s = j % 8, hf = s / 4, k = s % 4;
  GLOBAL const u8 *b = row + 210 * (j / 8);
  float d = load_f16(b + 208);
  GLOBAL const u8 *ql = b + 64 * hf + 32 * (k & 1);
  GLOBAL const u8 *qh = b + 128 + 32 * hf;
  GLOBAL const u8 *scales = b + 192 + 8 * hf;
  int shift = (k >> 1) * 4;
  for (int i = 0; i < 32; i++) {
    int q = ((ql[i] >> shift) & 15) | (((qh[i] >> (2 * k)) & 3) << 4);
    out[i] = d * (float)(i8)scales[i / 16 + 2 * k] * (float)(q - 32);
  }
#else
#error "unknown GGML type"
#endif
#endif
  return n;
}
