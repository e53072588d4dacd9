#include "eval_overthink.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include <optional>

#include "gen.h"
#include "kvlens/arith_overthink.h"
#include "kvlens/error.h"
#include "kvlens/model.h"
#include "kvlens/sequence.h"

namespace kvlens::train {

namespace {

std::string jsonl_str(const std::string & s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') { o += '\\'; o += c; }
        else if (c == '\n') o += "\\n";
        else o += c;
    }
    return o + "\"";
}

// The think lines of a generated slow answer (up to its "</think>"), each with its '\n'.
std::vector<std::string> think_lines(const std::string & text) {
    std::vector<std::string> lines;
    const size_t close = text.find("</think>");
    const std::string t = text.substr(0, close == std::string::npos ? text.size() : close);
    for (size_t a = 0, b; (b = t.find('\n', a)) != std::string::npos; a = b + 1) lines.push_back(t.substr(a, b + 1 - a));
    return lines;
}

bool ot_ends_ok(const GenOut & g) { return g.hit_eog && arith_extract_answer(g.text).has_value(); }

}  // namespace

double OverthinkReport::acc(int l, bool slow) const {
    const OverthinkStats & s = level[l];
    return double(slow ? s.slow_correct : s.fast_correct) / std::max(1, s.n);
}
double OverthinkReport::tokens(int l, bool slow) const {
    const OverthinkStats & s = level[l];
    return double(slow ? s.slow_tokens : s.fast_tokens) / std::max(1, s.n);
}
double OverthinkReport::oracle_bound() const {
    return double(level[0].slow_tokens) / std::max(1L, level[0].oracle_tokens);
}
double OverthinkReport::oracle_bound_cons() const {
    return double(level[0].slow_tokens) / std::max(1L, level[0].oracle_tokens_cons);
}
double OverthinkReport::forced_after_acc() const {
    return double(level[0].forced_after_agree) / std::max(1, level[0].forced_after_n);
}

bool OverthinkReport::all_gates_pass() const {
    bool ok = acc(1, false) >= 0.95 && acc(2, false) >= 0.90 && acc(3, false) >= 0.60 && acc(5, false) <= 0.35 &&
              acc(0, true) >= 0.92 && acc(0, true) - acc(0, false) >= 0.20 && oracle_bound() >= 8.0 &&
              forced_after_acc() >= 0.98 && double(level[0].ok_end) / std::max(1, 2 * level[0].n) >= 0.99;
    for (int l = kArithMinLevel; l <= kArithMaxLevel; ++l) {
        ok = ok && acc(l, true) >= acc(l, false) && tokens(l, true) >= 5.0 * tokens(l, false);
    }
    return ok;
}

