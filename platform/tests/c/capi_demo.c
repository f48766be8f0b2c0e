/* Drives the C API on the real model: greedy generation, two
 * conversations, token counting and the error paths. Exits 0 when every
 * check holds. Built and run by platform/tests/capi_c.rs, which sets
 * GEMMA_MODEL.
 *
 * `capi_demo quick` generates 3 tokens, then 1 per turn, instead of 16, 6
 * and 8: the same calls for valgrind, where each forward pass of the real
 * model takes about 30 s. */
#include "gemma.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__,         \
                    __LINE__, #cond);                                      \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, " (last error: \"%s\")\n", gemma_last_error()); \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

/* What a callback collected. */
typedef struct {
    char text[1024];
    size_t len;
    int calls;
    int stop_after; /* return 0 on this call (0 = never) */
} Collected;

static int collect(const char* text, void* user_data) {
    Collected* c = (Collected*)user_data;
    size_t n = strlen(text);
    if (c->len + n < sizeof c->text) {
        memcpy(c->text + c->len, text, n + 1);
        c->len += n;
    }
    c->calls++;
    return c->stop_after == 0 || c->calls < c->stop_after;
}

static int generate(GemmaContext* ctx, const char* prompt, int max_tokens,
                    Collected* out) {
    memset(out, 0, sizeof *out);
    int n = gemma_generate(ctx, prompt, max_tokens, collect, out);
    printf("[%s] %s|%s| (%d tokens)\n", gemma_conversation_current(ctx), prompt,
           out->text, n);
    return n;
}

/* Greedy continuation of "The capital of France is" (the golden, from an
 * independent reference). */
static const char GOLDEN[] =
    " the capital of the country of France. It is the largest city in France "
    "and the";

