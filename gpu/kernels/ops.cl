/* The per-token steps of the forward pass, element-wise or a row at a time. */

/* RMSNorm of `rows` rows of `width`: y = x / rms(x) * (plus_one + g).
 * x and y may be the same buffer. Grid: rows blocks of NORM_THREADS. */
KERNEL void rms_norm(GLOBAL const float *x, GLOBAL float *y, GLOBAL const float *gain,
                     int width, float eps, float plus_one) {
  SHARED float part[NORM_THREADS];
  GLOBAL const float *xr = x + (i64)GROUP(0) * width;
  GLOBAL float *yr = y + (i64)GROUP(0) * width;
  float s = 0.0f;
  for (int i = LID(); i < width; i += NORM_THREADS) s += xr[i] * xr[i];
  part[LID()] = s;
  BARRIER();
  for (int step = NORM_THREADS / 2; step > 0; step /= 2) {
    if (LID() < step) part[LID()] += part[LID() + step];
    BARRIER();
  }
  float inv = 1.0f / SQRTF(part[0] / (float)width + eps);
  for (int i = LID(); i < width; i += NORM_THREADS) yr[i] = xr[i] * inv * (plus_one + gain[i]);
}

/* Rotates the half-split pairs (i, i + half) of every head of `n` rows of
 * `width`, token b by cos/sin row b. Grid: n * width / 2 threads, rounded up. */
KERNEL void rope(GLOBAL float *buf, GLOBAL const float *cs, GLOBAL const float *sn,
                 int width, int head_dim, int n) {
  int hh = head_dim / 2;
  int id = GROUP(0) * LOCAL_SIZE() + LID();
  int pairs = width / 2;
  if (id >= n * pairs) return;
  int b = id / pairs, p = id % pairs;
  int h = p / hh, i = p % hh;
  GLOBAL float *v = buf + (i64)b * width + h * head_dim;
  float c = cs[b * hh + i], s = sn[b * hh + i];
  float lo = v[i], hi = v[i + hh];
  v[i] = lo * c - hi * s;
  v[i + hh] = hi * c + lo * s;
}

DEVICE_FN int flat_id(void) { return GROUP(0) * LOCAL_SIZE() + LID(); }

KERNEL void scale(GLOBAL float *buf, float factor, int count) {
  int i = flat_id();
  if (i < count) buf[i] *= factor;
}

KERNEL void add(GLOBAL float *dst, GLOBAL const float *src, int count) {
  int i = flat_id();
  if (i < count) dst[i] += src[i];
}

/* gate = gelu_tanh(gate) * up, with gelu_tanh(x) = x / (1 + e^(-2u)),
 * u = sqrt(2/pi) (x + 0.044715 x^3): the CPU's form of 0.5 x (1 + tanh u). */
KERNEL void gelu_gate(GLOBAL float *gate, GLOBAL const float *up, int count) {
  int i = flat_id();
  if (i >= count) return;
  float x = gate[i];
  float inner = 0.7978846f * (x + 0.044715f * x * x * x);
  gate[i] = x / (1.0f + EXPF(-2.0f * inner)) * up[i];
}

/* cap * tanh(x / cap). */
KERNEL void softcap(GLOBAL float *buf, float cap, int count) {
  int i = flat_id();
  if (i < count) buf[i] = cap * TANHF(buf[i] / cap);
}

/* Writes the pass's keys and values (n rows of kv_dim) into a layer's
 * cache: position start + b goes to slot (start + b) % capacity (a ring
 * for local layers). Grid: n * kv_dim threads, rounded up. */
KERNEL void store_kv(GLOBAL const float *k, GLOBAL const float *v, GLOBAL float *keys,
                     GLOBAL float *values, int kv_dim, int start, int n, int capacity) {
  int id = flat_id();
  if (id >= n * kv_dim) return;
  int b = id / kv_dim, e = id % kv_dim;
  i64 slot = (i64)((start + b) % capacity) * kv_dim + e;
  keys[slot] = k[id];
  values[slot] = v[id];
}

/* The index of each row's largest value (the lowest index among equals),
 * `rows` rows of `width`. Grid: rows blocks of ARGMAX_THREADS. */
KERNEL void argmax(GLOBAL const float *x, int width, GLOBAL int *out) {
  SHARED float best[ARGMAX_THREADS];
  SHARED int at[ARGMAX_THREADS];
  GLOBAL const float *row = x + (i64)GROUP(0) * width;
  float b = NEG_INF;
  int a = 0x7FFFFFFF;
  for (int i = LID(); i < width; i += ARGMAX_THREADS) {
    float v = row[i];
    if (v > b) { b = v; a = i; }
  }
  best[LID()] = b;
  at[LID()] = a;
  BARRIER();
  for (int step = ARGMAX_THREADS / 2; step > 0; step /= 2) {
    if (LID() < step) {
      float o = best[LID() + step];
      int oa = at[LID() + step];
      if (o > best[LID()] || (o == best[LID()] && oa < at[LID()])) {
        best[LID()] = o;
        at[LID()] = oa;
      }
    }
    BARRIER();
  }
  if (LID() == 0) out[GROUP(0)] = at[0] == 0x7FFFFFFF ? 0 : at[0];
}