namespace {

// One problem's generations (always-fast, always-slow, forced before / after the first solution, the oracle's
// search), on one sequence, and what the report and the JSONL take from them.
struct OverthinkProblem {
    int level = 0;
    ArithProblem p;
    GenOut fast, slow, fb, fa;
    bool fc = false, sc = false, fbc = false, fac = false, fa_agree = false, oc = false;
    int k_before = -1, k_after = 0, oracle_k = -1;
    long ot = 0, ot_cons = 0;
};

OverthinkProblem solve_overthink(Sequence & seq, int l, int i, uint64_t seed, int max_new) {
    Model & m = seq.model();
    auto tokenize = [&](const std::string & t) { return m.tokenize(t, /*add_special=*/false, /*parse_special=*/true); };
    const int close_tokens = int(tokenize(kArithThinkClose).size());
    OverthinkProblem x;
    x.level = l;
    x.p = arith_generate(l, kArithEvalSeedBit | (seed * 1000000 + uint64_t(l) * 100000 + i));
    const ArithProblem & p = x.p;
    const std::string prompt = arith_chat_prompt(p);
    x.fast = generate_greedy(seq, prompt + kArithQwen3FastPrefix, max_new);
    x.slow = generate_greedy(seq, prompt + kArithSlowPrefix, max_new);
    const GenOut &fast = x.fast, &slow = x.slow;
    x.fc = arith_check(fast.text, p.answer);
    x.sc = arith_check(slow.text, p.answer);
    const std::vector<std::string> lines = think_lines(slow.text);
    const int n_lines = int(lines.size());
    const int first = std::min(n_lines, arith_first_solution_lines(p));
    // forced "</think>" after the model's first k think lines
    std::vector<int> line_tokens(n_lines);
    for (int j = 0; j < n_lines; ++j) line_tokens[j] = int(tokenize(lines[j]).size());
    auto forced = [&](int k) {
        std::string fp = prompt + kArithSlowPrefix;
        for (int j = 0; j < k; ++j) fp += lines[j];
        return generate_greedy(seq, fp + kArithThinkClose, 24);
    };
    x.k_before = first > 0 ? i % first : -1;
    x.k_after = first + i % (n_lines - first + 1);
    if (x.k_before >= 0) x.fb = forced(x.k_before);
    x.fa = forced(x.k_after);
    x.fbc = x.k_before >= 0 && arith_check(x.fb.text, p.answer);
    x.fac = arith_check(x.fa.text, p.answer);
    const std::string first_answer = first > 0 ? arith_line_answer(lines[first - 1]) : "";
    const auto fa_answer = arith_extract_answer(x.fa.text);
    x.fa_agree = !first_answer.empty() && fa_answer && *fa_answer == first_answer;
    // oracle
    x.oc = x.fc;
    x.ot = x.ot_cons = fast.n_tokens;
    if (!x.fc) {
        x.ot_cons = slow.n_tokens;
        long kept = 0;
        for (int k = 0; k <= n_lines; ++k) {
            const GenOut g = k == x.k_before ? x.fb : k == x.k_after ? x.fa : forced(k);
            if (arith_check(g.text, p.answer)) {
                x.ot = x.ot_cons = std::min<long>(slow.n_tokens, kept + close_tokens + g.n_tokens);
                x.oc = true;
                x.oracle_k = k;
                break;
            }
            if (k < n_lines) kept += line_tokens[k];
        }
        if (!x.oc && x.sc) x.ot = x.ot_cons = slow.n_tokens, x.oc = true;  // right only as the model closed it itself
    }
    return x;
}

void add_overthink(OverthinkReport & r, const OverthinkProblem & x, std::ostream * jsonl) {
    const ArithProblem & p = x.p;
    const GenOut &fast = x.fast, &slow = x.slow;
    const int l = x.level;
    const int label = paper_label(x.fc, fast.n_tokens, x.sc, r.short_cutoff);
    for (int s : {0, l}) {
        OverthinkStats & st = r.level[s];
        ++st.n;
        st.fast_correct += x.fc;
        st.slow_correct += x.sc;
        st.ok_end += ot_ends_ok(fast) + ot_ends_ok(slow);
        st.fast_tokens += fast.n_tokens;
        st.slow_tokens += slow.n_tokens;
        st.rounds += arith_count_rechecks(slow.text);
        if (x.k_before >= 0) { ++st.forced_before_n; st.forced_before_correct += x.fbc; }
        ++st.forced_after_n;
        st.forced_after_correct += x.fac;
        st.forced_after_agree += x.fa_agree;
        st.oracle_correct += x.oc;
        st.oracle_tokens += x.ot;
        st.oracle_tokens_cons += x.ot_cons;
        ++st.label[label == 0 ? 0 : label == 25 ? 1 : label == 75 ? 2 : 3];
    }
    if (jsonl) {
        *jsonl << "{\"level\":" << l << ",\"question\":" << jsonl_str(p.question) << ",\"answer\":"
               << jsonl_str(p.answer) << ",\"fast\":" << jsonl_str(fast.text) << ",\"fast_tokens\":"
               << fast.n_tokens << ",\"fast_correct\":" << (x.fc ? "true" : "false") << ",\"slow\":"
               << jsonl_str(slow.text) << ",\"slow_tokens\":" << slow.n_tokens << ",\"slow_correct\":"
               << (x.sc ? "true" : "false") << ",\"rounds\":" << arith_count_rechecks(slow.text)
               << ",\"forced_before_k\":" << x.k_before << ",\"forced_before\":" << jsonl_str(x.fb.text)
               << ",\"forced_after_k\":" << x.k_after << ",\"forced_after\":" << jsonl_str(x.fa.text)
               << ",\"oracle_k\":" << x.oracle_k << ",\"oracle_tokens\":" << x.ot << ",\"label\":" << label
               << "}\n";
    }
}

}  // namespace

OverthinkReport evaluate_overthink(std::shared_ptr<Model> model, const EngineParams & ep, int per_level,
                                   uint64_t seed, int short_cutoff, int max_new, std::ostream * jsonl,
                                   const std::function<void(int, int)> & progress) {
    OverthinkReport r;
    r.short_cutoff = short_cutoff;
    for_each_problem<OverthinkProblem>(
        std::move(model), ep, per_level,
        [&](Sequence & seq, int level, int i) { return solve_overthink(seq, level, i, seed, max_new); },
        [&](const OverthinkProblem & x) { add_overthink(r, x, jsonl); }, progress);
    return r;
}

