// BatchRunner: many independent texts through one llama.cpp context, several sequences per llama_decode.
// Each text is its own sequence (own seq id, positions from 0, causal mask per sequence), so a text never
// attends to another and there is no padding at all. The KV tap's rows of every tapped layer go to the
// consumer of the text they belong to, with positions relative to that text.
//
// Also: llama.cpp's own pooled embeddings (embeddings=true, pooling mean) on the same packing, as the
// throughput yardstick for `kvlens bench embed`.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvlens/model.h"
#include "kvlens/tap.h"

struct llama_context;

namespace kvlens {

struct BatchParams {
    int n_ctx = 0;        // -c: longest text in tokens; 0 = min(model's training context, 4096)
    int n_batch = 2048;   // -b: tokens per llama_decode (raised to n_ctx so the longest text fits one decode)
    int n_seq = 64;       // most texts per llama_decode
    int n_threads = 0;    // -t; 0 = hardware threads
    int n_gpu_layers = 0; // informational (the Model was loaded with it)
    std::string flash_attn = "auto";
};

struct BatchStats {
    int n_texts = 0;
    long long n_tokens = 0;
    int n_decodes = 0;
    double seconds = 0;  // wall time of the decode loop (tokenisation excluded)
};

class BatchRunner {
public:
    // pooled_mean = true: a context for llama.cpp's own mean-pooled embeddings (no tap); else a tap context.
    BatchRunner(std::shared_ptr<Model> model, const BatchParams & params, const TapSpec & tap, bool pooled_mean = false);
    ~BatchRunner();
    BatchRunner(const BatchRunner &) = delete;
    BatchRunner & operator=(const BatchRunner &) = delete;

    int n_ctx() const { return n_ctx_; }  // longest text accepted
    int n_batch() const { return n_batch_; }

    // Evaluate every text; rows of text i go to consumer(i) (called once per text before its first row; may
    // return nullptr to drop that text's rows). done(i) is called once text i is complete. Texts must be
    // non-empty and at most n_ctx() tokens (the caller truncates or reports).
    using ConsumerFor = std::function<TapConsumer *(int)>;
    using Done = std::function<void(int)>;
    BatchStats run(const std::vector<std::vector<Token>> & texts, const ConsumerFor & consumer, const Done & done);

    // llama.cpp's own mean pooling (pooled_mean contexts only): out gets n_embd floats per text, as llama.cpp
    // returns them (not normalised).
    BatchStats run_pooled(const std::vector<std::vector<Token>> & texts, std::vector<float> & out);

    struct Impl;

private:
    // Pack texts [next, ...) into one batch; returns how many were packed.
    int pack(const std::vector<std::vector<Token>> & texts, int next, bool all_outputs);
    std::shared_ptr<Model> model_;
    llama_context * ctx_ = nullptr;
    std::unique_ptr<Impl> impl_;
    TapSpec tap_;
    int n_ctx_ = 0, n_batch_ = 0, n_seq_ = 0;
    bool pooled_ = false;
};

}  // namespace kvlens
