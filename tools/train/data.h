// Training data: examples in the four answer modes, tokenized by llama.cpp's own tokenizer (the reasoner's
// vocabulary, loaded vocab-only), packed into rows with per-example positions and a block-causal mask.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kvlens/arith.h"

struct llama_model;
struct llama_vocab;

namespace kvlens::train {

class Tokenizer {
public:
    explicit Tokenizer(const std::string & gguf_path);  // loads the vocabulary only
    ~Tokenizer();
    Tokenizer(const Tokenizer &) = delete;
    Tokenizer & operator=(const Tokenizer &) = delete;
    std::vector<int32_t> tokenize(const std::string & text) const;  // specials parsed, no BOS
    std::string piece(int32_t id) const;
    const llama_vocab * vocab() const { return vocab_; }

private:
    llama_model * model_ = nullptr;
    const llama_vocab * vocab_ = nullptr;
};

enum class Mode { Fast = 0, Slow = 1, Cut = 2, FastThenSlow = 3 };
const char * mode_name(Mode m);

struct Example {
    int level = 0;
    Mode mode = Mode::Slow;
    std::vector<int32_t> tokens;
    std::vector<uint8_t> target;  // target[i]: token i is predicted (is in the loss)
};

// One example: prompt and forced control text (mode prefix, a forced "</think>") are outside the loss.
Example make_example(const Tokenizer & tok, const ArithProblem & p, Mode mode, int cut_steps = 0);

// Mixture: level by curriculum (progress in [0,1]), mode by fixed shares.
struct Mixture {
    double p_fast = 0.30, p_slow = 0.50, p_cut = 0.10;  // rest: fast-then-slow
    double level_weight[kArithMaxLevel] = {1.0, 1.0, 1.5, 2.0, 3.0};
    Example draw(const Tokenizer & tok, std::mt19937_64 & rng, double progress) const;
};

struct PackedBatch {
    int T = 0, B = 0;
    std::vector<int32_t> tokens, pos;  // [T*B]
    std::vector<float> mask;           // [B][T][T]
    std::vector<int32_t> label;        // [T*B] next-token target, -1 = not in the loss
    // per packed example: row, first position, length (for per-example exact match)
    struct Span { int row, start, len, level; Mode mode; };
    std::vector<Span> spans;
};

// Packs examples (in order) into B rows of T tokens; returns how many were consumed.
size_t pack(const std::vector<Example> & ex, size_t from, int T, int B, PackedBatch & out);

}  // namespace kvlens::train
