// Training data: examples in the four answer modes, tokenized by llama.cpp's own tokenizer (kvlens::Model on the
// reasoner's vocabulary, loaded vocab-only), packed into rows with per-example positions and a block-causal mask.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kvlens/arith.h"
#include "kvlens/model.h"

namespace kvlens::train {

class Tokenizer {
public:
    explicit Tokenizer(const std::string & gguf_path);  // loads the vocabulary only
    ~Tokenizer();
    Tokenizer(const Tokenizer &) = delete;
    Tokenizer & operator=(const Tokenizer &) = delete;
    std::vector<int32_t> tokenize(const std::string & text) const;  // specials parsed, no BOS
    std::string piece(int32_t id) const;

private:
    std::shared_ptr<Model> model_;  // vocabulary only
};

enum class Mode { Fast = 0, Slow = 1, Cut = 2, FastThenSlow = 3 };
const char * mode_name(Mode m);

// Which texts the examples hold: the committed model's (kvlens/arith.h) or the overthinking profile's
// (kvlens/arith_overthink.h: Qwen3's fast prefix with a worked answer, re-check rounds, cuts at any think line).
enum class Profile { Classic = 0, Overthink = 1 };
const char * profile_name(Profile p);
Profile parse_profile(const std::string & s);  // "classic" | "overthink"

struct Example {
    int level = 0;
    Mode mode = Mode::Slow;
    std::vector<int32_t> tokens;
    std::vector<uint8_t> target;  // target[i]: token i is predicted (is in the loss)
};

// One example: prompt and forced control text (mode prefix, a forced "</think>") are outside the loss.
// cut_steps: the think lines kept by a Cut (scratchpad steps in the classic profile, any think line in the
// overthinking one).
// rounds: the overthinking profile's re-check rounds (< 0: the level's full number).
Example make_example(const Tokenizer & tok, const ArithProblem & p, Mode mode, int cut_steps = 0,
                     Profile profile = Profile::Classic, int rounds = -1);

// Mixture: level by curriculum (progress in [0,1]), mode by fixed shares.
struct Mixture {
    double p_fast = 0.30, p_slow = 0.50, p_cut = 0.10;  // rest: fast-then-slow
    double level_weight[kArithMaxLevel] = {1.0, 1.0, 1.5, 2.0, 3.0};
    Profile profile = Profile::Classic;
    // Overthinking profile only: fast examples draw their level with these weights (the others use
    // level_weight), and a Cut keeps k think lines with k < first solution (a guess) with p_cut_before, k = the
    // first solution's lines with p_cut_at, else k uniform over the later lines (inside the re-check rounds).
    double fast_level_weight[kArithMaxLevel] = {1.0, 2.0, 3.0, 2.0, 1.0};
    double p_cut_before = 0.2, p_cut_at = 0.4;
    // Length curriculum: at progress x the thinks hold round(R * x / full_rounds_at) re-check rounds (at least 1,
    // at most the level's R). The committed model has never seen the re-check text, and a long think it predicts
    // confidently wrong gives gradients that overflow (docs/MODEL.md); short thinks first avoid that.
    double full_rounds_at = 0.2;
    // Overthinking profile only: the share of examples that are the committed model's own texts (the classic
    // profile's draw, every level): rehearsal against forgetting its scratchpad (docs/MODEL.md, "Status").
    double p_rehearse = 0.0;
    Example draw(const Tokenizer & tok, std::mt19937_64 & rng, double progress) const;
};
// An example as text with the loss spans in [[ ]] and its token count (kvlens-train show).
std::string render_example(const Tokenizer & tok, const Example & e);

// The standard overthinking mixture (scripts/train-overthink.sh).
Mixture overthink_mixture();

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
// Packs B rows of T tokens first-fit: each row takes, in pool order, every unused example that still fits
// (long and short examples share rows). used[i] marks the examples taken; returns how many were packed.
size_t pack_first_fit(const std::vector<Example> & pool, std::vector<bool> & used, int T, int B, PackedBatch & out);

}  // namespace kvlens::train
