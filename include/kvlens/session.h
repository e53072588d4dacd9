// Session: one sequence on one llama.cpp context — prefill, decode, sample, rewind, append control text.
// Taps subscribe to it and see every K/V row (and hidden state) as the forward pass writes it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvlens/model.h"
#include "kvlens/sequence.h"
#include "kvlens/tap.h"

struct llama_context;
struct llama_sampler;
struct llama_token_data;

namespace kvlens {

struct SessionParams {
    int n_ctx = 0;          // -c; 0 = min(model's training context, 4096)
    int n_batch = 512;      // -b
    int n_ubatch = 512;     // -ub
    int n_threads = 0;      // -t; 0 = hardware threads
    std::string flash_attn = "auto";  // -fa on|off|auto
    std::string cache_type_k = "f16"; // -ctk f32|f16|q8_0|q4_0|...
    std::string cache_type_v = "f16"; // -ctv
};

struct SamplingParams {
    float temp = 0.0f;      // <= 0: greedy
    int top_k = 40;
    float top_p = 0.95f;
    uint32_t seed = 0xFFFFFFFF;  // LLAMA_DEFAULT_SEED: random
};
// The sampler is llama.cpp's greedy one alone (the first maximum of the logits).
inline bool is_greedy(const SamplingParams & sp) { return sp.temp <= 0; }


class Session : public Sequence {
public:
    Session(std::shared_ptr<Model> model, const SessionParams & params = {});
    ~Session();
    Session(const Session &) = delete;
    Session & operator=(const Session &) = delete;

    // Taps: subscribe before evaluating. The spec's layers are validated against the model.
    void set_tap(const TapSpec & spec);
    const TapSpec & tap() const { return tap_; }
    void require_tap(const TapSpec & spec) override { set_tap(spec); }
    void subscribe(TapConsumer * c) override;     // not owned
    void unsubscribe(TapConsumer * c) override;

    void set_sampling(const SamplingParams & sp);

    // Append tokens to the sequence and evaluate them (in n_batch chunks). all_logits keeps logits for
    // every appended token (else only the last). Throws if the context would overflow or tokens are invalid.
    // The tap sees every token's K/V and every layer's hidden state, except the LAST layer's hidden state,
    // which llama.cpp computes only for output tokens (the last one, or all with all_logits).
    void eval(const std::vector<Token> & tokens, bool all_logits);
    void eval(const std::vector<Token> & tokens) override { eval(tokens, false); }
    // Sample the next token from the last logits with the sampler chain (does not eval it). Throws kvlens::Error
    // when the logits are not finite (NaN weights). generate() and append_text() come from Sequence.
    Token sample() override;
    const float * sampled_logits() const override { return logits(-1); }
    // Cut the sequence back to its first `pos` tokens (llama_memory_seq_rm) and tell the taps.
    void rewind(int pos) override;

    int n_past() const override { return (int) tokens_.size(); }
    int n_ctx() const override;
    const std::vector<Token> & tokens() const { return tokens_; }
    // Logits of the i-th token of the last eval call (-1: last). Valid until the next eval.
    const float * logits(int i = -1) const;
    // Raw serialized KV state of the sequence (llama_state_seq_get_data), for verification.
    std::vector<uint8_t> state_data() const;

    Model & model() const override { return *model_; }
    llama_context * raw() const { return ctx_; }

    struct Impl;  // eval-callback state (engine-internal)

private:
    std::shared_ptr<Model> model_;
    llama_context * ctx_ = nullptr;
    std::unique_ptr<Impl> impl_;
    TapSpec tap_;
    std::vector<Token> tokens_;
    int last_n_eval_ = 0;
    int n_ctx_ = 0;
    bool has_all_logits_ = false;
    std::vector<float> all_logits_;
    struct llama_sampler * sampler_ = nullptr;
    std::vector<struct llama_token_data> cand_;
};

// Softmax statistics of one logits row (numerically stable).

}  // namespace kvlens
