// kvlens-train's overthinking data (tools/train/data.cpp, --profile overthink): what is in the loss in each mode,
// the length curriculum, the first-fit packer. Needs the reasoner's vocabulary (models/kvlens-reasoner.gguf).
#include <gtest/gtest.h>

#include <set>

#include "kvlens/arith_overthink.h"

// The trainer's library (tools/train, target kvlens_train).
#include "data.h"

using namespace kvlens;
using namespace kvlens::train;

namespace {
const std::string kModel = std::string(KVLENS_SOURCE_DIR) + "/models/kvlens-reasoner.gguf";

// The example's text in the loss and outside it.
std::pair<std::string, std::string> split(const Tokenizer & tok, const Example & e) {
    std::string in, out;
    for (size_t i = 0; i < e.tokens.size(); ++i) (e.target[i] ? in : out) += tok.piece(e.tokens[i]);
    return {in, out};
}
}  // namespace

TEST(OverthinkData, LossCoversOnlyGeneratedText) {
    Tokenizer tok(kModel);
    const ArithProblem p = arith_generate(3, 17);
    const std::string prompt = arith_chat_prompt(p);
    {
        auto [in, out] = split(tok, make_example(tok, p, Mode::Fast, 0, Profile::Overthink));
        EXPECT_EQ(out, prompt + kArithQwen3FastPrefix);
        EXPECT_EQ(in, arith_fast_work(p) + p.answer + kArithEndOfTurn);
    }
    {
        auto [in, out] = split(tok, make_example(tok, p, Mode::Slow, 0, Profile::Overthink));
        EXPECT_EQ(out, prompt + kArithSlowPrefix);
        EXPECT_EQ(out + in, prompt + arith_overthink_slow_text(p));
    }
    {
        const int first = arith_first_solution_lines(p);
        auto [in, out] = split(tok, make_example(tok, p, Mode::Cut, first + 1, Profile::Overthink));
        EXPECT_EQ(out, prompt + kArithSlowPrefix + kArithThinkClose);  // the forced close is not learned
        EXPECT_EQ(arith_count_rechecks(in), 1);
    }
    {
        auto [in, out] = split(tok, make_example(tok, p, Mode::FastThenSlow, 0, Profile::Overthink));
        EXPECT_EQ(out, prompt + kArithQwen3FastPrefix + kArithSlowPrefix);
        EXPECT_EQ(arith_count_rechecks(in), arith_recheck_rounds(3));
    }
}

TEST(OverthinkData, ACutBeyondTheThinkIsRejectedNotReadPastTheEnd) {
    Tokenizer tok(kModel);
    const ArithProblem p = arith_generate(2, 5);
    const int steps = int(arith_trace_steps(p).size()), lines = int(arith_overthink_lines(p).size());
    EXPECT_NO_THROW(make_example(tok, p, Mode::Cut, steps, Profile::Classic));
    EXPECT_THROW(make_example(tok, p, Mode::Cut, steps + 1, Profile::Classic), std::runtime_error);
    EXPECT_NO_THROW(make_example(tok, p, Mode::Cut, lines, Profile::Overthink));
    EXPECT_THROW(make_example(tok, p, Mode::Cut, lines + 1, Profile::Overthink), std::runtime_error);
    EXPECT_THROW(make_example(tok, p, Mode::Cut, -1, Profile::Classic), std::runtime_error);
}

TEST(OverthinkData, RehearsalDrawsTheCommittedModelsOwnTexts) {
    Tokenizer tok(kModel);
    // a classic fast answer follows the classic prefix (never Qwen3's): 30 % of the classic draws are fast
    auto classic_fast_share = [&](double rehearse) {
        Mixture mix = overthink_mixture();
        mix.p_rehearse = rehearse;
        std::mt19937_64 rng(11);
        const int n = 3000;
        int k = 0;
        for (int i = 0; i < n; ++i) {
            const Example e = mix.draw(tok, rng, 1.0);
            const std::string out = split(tok, e).second;
            k += e.mode == Mode::Fast && out.size() >= std::string(kArithFastPrefix).size() &&
                 out.compare(out.size() - std::string(kArithFastPrefix).size(), std::string::npos, kArithFastPrefix) == 0;
        }
        return double(k) / n;
    };
    EXPECT_NEAR(classic_fast_share(0.5), 0.5 * Mixture().p_fast, 0.025);
    EXPECT_EQ(classic_fast_share(0.0), 0.0);
}

TEST(OverthinkData, CurriculumGrowsTheRounds) {
    Tokenizer tok(kModel);
    const Mixture mix = overthink_mixture();
    std::mt19937_64 rng(3);
    int max_early = 0, max_late = 0;
    std::set<Mode> modes;
    for (int i = 0; i < 300; ++i) {
        const Example early = mix.draw(tok, rng, 0.0), late = mix.draw(tok, rng, 1.0);
        max_early = std::max(max_early, arith_count_rechecks(split(tok, early).first));
        max_late = std::max(max_late, arith_count_rechecks(split(tok, late).first));
        modes.insert(late.mode);
        EXPECT_LE(late.tokens.size(), 640u);  // scripts/train-overthink.sh: --row 640
    }
    EXPECT_EQ(max_early, 1);
    EXPECT_EQ(max_late, arith_recheck_rounds(1));
    EXPECT_EQ(modes.size(), 4u);
}

TEST(OverthinkData, FirstFitPacksEveryExampleOnceWithinRows) {
    Tokenizer tok(kModel);
    const Mixture mix = overthink_mixture();
    std::mt19937_64 rng(5);
    std::vector<Example> pool;
    for (int i = 0; i < 24; ++i) pool.push_back(mix.draw(tok, rng, 1.0));
    std::vector<bool> used;
    PackedBatch pb;
    const int T = 720, B = 3;
    const size_t n = pack_first_fit(pool, used, T, B, pb);
    EXPECT_EQ(n, pb.spans.size());
    EXPECT_GE(n, 3u);
    std::vector<int> fill(B, 0);
    for (const auto & s : pb.spans) {
        EXPECT_EQ(s.start, fill[s.row]);  // back to back within a row
        fill[s.row] += s.len;
        EXPECT_LE(fill[s.row], T);
        EXPECT_EQ(pb.pos[size_t(s.row) * T + s.start], 0);  // positions restart per example
    }
    size_t n_used = 0;
    for (bool u : used) n_used += u;
    EXPECT_EQ(n_used, n);
    // a second call continues with the examples left
    PackedBatch pb2;
    const size_t n2 = pack_first_fit(pool, used, T, B, pb2);
    EXPECT_LE(n + n2, pool.size());
}