OverthinkReport evaluate_overthink(Generator & gen, int per_level, uint64_t seed, int short_cutoff, int max_new,
                                   std::ostream * jsonl, const std::function<void(int, int)> & progress) {
    return evaluate_overthink(gen.model(), EngineParams{gen.session_params(), 1}, per_level, seed, short_cutoff,
                              max_new, jsonl, progress);
}

std::string format_overthink_report(const OverthinkReport & r, const std::string & model, int per_level,
                                    uint64_t seed) {
    std::string o;
    char b[640];
    std::snprintf(b, sizeof b,
                  "model %s (overthinking profile) — %d held-out problems per level (seed %llu, eval seed bit set), "
                  "greedy\n\n| level | n | fast acc | slow acc | fast tokens | slow tokens | slow/fast | rounds | "
                  "oracle acc | oracle tokens | slow/oracle | forced after 1st solution: its answer (right) | forced before: right (a guess) | "
                  "labels 0 / 25 / 75 / 100 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                  model.c_str(), per_level, (unsigned long long) seed);
    o += b;
    for (int l = 1; l <= kArithMaxLevel + 1; ++l) {
        const int i = l == kArithMaxLevel + 1 ? 0 : l;
        const OverthinkStats & s = r.level[i];
        const double n = std::max(1, s.n);
        std::snprintf(b, sizeof b,
                      "| %s | %d | %.1f%% | %.1f%% | %.1f | %.1f | %.1fx | %.2f | %.1f%% | %.1f | %.1fx | "
                      "%.1f%% (%.1f%%) | %.1f%% | %d / %d / %d / %d |\n",
                      i == 0 ? "all" : std::to_string(i).c_str(), s.n, 100 * s.fast_correct / n,
                      100 * s.slow_correct / n, s.fast_tokens / n, s.slow_tokens / n,
                      double(s.slow_tokens) / std::max(1L, s.fast_tokens), s.rounds / n, 100 * s.oracle_correct / n,
                      s.oracle_tokens / n, double(s.slow_tokens) / std::max(1L, s.oracle_tokens),
                      100.0 * s.forced_after_agree / std::max(1, s.forced_after_n),
                      100.0 * s.forced_after_correct / std::max(1, s.forced_after_n),
                      100.0 * s.forced_before_correct / std::max(1, s.forced_before_n), s.label[0], s.label[1],
                      s.label[2], s.label[3]);
        o += b;
    }
    auto gate = [&](const std::string & name, bool pass, double v) {
        std::snprintf(b, sizeof b, "- %s: %s (%.3g)\n", name.c_str(), pass ? "PASS" : "FAIL", v);
        o += b;
    };
    std::snprintf(b, sizeof b, "\nlabels use the short cutoff %d tokens. Gates (issue 13):\n", r.short_cutoff);
    o += b;
    gate("always-fast >= 95% on level 1", r.acc(1, false) >= 0.95, r.acc(1, false));
    gate("always-fast >= 90% on level 2", r.acc(2, false) >= 0.90, r.acc(2, false));
    gate("always-fast >= 60% on level 3", r.acc(3, false) >= 0.60, r.acc(3, false));
    gate("always-fast <= 35% on level 5", r.acc(5, false) <= 0.35, r.acc(5, false));
    gate("always-slow >= 92% overall", r.acc(0, true) >= 0.92, r.acc(0, true));
    gate("always-fast >= 20 points below always-slow", r.acc(0, true) - r.acc(0, false) >= 0.20,
         r.acc(0, true) - r.acc(0, false));
    for (int l = kArithMinLevel; l <= kArithMaxLevel; ++l) {
        gate("level " + std::to_string(l) + ": slow accuracy >= fast", r.acc(l, true) >= r.acc(l, false),
             r.acc(l, true) - r.acc(l, false));
        gate("level " + std::to_string(l) + ": slow tokens >= 5x fast", r.tokens(l, true) >= 5 * r.tokens(l, false),
             r.tokens(l, true) / std::max(1e-9, r.tokens(l, false)));
    }
    gate("oracle bound (always-slow / oracle tokens) >= 8x", r.oracle_bound() >= 8.0, r.oracle_bound());
    std::snprintf(b, sizeof b, "  (counting the whole slow answer where no answer is right: %.2fx)\n", r.oracle_bound_cons());
    o += b;
    gate("forced </think> after the first solution: its answer >= 98%", r.forced_after_acc() >= 0.98,
         r.forced_after_acc());
    gate(">= 99% of outputs end with end-of-turn and parse", double(r.level[0].ok_end) / std::max(1, 2 * r.level[0].n) >= 0.99,
         double(r.level[0].ok_end) / std::max(1, 2 * r.level[0].n));
    o += r.all_gates_pass() ? "ALL GATES PASS\n" : "SOME GATES FAIL\n";
    return o;
}

}  // namespace kvlens::train
