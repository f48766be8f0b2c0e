// Teacher-forces token sequences through llama.cpp and prints the logits it
// gives to chosen token ids, so scripts/kl-vs-llama.sh can score llama.cpp
// against the goldens exactly as the gemma-rs tests score gemma-rs.
//
// Input (stdin), one case per line:
//   <n_prompt> <prompt ids...> <n_forced> <forced ids...> <n_ids> <ids...>
// The prompt goes in as one batch; then each forced id is fed alone, as in
// generation. For the prompt's last position and after every forced id the
// program prints one line: the logits of the `n_ids` ids, which are the
// step's golden top-20 ids, flattened across steps (n_ids = 20 * steps).
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

static std::vector<llama_token> read_ids(std::istringstream &in) {
    size_t n = 0;
    in >> n;
    std::vector<llama_token> v(n);
    for (auto &t : v) in >> t;
    return v;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s MODEL.gguf THREADS < cases\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) return 1;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 4096;
    cp.n_batch = 4096;
    cp.n_threads = cp.n_threads_batch = std::atoi(argv[2]);
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return 1;
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        auto prompt = read_ids(in);
        auto forced = read_ids(in);
        auto ids = read_ids(in);
        const size_t steps = forced.size() + 1;
        if (prompt.empty() || ids.size() != 20 * steps) return 3;
        llama_memory_clear(llama_get_memory(ctx), true);
        auto emit = [&](size_t step) {
            const float *logits = llama_get_logits_ith(ctx, -1);
            for (size_t k = 0; k < 20; k++) std::printf("%s%.6f", k ? " " : "", logits[ids[20 * step + k]]);
            std::printf("\n");
        };
        if (llama_decode(ctx, llama_batch_get_one(prompt.data(), (int32_t)prompt.size()))) return 4;
        emit(0);
        for (size_t s = 0; s < forced.size(); s++) {
            if (llama_decode(ctx, llama_batch_get_one(&forced[s], 1))) return 4;
            emit(s + 1);
        }
    }
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