int main(int argc, char** argv) {
    int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    int first_tokens = quick ? 3 : 16;
    const char* model = getenv("GEMMA_MODEL");
    CHECK(model != NULL, "GEMMA_MODEL is not set");

    /* Failures to create: NULL and a missing file. */
    CHECK(gemma_create(NULL, NULL) == NULL, "NULL path accepted");
    CHECK(strstr(gemma_last_error(), "NULL") != NULL, "message names NULL");
    CHECK(gemma_create("/nonexistent/model.gguf", NULL) == NULL,
          "missing file accepted");
    CHECK(strstr(gemma_last_error(), "/nonexistent/model.gguf") != NULL,
          "message names the path");
    GemmaOptions bad = {0};
    bad.max_context = -5;
    CHECK(gemma_create(model, &bad) == NULL, "negative max_context accepted");
    CHECK(gemma_last_error()[0] != '\0', "empty message");

    /* The default model: fetched once and cached, the same string each call. */
    const char* default_model = gemma_default_model();
    CHECK(default_model != NULL, "gemma_default_model failed");
    CHECK(gemma_default_model() == default_model,
          "a second call returns another string");
    printf("default model: %s\n", default_model);

    /* Small context and short generations: valgrind runs this ~50x slower. */
    GemmaOptions opts = {0};
    opts.max_context = 128;
    opts.threads = 1;
    opts.batch = 32;
    GemmaContext* ctx = gemma_create(model, &opts);
    CHECK(ctx != NULL, "gemma_create failed");
    CHECK(strcmp(gemma_conversation_current(ctx), "default") == 0,
          "starts in \"default\"");

    /* Sampling settings and their validation. */
    CHECK(gemma_set_temperature(ctx, 0.0f) == GEMMA_OK, "temperature 0");
    CHECK(gemma_set_top_p(ctx, 1.5f) == GEMMA_ERR_INVALID_ARGUMENT,
          "top_p 1.5 accepted");
    CHECK(strstr(gemma_last_error(), "top_p") != NULL, "message names top_p");
    CHECK(gemma_set_temperature(ctx, -1.0f) == GEMMA_ERR_INVALID_ARGUMENT,
          "negative temperature accepted");
    CHECK(gemma_set_top_k(ctx, -1) == GEMMA_ERR_INVALID_ARGUMENT,
          "negative top_k accepted");
    CHECK(gemma_set_min_p(ctx, 2.0f) == GEMMA_ERR_INVALID_ARGUMENT,
          "min_p 2 accepted");
    CHECK(gemma_set_top_k(ctx, 64) == GEMMA_OK, "top_k 64");
    CHECK(gemma_set_top_p(ctx, 0.95f) == GEMMA_OK, "top_p 0.95");
    CHECK(gemma_set_min_p(ctx, 0.05f) == GEMMA_OK, "min_p 0.05");
    CHECK(gemma_set_seed(ctx, 42) == GEMMA_OK, "seed");
    CHECK(gemma_set_temperature(NULL, 0.0f) == GEMMA_ERR_INVALID_ARGUMENT,
          "NULL context accepted");

    /* Token counting (golden: 4 tokens, no BOS). */
    CHECK(gemma_count_tokens(ctx, "Hello, world!") == 4, "count %d",
          gemma_count_tokens(ctx, "Hello, world!"));
    CHECK(gemma_count_tokens(ctx, NULL) == GEMMA_ERR_INVALID_ARGUMENT,
          "NULL text accepted");

    /* Greedy generation in "default" follows the golden. */
    Collected out;
    int n = generate(ctx, "The capital of France is", first_tokens, &out);
    CHECK(n == first_tokens, "generated %d tokens", n);
    CHECK(strncmp(out.text, " the capital of", 15) == 0 &&
              strncmp(out.text, GOLDEN, out.len) == 0,
          "text \"%s\" is not a prefix of the golden", out.text);
    CHECK(out.calls > 0 && out.calls <= n, "%d callback calls", out.calls);

    /* Error paths of generate leave the conversation as it was. */
    CHECK(gemma_generate(ctx, NULL, 8, collect, &out) ==
              GEMMA_ERR_INVALID_ARGUMENT,
          "NULL prompt accepted");
    CHECK(gemma_generate(ctx, "\xff\xfe", 8, collect, &out) ==
              GEMMA_ERR_INVALID_ARGUMENT,
          "invalid UTF-8 accepted");
    CHECK(strstr(gemma_last_error(), "UTF-8") != NULL, "message names UTF-8");
    CHECK(gemma_generate(NULL, "x", 8, collect, &out) ==
              GEMMA_ERR_INVALID_ARGUMENT,
          "NULL context accepted");
    static char long_prompt[2048];
    for (int i = 0; i < 200; i++) strcat(long_prompt, " word");
    CHECK(gemma_generate(ctx, long_prompt, 8, collect, &out) ==
              GEMMA_ERR_CONTEXT_FULL,
          "a prompt past the context accepted");

    /* A second conversation. */
    CHECK(gemma_conversation_create(ctx, "other") == GEMMA_OK, "create");
    CHECK(gemma_conversation_create(ctx, "other") == GEMMA_ERR_EXISTS,
          "created twice");
    CHECK(gemma_conversation_has(ctx, "other") == 1, "has other");
    CHECK(gemma_conversation_has(ctx, "missing") == 0, "has missing");
    CHECK(gemma_conversation_has(ctx, NULL) == GEMMA_ERR_INVALID_ARGUMENT,
          "NULL name accepted");
    CHECK(gemma_conversation_switch(ctx, "missing") == GEMMA_ERR_NOT_FOUND,
          "switched to a missing conversation");
    CHECK(gemma_conversation_switch(ctx, "other") == GEMMA_OK, "switch");
    CHECK(strcmp(gemma_conversation_current(ctx), "other") == 0, "current");
    /* Stop from the callback after its first piece of text. */
    memset(&out, 0, sizeof out);
    out.stop_after = 1;
    n = gemma_generate(ctx, "Once upon a time", 8, collect, &out);
    printf("[other] Once upon a time|%s| (%d tokens, stopped by callback)\n",
           out.text, n);
    CHECK(n >= 1 && out.calls == 1 && out.len > 0, "n %d, %d calls", n,
          out.calls);
    n = generate(ctx, "", quick ? 1 : 6, &out);
    CHECK(n > 0 && out.len > 0, "continuing \"other\" gave nothing");
    CHECK(gemma_conversation_delete(ctx, "other") == GEMMA_ERR_INVALID_ARGUMENT,
          "deleted the current conversation");

    /* Back to "default": its second turn continues the first. */
    CHECK(gemma_conversation_switch(ctx, "default") == GEMMA_OK, "switch back");
    n = generate(ctx, " Its most famous landmark is", quick ? 1 : 8, &out);
    CHECK(n > 0 && out.len > 0, "second turn gave nothing");

    /* Deleting. */
    CHECK(gemma_conversation_delete(ctx, "default") ==
              GEMMA_ERR_INVALID_ARGUMENT,
          "deleted \"default\"");
    CHECK(gemma_conversation_delete(ctx, "other") == GEMMA_OK, "delete");
    CHECK(gemma_conversation_has(ctx, "other") == 0, "still has other");
    CHECK(gemma_conversation_delete(ctx, "other") == GEMMA_ERR_NOT_FOUND,
          "deleted twice");

    /* Reset, then a prompt-only turn. */
    CHECK(gemma_reset(ctx) == GEMMA_OK, "reset");
    if (!quick) {
        CHECK(gemma_generate(ctx, "Hello", 0, NULL, NULL) == 0,
              "prompt-only turn");
    }

    gemma_destroy(ctx);
    gemma_destroy(NULL);
    printf("capi_demo: ok\n");
    return 0;
}
