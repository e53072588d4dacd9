// Random-weight GGUF models with real architectures and real vocabularies, for tests and benchmarks
// (no weights can be downloaded here). Written with ggml's gguf API; llama.cpp loads them like real ones.
#pragma once
#include <cstdint>
#include <string>

namespace kvlens {

struct RandomModelSpec {
    std::string arch = "qwen3";  // llama | qwen2 | qwen3
    int n_layer = 4, n_embd = 64, n_head = 4, n_head_kv = 2, head_dim = 16, n_ff = 128, n_ctx = 4096;
    float rope_base = 10000.0f, rms_eps = 1e-6f;
    std::string vocab_gguf;        // a llama.cpp vocab GGUF (models/ggml-vocab-*.gguf) whose tokenizer is copied
    std::string weight_type = "f32";  // f32 | f16 | q8_0 (matrices; norms stay f32)
    uint64_t seed = 42;
    std::string name = "kvlens-random";
};

// Shapes of the real models, for benchmarks (weights random): "qwen3-0.6b", "qwen3-8b", "llama-3.1-8b",
// "qwen2-7b", "r1-distill-qwen-14b". Throws kvlens::Error for an unknown name.
RandomModelSpec model_shape(const std::string & name);

// Write the GGUF; throws kvlens::Error on failure.
void write_random_model(const RandomModelSpec & spec, const std::string & path);

// The benchmarks' model: DIR/random-TAG-WTYPE.gguf, written once (atomically) and reused afterwards.
std::string cached_random_model(const RandomModelSpec & spec, const std::string & tag, const std::string & dir);

}  // namespace kvlens
