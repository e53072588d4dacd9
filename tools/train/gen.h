// Greedy generation with llama.cpp directly (the reasoner's evaluation and its model test).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

struct llama_model;
struct llama_context;
struct llama_vocab;

namespace kvlens::train {

struct GenOut {
    std::string text;     // generated text (specials rendered)
    int n_tokens = 0;     // generated tokens, the end-of-turn token included
    bool hit_eog = false;
};

class Generator {
public:
    Generator(const std::string & gguf_path, int threads, int n_ctx = 256);
    ~Generator();
    Generator(const Generator &) = delete;
    Generator & operator=(const Generator &) = delete;

    std::vector<int32_t> tokenize(const std::string & text) const;
    // Clears the cache, evaluates the prompt, then generates greedily until end-of-generation or max_new.
    GenOut generate(const std::string & prompt, int max_new);
    // Logits for every position of `tokens` (fresh sequence): [n_tokens][n_vocab].
    std::vector<float> logits_all(const std::vector<int32_t> & tokens);
    int n_vocab() const;

private:
    llama_model * model_ = nullptr;
    llama_context * ctx_ = nullptr;
    const llama_vocab * vocab_ = nullptr;
};

void quiet_llama_logs();

}  // namespace kvlens::train
