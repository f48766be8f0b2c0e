/* Softmax attention of a pass's queries over a layer's KV cache.
 *
 * One block of ATT_THREADS threads per (token, query head). The keys a
 * query sees form one range [lo, hi] (the host computes it from the mask:
 * causal, sliding window, bidirectional spans); they are scored
 * ATT_THREADS at a time, one key a thread, and folded into a streaming
 * softmax: the running maximum rises, what was accumulated is rescaled,
 * and each thread accumulates its own head_dim / ATT_THREADS output
 * elements. Queries are already scaled and rotated; scores are
 * soft-capped at `cap` (0: not). Keys of position p live in slot
 * p % capacity.
 */
#define ATT_DIMS (MAX_HEAD_DIM / ATT_THREADS)

KERNEL void attend(GLOBAL const float *q, GLOBAL float *out, GLOBAL const float *keys,
                   GLOBAL const float *values, GLOBAL const int *ranges, int n_heads,
                   int n_kv_heads, int head_dim, int capacity, float cap) {
  SHARED float qs[MAX_HEAD_DIM];
  SHARED float scores[ATT_THREADS];
  int tok = GROUP(0) / n_heads, h = GROUP(0) % n_heads;
  int kv_head = h / (n_heads / n_kv_heads);
  int kv_dim = n_kv_heads * head_dim;
  int lid = LID();
  GLOBAL const float *qv = q + ((i64)tok * n_heads + h) * head_dim;
  for (int d = lid; d < head_dim; d += ATT_THREADS) qs[d] = qv[d];
  BARRIER();
  int lo = ranges[2 * tok], hi = ranges[2 * tok + 1];
  float acc[ATT_DIMS];
  for (int m = 0; m < ATT_DIMS; m++) acc[m] = 0.0f;
  float run_max = NEG_INF, sum = 0.0f;
  for (int first = lo; first <= hi; first += ATT_THREADS) {
    int pos = first + lid;
    float s = NEG_INF;
    if (pos <= hi) {
      GLOBAL const float *k = keys + (i64)(pos % capacity) * kv_dim + kv_head * head_dim;
      s = 0.0f;
      for (int d = 0; d < head_dim; d++) s += qs[d] * k[d];
      if (cap > 0.0f) s = cap * TANHF(s / cap);
    }
    scores[lid] = s;
    BARRIER();
    int count = hi - first + 1 < ATT_THREADS ? hi - first + 1 : ATT_THREADS;
    float block_max = run_max;
    for (int i = 0; i < count; i++) block_max = FMAXF(block_max, scores[i]);
    float r = EXPF(run_max - block_max);
    sum *= r;
    for (int m = 0; m < ATT_DIMS; m++) acc[m] *= r;
    run_max = block_max;
    for (int i = 0; i < count; i++) {
      float p = EXPF(scores[i] - run_max);
      sum += p;
      GLOBAL const float *v =
          values + (i64)((first + i) % capacity) * kv_dim + kv_head * head_dim;
      for (int m = 0; m < ATT_DIMS; m++) {
        int d = lid + m * ATT_THREADS;
        if (d < head_dim) acc[m] += p * v[d];
      }
    }
    BARRIER();
  }
  GLOBAL float *o = out + ((i64)tok * n_heads + h) * head_dim;
  float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int m = 0; m < ATT_DIMS; m++) {
    int d = lid + m * ATT_THREADS;
    if (d < head_dim) o[d] = acc[m] * inv;
  }
}
