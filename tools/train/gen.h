// Greedy generation on kvlens's Session (the reasoner's evaluation and its model test): f32 cache, no flash
// attention, so logits match the training graph's.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvlens {
class Model;
class Session;
}  // namespace kvlens

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
    std::shared_ptr<Model> model_;
    std::unique_ptr<Session> session_;
};

// llama.cpp's own log lines off (kvlens's logging filter, verbosity 0).
void quiet_llama_logs();

}  // namespace kvlens::train
