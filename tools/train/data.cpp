#include "data.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kvlens/arith_overthink.h"
#include "kvlens/model.h"

namespace kvlens::train {

Tokenizer::Tokenizer(const std::string & gguf_path) {
    ModelParams mp;
    mp.path = gguf_path;
    mp.vocab_only = true;
    model_ = Model::load(mp);
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::tokenize(const std::string & text) const {
    return model_->tokenize(text, /*add_special=*/false, /*parse_special=*/true);
}

std::string Tokenizer::piece(int32_t id) const { return model_->piece(id, /*special=*/true); }

const char * mode_name(Mode m) {
    switch (m) {
        case Mode::Fast: return "fast";
        case Mode::Slow: return "slow";
        case Mode::Cut: return "cut";
        case Mode::FastThenSlow: return "fast>slow";
    }
    return "?";
}

const char * profile_name(Profile p) { return p == Profile::Overthink ? "overthink" : "classic"; }

Profile parse_profile(const std::string & s) {
    if (s == "classic") return Profile::Classic;
    if (s == "overthink") return Profile::Overthink;
    throw std::runtime_error("--profile: '" + s + "' (classic or overthink)");
}

namespace {

using Segments = std::vector<std::pair<std::string, bool>>;  // (text, in_loss)

Segments overthink_segments(const ArithProblem & p, Mode mode, int cut_lines, int rounds) {
    const std::string prompt = arith_chat_prompt(p);
    const auto lines = arith_overthink_lines(p, rounds);
    std::string think;
    for (const auto & l : lines) think += l;
    const std::string tail = p.answer + kArithEndOfTurn;
    switch (mode) {
        case Mode::Fast:
            return {{prompt + kArithQwen3FastPrefix, false}, {arith_fast_work(p) + tail, true}};
        case Mode::Slow:
            return {{prompt + kArithSlowPrefix, false}, {think + kArithThinkClose + tail, true}};
        case Mode::Cut: {
            std::string part;
            for (int i = 0; i < cut_lines; ++i) part += lines[i];
            return {{prompt + kArithSlowPrefix, false}, {part, true}, {kArithThinkClose, false}, {tail, true}};
        }
        case Mode::FastThenSlow:
            return {{prompt + kArithQwen3FastPrefix + kArithSlowPrefix, false}, {think + kArithThinkClose + tail, true}};
    }
    return {};
}

}  // namespace

Example make_example(const Tokenizer & tok, const ArithProblem & p, Mode mode, int cut_steps, Profile profile,
                     int rounds) {
    // segments: (text, in_loss)
    std::vector<std::pair<std::string, bool>> seg;
    const std::string prompt = arith_chat_prompt(p);
    const auto steps = arith_trace_steps(p);
    std::string trace;
    for (const auto & s : steps) trace += s;
    const std::string tail = p.answer + kArithEndOfTurn;
    if (mode == Mode::Cut) {  // one check for both profiles: a cut keeps 0..all of the think's lines
        const int n = profile == Profile::Overthink ? int(arith_overthink_lines(p, rounds).size()) : int(steps.size());
        if (cut_steps < 0 || cut_steps > n)
            throw std::runtime_error("a cut keeps " + std::to_string(cut_steps) + " of " + std::to_string(n) + " think lines");
    }
    if (profile == Profile::Overthink) seg = overthink_segments(p, mode, cut_steps, rounds);
    else switch (mode) {
        case Mode::Fast:
            seg = {{prompt + kArithFastPrefix, false}, {tail, true}};
            break;
        case Mode::Slow:
            seg = {{prompt + kArithSlowPrefix, false}, {trace + kArithThinkClose + tail, true}};
            break;
        case Mode::Cut: {
            std::string part;
            for (int i = 0; i < cut_steps; ++i) part += steps[i];
            seg = {{prompt + kArithSlowPrefix, false}, {part, true}, {kArithThinkClose, false}, {tail, true}};
            break;
        }
        case Mode::FastThenSlow:
            seg = {{prompt + kArithFastPrefix + kArithSlowPrefix, false}, {trace + kArithThinkClose + tail, true}};
            break;
    }
    Example e;
    e.level = p.level;
    e.mode = mode;
    std::string text;
    size_t done = 0;
    for (const auto & [s, in_loss] : seg) {
        text += s;
        auto t = tok.tokenize(text);
        for (size_t i = 0; i < done; ++i) {
            if (t[i] != e.tokens[i]) throw std::runtime_error("tokenization not prefix-stable at: " + text);
        }
        e.tokens = t;
        e.target.resize(t.size(), in_loss ? 1 : 0);
        done = t.size();
    }
    return e;
}

std::string render_example(const Tokenizer & tok, const Example & e) {
    std::string o = "[" + std::string(mode_name(e.mode)) + ", level " + std::to_string(e.level) + ", " +
                    std::to_string(e.tokens.size()) + " tokens] ";
    bool in = false;
    for (size_t i = 0; i < e.tokens.size(); ++i) {
        if (bool(e.target[i]) != in) o += e.target[i] ? "[[" : "]]";
        in = e.target[i];
        o += tok.piece(e.tokens[i]);
    }
    return o + (in ? "]]" : "");
}

Mixture overthink_mixture() {
    Mixture m;
    m.profile = Profile::Overthink;
    m.p_fast = 0.40;  // short (26-76 tokens) and the hardest new skill
    m.p_slow = 0.25;  // whole thinks: the only examples that teach closing after the last round
    m.p_cut = 0.27;  // rest (0.08): fast-then-slow
    const double think_w[kArithMaxLevel] = {0.5, 0.75, 1.0, 1.5, 2.5};
    const double fast_w[kArithMaxLevel] = {1.0, 2.0, 3.0, 2.0, 1.0};
    for (int l = 0; l < kArithMaxLevel; ++l) {
        m.level_weight[l] = think_w[l];
        m.fast_level_weight[l] = fast_w[l];
    }
    return m;
}

namespace {
int draw_level(const double * w, std::mt19937_64 & rng, double progress, double unlock_step) {
    double wsum = 0, cw[kArithMaxLevel];
    for (int l = 1; l <= kArithMaxLevel; ++l) {
        wsum += progress >= (l - 1) * unlock_step ? w[l - 1] : 0.0;
        cw[l - 1] = wsum;
    }
    std::uniform_real_distribution<double> U(0.0, 1.0);
    const double r = U(rng) * wsum;
    int level = 1;
    while (level < kArithMaxLevel && r > cw[level - 1]) ++level;
    return level;
}

// The overthinking profile's draw (every level from the start: it fine-tunes a model that knows them all).
Example draw_overthink(const Mixture & mx, const Tokenizer & tok, std::mt19937_64 & rng, double progress) {
    std::uniform_real_distribution<double> U(0.0, 1.0);
    if (mx.p_rehearse > 0 && U(rng) < mx.p_rehearse) return Mixture().draw(tok, rng, 1.0);  // a classic text
    const double m = U(rng);
    const Mode mode = m < mx.p_fast ? Mode::Fast : m < mx.p_fast + mx.p_slow ? Mode::Slow
                    : m < mx.p_fast + mx.p_slow + mx.p_cut ? Mode::Cut : Mode::FastThenSlow;
    const int level = draw_level(mode == Mode::Fast ? mx.fast_level_weight : mx.level_weight, rng, 1.0, 0.0);
    const uint64_t seed = rng() & ~(3ull << 62);  // bit 63: evaluation, bit 62: validation
    const ArithProblem p = arith_generate(level, seed);
    const int full = arith_recheck_rounds(level);
    const int rounds = std::clamp(int(std::lround(full * progress / std::max(1e-9, mx.full_rounds_at))), 1, full);
    int cut = 0;
    if (mode == Mode::Cut) {
        const int first = arith_first_solution_lines(p), all = int(arith_overthink_lines(p, rounds).size());
        const double c = U(rng);
        if (c < mx.p_cut_before) cut = int(rng() % uint64_t(first));
        else if (c < mx.p_cut_before + mx.p_cut_at) cut = first;
        else if (all - first > 1) cut = first + 1 + int(rng() % uint64_t(all - first - 1));  // after a round, not the last
        else cut = first;
    }
    return make_example(tok, p, mode, cut, Profile::Overthink, rounds);
}
}  // namespace

Example Mixture::draw(const Tokenizer & tok, std::mt19937_64 & rng, double progress) const {
    if (profile == Profile::Overthink) return draw_overthink(*this, tok, rng, progress);
    // curriculum: level L unlocks at progress (L-1)*0.04; harder levels weigh more once unlocked
    const double * w = level_weight;
    double wsum = 0, cw[kArithMaxLevel];
    for (int l = 1; l <= kArithMaxLevel; ++l) {
        wsum += progress >= (l - 1) * 0.04 ? w[l - 1] : 0.0;
        cw[l - 1] = wsum;
    }
    std::uniform_real_distribution<double> U(0.0, 1.0);
    const double r = U(rng) * wsum;
    int level = 1;
    while (level < kArithMaxLevel && r > cw[level - 1]) ++level;
    const uint64_t seed = rng() & ~(3ull << 62);  // bit 63: evaluation, bit 62: validation
    ArithProblem p = arith_generate(level, seed);
    const double m = U(rng);
    Mode mode = m < p_fast ? Mode::Fast : m < p_fast + p_slow ? Mode::Slow : m < p_fast + p_slow + p_cut ? Mode::Cut
                                                                                                       : Mode::FastThenSlow;
    int cut = 0;
    if (mode == Mode::Cut) cut = int(rng() % arith_trace_steps(p).size());
    return make_example(tok, p, mode, cut);
}

namespace {
// Writes examples ex[idx...] into row b of out (positions restart per example, block-causal mask).
void write_row(const std::vector<Example> & ex, const std::vector<size_t> & idx, int b, PackedBatch & out) {
    const int T = out.T;
    std::vector<int> seg(T, -1);
    int p = 0, id = 0;
    for (size_t i : idx) {
        const Example & e = ex[i];
        const int n = int(e.tokens.size());
        out.spans.push_back({b, p, n, e.level, e.mode});
        for (int j = 0; j < n; ++j) {
            out.tokens[size_t(b) * T + p + j] = e.tokens[j];
            out.pos[size_t(b) * T + p + j] = j;
            seg[p + j] = id;
            if (j + 1 < n && e.target[j + 1]) out.label[size_t(b) * T + p + j] = e.tokens[j + 1];
        }
        p += n;
        ++id;
    }
    for (int j = p; j < T; ++j) seg[j] = -2 - j;  // padding: each position its own segment
    float * m = out.mask.data() + size_t(b) * T * T;
    for (int q = 0; q < T; ++q) {
        for (int k = 0; k <= q; ++k) {
            if (seg[k] == seg[q]) m[size_t(q) * T + k] = 0.0f;
        }
    }
}

void clear_batch(int T, int B, PackedBatch & out) {
    out.T = T;
    out.B = B;
    out.tokens.assign(size_t(T) * B, 0);
    out.pos.assign(size_t(T) * B, 0);
    out.label.assign(size_t(T) * B, -1);
    out.mask.assign(size_t(T) * T * B, -INFINITY);
    out.spans.clear();
}
}  // namespace

size_t pack_first_fit(const std::vector<Example> & pool, std::vector<bool> & used, int T, int B, PackedBatch & out) {
    clear_batch(T, B, out);
    used.resize(pool.size(), false);
    size_t packed = 0;
    for (int b = 0; b < B; ++b) {
        std::vector<size_t> row;
        int p = 0;
        for (size_t i = 0; i < pool.size(); ++i) {
            const int n = int(pool[i].tokens.size());
            if (n > T) throw std::runtime_error("example of " + std::to_string(n) + " tokens is longer than the row (" +
                                                std::to_string(T) + ")");
            if (used[i] || p + n > T) continue;
            used[i] = true;
            row.push_back(i);
            p += n;
        }
        write_row(pool, row, b, out);
        packed += row.size();
    }
    return packed;
}

size_t pack(const std::vector<Example> & ex, size_t from, int T, int B, PackedBatch & out) {
    clear_batch(T, B, out);
    size_t i = from;
    for (int b = 0; b < B; ++b) {
        std::vector<size_t> row;
        int p = 0;
        while (i < ex.size() && p + int(ex[i].tokens.size()) <= T) {
            p += int(ex[i].tokens.size());
            row.push_back(i++);
        }
        if (row.empty() && i < ex.size()) throw std::runtime_error("example longer than the row length");
        write_row(ex, row, b, out);
    }
    return i - from;
}

}  // namespace kvlens::train
