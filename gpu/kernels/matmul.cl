/* Matrix products over encoded weights, and the embedding lookup.
 *
 * y[t][r] = W[r] . x[t] for tokens t < n: a block of MM_ROWS * 32 threads
 * computes MM_ROWS rows, 32 lanes a row; each lane decodes every 32nd
 * chunk of its row once and applies it to the block's TILE tokens. The
 * lanes' partial sums meet in shared memory. `matvec` is the one-token
 * case (decode), `matmul_tiled` the prefill product.
 */
#define MM_LANES 32

DEVICE_FN void matmul_body(GLOBAL const u8 *w, const Layout *L, GLOBAL const float *x,
                           GLOBAL float *y, int n, int t0, int tile,
                           SHARED_PTR float *part, float *acc) {
  int lane = LID() % MM_LANES, sub = LID() / MM_LANES;
  int r = GROUP(0) * MM_ROWS + sub;
  int chunks = (L->cols + CHUNK - 1) / CHUNK;
  int tn = n - t0 < tile ? n - t0 : tile;
  for (int t = 0; t < tile; t++) acc[t] = 0.0f;
  if (r < L->rows) {
    float wv[CHUNK];
    for (int j = lane; j < chunks; j += MM_LANES) {
      int len = decode_chunk(w, L, r, j, wv);
      for (int t = 0; t < tn; t++) {
        GLOBAL const float *xv = x + (i64)(t0 + t) * L->cols + j * CHUNK;
        float s = 0.0f;
        for (int i = 0; i < len; i++) s += wv[i] * xv[i];
        acc[t] += s;
      }
    }
  }
  for (int t = 0; t < tile; t++) part[(sub * tile + t) * MM_LANES + lane] = acc[t];
  BARRIER();
  if (lane < tn && r < L->rows) {
    SHARED_PTR float *p = part + (sub * tile + lane) * MM_LANES;
    float s = 0.0f;
    for (int i = 0; i < MM_LANES; i++) s += p[i];
    y[(i64)(t0 + lane) * L->rows + r] = s;
  }
}

/* Grid: ceil(rows / MM_ROWS) blocks of MM_ROWS * 32 threads. */
KERNEL void matvec(MATRIX_PARAMS(w), GLOBAL const float *x, GLOBAL float *y) {
  MATRIX_LAYOUT(w, L);
  SHARED float part[MM_ROWS * MM_LANES];
  float acc[1];
  matmul_body(w, &L, x, y, 1, 0, 1, part, acc);
}

/* Grid: ceil(rows / MM_ROWS) x ceil(n / TILE) blocks of MM_ROWS * 32. */
KERNEL void matmul_tiled(MATRIX_PARAMS(w), GLOBAL const float *x, GLOBAL float *y, int n) {
  MATRIX_LAYOUT(w, L);
  SHARED float part[MM_ROWS * TILE * MM_LANES];
  float acc[TILE];
  matmul_body(w, &L, x, y, n, GROUP(1) * TILE, TILE, part, acc);
}

/* x[b] = row tokens[b] of the table times `scale`, for tokens[b] >= 0
 * (rows given as embeddings are written by the host). Grid: n blocks of
 * 32 threads, each thread every 32nd chunk of the row. */
KERNEL void embed(MATRIX_PARAMS(w), GLOBAL const int *tokens, GLOBAL float *x, float scale) {
  MATRIX_LAYOUT(w, L);
  int b = GROUP(0);
  int tok = tokens[b];
  if (tok < 0) return;
  int chunks = (L.cols + CHUNK - 1) / CHUNK;
  float wv[CHUNK];
  for (int j = LID(); j < chunks; j += LOCAL_SIZE()) {
    int len = decode_chunk(w, &L, tok, j, wv);
    GLOBAL float *out = x + (i64)b * L.cols + j * CHUNK;
    for (int i = 0; i < len; i++) out[i] = wv[i] * scale;
  }
}
