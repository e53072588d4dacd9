// Random-weight GGUF models with real architectures and real vocabularies, for tests and benchmarks
// (no weights can be downloaded here). Written with ggml's gguf API; llama.cpp loads them like real ones.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kvlens {

struct RandomModelSpec {
    std::string arch = "qwen3";  // llama | qwen2 | qwen3
    int n_layer = 4, n_embd = 64, n_head = 4, n_head_kv = 2, head_dim = 16, n_ff = 128, n_ctx = 4096;
    float rope_base = 10000.0f, rms_eps = 1e-6f;
    std::string vocab_gguf;        // a llama.cpp vocab GGUF (models/ggml-vocab-*.gguf) whose tokenizer is copied
    std::string weight_type = "f32";  // f32 | f16 | q8_0 (matrices; norms stay f32)
    uint64_t seed = 42;
    std::string name = "kvlens-random";
    std::string chat_template;     // tokenizer.chat_template (e.g. a real template of the pinned tree); "" keeps the vocab's
    int add_bos = -1;              // tokenizer.ggml.add_bos_token: 0/1, -1 keeps the vocab's
    // Tokens appended to the vocabulary, as a real model's GGUF adds them to its base vocab (e.g. "<think>" on
    // Qwen2's for Qwen3, "<｜Assistant｜>" for R1-Distill): text and llama.cpp token type (3 control, 4 user-defined).
    std::vector<std::pair<std::string, int>> add_tokens;
    std::string bos_token;         // make this token (text) the BOS; "" keeps the vocab's
};

// Shapes of the real models, for benchmarks (weights random): "qwen3-0.6b", "qwen3-8b", "llama-3.1-8b",
// "qwen2-7b", "r1-distill-qwen-14b". Throws kvlens::Error for an unknown name.
RandomModelSpec model_shape(const std::string & name);

// Write the GGUF; throws kvlens::Error on failure.
void write_random_model(const RandomModelSpec & spec, const std::string & path);

// A real model's shape (model_shape) with random weights of wtype on a vocabulary GGUF, via cached_random_model.
std::string cached_shape_model(const std::string & shape, const std::string & wtype, const std::string & vocab_gguf,
                               const std::string & dir);

// The benchmarks' model: DIR/random-TAG-WTYPE.gguf, written once (atomically) and reused afterwards.
std::string cached_random_model(const RandomModelSpec & spec, const std::string & tag, const std::string & dir);

}  // namespace kvlens
