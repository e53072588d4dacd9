#include "eval_core.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <vector>

#include "gen.h"
#include "kvlens/error.h"
#include "kvlens/sequence.h"
#include "train.h"

namespace kvlens::train {

namespace {

bool ok_end(const GenOut & g) {
    return g.hit_eog && arith_extract_answer(g.text).has_value();
}

std::string json_str(const std::string & s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') { o += '\\'; o += c; }
        else if (c == '\n') o += "\\n";
        else o += c;
    }
    return o + "\"";
}

}  // namespace

double EvalReport::slow_acc() const { return double(level[0].slow_correct) / std::max(1, level[0].n); }
double EvalReport::fast_acc(int l) const { return double(level[l].fast_correct) / std::max(1, level[l].n); }
double EvalReport::end_ok_rate() const {
    return double(level[0].fast_ok_end + level[0].slow_ok_end) / std::max(1, 2 * level[0].n);
}
double EvalReport::forced_rate() const { return double(level[0].forced_parsable) / std::max(1, level[0].forced_n); }
double EvalReport::token_ratio(int l) const {
    return double(level[l].slow_tokens) / std::max(1L, level[l].fast_tokens);
}
bool EvalReport::all_gates_pass() const {
    return slow_acc() >= 0.85 && fast_acc(kArithMinLevel) >= 0.90 && fast_acc(kArithMaxLevel) <= 0.35 &&
           token_ratio(kArithMaxLevel) >= 4.0 && end_ok_rate() >= 0.99 && forced_rate() >= 0.95;
}

namespace {

// One problem's three generations (always-fast, always-slow, the forced switch), on one sequence.
struct ClassicProblem {
    int level = 0;
    ArithProblem p;
    GenOut fast, slow, forced;
    int k = 0;  // the forced switch after k lines of the model's own trace
};

ClassicProblem solve_classic(Sequence & seq, int level, int i, uint64_t seed, int max_new) {
    ClassicProblem x;
    x.level = level;
    x.p = arith_generate(level, kArithEvalSeedBit | (seed * 1000000 + uint64_t(level) * 100000 + i));
    const std::string prompt = arith_chat_prompt(x.p);
    x.fast = generate_greedy(seq, prompt + kArithFastPrefix, max_new);
    x.slow = generate_greedy(seq, prompt + kArithSlowPrefix, max_new);
    // forced switch: cut the model's own trace after k of its lines, close thinking, read the answer
    std::vector<std::string> lines;
    const size_t close = x.slow.text.find("</think>");
    const std::string trace = x.slow.text.substr(0, close == std::string::npos ? x.slow.text.size() : close);
    for (size_t a = 0, b; (b = trace.find('\n', a)) != std::string::npos; a = b + 1) {
        lines.push_back(trace.substr(a, b + 1 - a));
    }
    x.k = lines.empty() ? 0 : int(i % lines.size());
    std::string forced_prompt = prompt + kArithSlowPrefix;
    for (int j = 0; j < x.k; ++j) forced_prompt += lines[j];
    forced_prompt += kArithThinkClose;
    x.forced = generate_greedy(seq, forced_prompt, 24);
    return x;
}

void add_classic(EvalReport & r, const ClassicProblem & x, std::ostream * jsonl) {
    const ArithProblem & p = x.p;
    const GenOut &fast = x.fast, &slow = x.slow, &forced = x.forced;
    const int l = x.level;
    const bool fc = arith_check(fast.text, p.answer), sc = arith_check(slow.text, p.answer);
    const int label = paper_label(fc, fast.n_tokens, sc, r.short_cutoff);
    for (int s : {0, l}) {
        LevelStats & st = r.level[s];
        ++st.n;
        st.fast_correct += fc;
        st.slow_correct += sc;
        st.fast_tokens += fast.n_tokens;
        st.slow_tokens += slow.n_tokens;
        st.fast_ok_end += ok_end(fast);
        st.slow_ok_end += ok_end(slow);
        ++st.forced_n;
        st.forced_parsable += ok_end(forced);
        st.forced_correct += arith_check(forced.text, p.answer);
        ++st.label[label == 0 ? 0 : label == 25 ? 1 : label == 75 ? 2 : 3];
    }
    if (jsonl) {
        *jsonl << "{\"level\":" << l << ",\"question\":" << json_str(p.question) << ",\"answer\":"
               << json_str(p.answer) << ",\"fast\":" << json_str(fast.text) << ",\"fast_tokens\":"
               << fast.n_tokens << ",\"fast_correct\":" << (fc ? "true" : "false")
               << ",\"slow\":" << json_str(slow.text) << ",\"slow_tokens\":" << slow.n_tokens
               << ",\"slow_correct\":" << (sc ? "true" : "false") << ",\"forced_at_step\":" << x.k
               << ",\"forced\":" << json_str(forced.text) << ",\"label\":" << label << "}\n";
    }
}

}  // namespace

