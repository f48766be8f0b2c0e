/* Calls the no_std gemma-core demo and prints the ids it produced. */
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>

int32_t gemma_demo_run(uint32_t *out, size_t cap);

int main(void) {
    uint32_t ids[64];
    int32_t n_prompt = gemma_demo_run(ids, 64);
    if (n_prompt < 0) {
        fprintf(stderr, "demo failed: %d\n", n_prompt);
        return 1;
    }
    printf("prompt:");
    for (int i = 0; i < n_prompt; i++) printf(" %u", ids[i]);
    printf("\ngenerated:");
    for (int i = n_prompt; i < 64 && ids[i] != UINT32_MAX; i++) printf(" %u", ids[i]);
    printf("\n");
    return 0;
}