EvalReport evaluate(std::shared_ptr<Model> model, const EngineParams & ep, int per_level, uint64_t seed,
                    int short_cutoff, int max_new, std::ostream * jsonl, const std::function<void(int, int)> & progress) {
    EvalReport r;
    r.short_cutoff = short_cutoff;
    for_each_problem<ClassicProblem>(
        std::move(model), ep, per_level,
        [&](Sequence & seq, int level, int i) { return solve_classic(seq, level, i, seed, max_new); },
        [&](const ClassicProblem & x) { add_classic(r, x, jsonl); }, progress);
    return r;
}

EvalReport evaluate(Generator & gen, int per_level, uint64_t seed, int short_cutoff, int max_new, std::ostream * jsonl,
                    const std::function<void(int, int)> & progress) {
    return evaluate(gen.model(), EngineParams{gen.session_params(), 1}, per_level, seed, short_cutoff, max_new, jsonl,
                    progress);
}

std::string format_report(const EvalReport & r, const EvalArgs & a) {
    std::string o;
    char b[512];
    std::snprintf(b, sizeof b,
                  "model %s — %d held-out problems per level (seed %llu, eval seed bit set), greedy\n\n"
                  "| level | n | fast acc | slow acc | fast tokens | slow tokens | slow/fast | forced-switch parsable "
                  "(correct) | labels 0 / 25 / 75 / 100 |\n|---|---|---|---|---|---|---|---|---|\n",
                  a.model.c_str(), a.per_level, (unsigned long long) a.seed);
    o += b;
    for (int l = 1; l <= kArithMaxLevel + 1; ++l) {
        const int i = l == kArithMaxLevel + 1 ? 0 : l;
        const LevelStats & s = r.level[i];
        const double n = std::max(1, s.n);
        std::snprintf(b, sizeof b,
                      "| %s | %d | %.1f%% | %.1f%% | %.2f | %.2f | %.1fx | %.1f%% (%.1f%%) | %d / %d / %d / %d |\n",
                      i == 0 ? "all" : std::to_string(i).c_str(), s.n, 100 * s.fast_correct / n,
                      100 * s.slow_correct / n, s.fast_tokens / n, s.slow_tokens / n,
                      double(s.slow_tokens) / std::max(1L, s.fast_tokens), 100 * s.forced_parsable / n,
                      100 * s.forced_correct / n, s.label[0], s.label[1], s.label[2], s.label[3]);
        o += b;
    }
    auto gate = [&](const char * name, bool pass, double v) {
        std::snprintf(b, sizeof b, "- %s: %s (%.3g)\n", name, pass ? "PASS" : "FAIL", v);
        o += b;
    };
    std::snprintf(b, sizeof b, "\nlabels use the short cutoff %d tokens. Gates:\n", r.short_cutoff);
    o += b;
    gate("always-slow accuracy >= 85% overall", r.slow_acc() >= 0.85, r.slow_acc());
    gate("always-fast accuracy >= 90% on level 1", r.fast_acc(1) >= 0.90, r.fast_acc(1));
    gate("always-fast accuracy <= 35% on level 5", r.fast_acc(kArithMaxLevel) <= 0.35, r.fast_acc(kArithMaxLevel));
    gate("level 5 slow tokens >= 4x fast tokens", r.token_ratio(kArithMaxLevel) >= 4.0, r.token_ratio(kArithMaxLevel));
    gate(">= 99% of outputs end with end-of-turn and parse", r.end_ok_rate() >= 0.99, r.end_ok_rate());
    gate("forced </think> at a step boundary parses >= 95%", r.forced_rate() >= 0.95, r.forced_rate());
    o += r.all_gates_pass() ? "ALL GATES PASS\n" : "SOME GATES FAIL\n";
    return o;
}

}  // namespace kvlens::train
