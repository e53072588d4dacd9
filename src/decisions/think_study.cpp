// The router study's rows from forced answers (include/kvlens/think_study.h).
#include "kvlens/think_study.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "kvlens/error.h"

namespace kvlens {

std::vector<int> think_line_cuts(const Model & m, const std::vector<Token> & trace, const std::string & think_close,
                                 int every) {
    std::vector<int> cuts = {0};
    for (size_t i = 0; i < trace.size(); ++i) {
        const std::string piece = m.piece(trace[i], true);
        if (piece.find(think_close) != std::string::npos || m.is_eog(trace[i])) break;  // the think is closed
        const int at = int(i) + 1;
        if ((!piece.empty() && piece.back() == '\n') || (every > 0 && at % every == 0)) cuts.push_back(at);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    return cuts;
}

std::vector<ForcedAnswer> forced_answers(Sequence & s, const PromptFormat & fmt, int n_pre,
                                         const std::string & prefix_text, const std::vector<Token> & trace,
                                         const std::vector<int> & cuts, const AnswerChecker & check, int cap) {
    const Model & m = s.model();
    std::vector<ForcedAnswer> out(cuts.size());
    for (size_t k = cuts.size(); k-- > 0;) {
        const int at = cuts[k];
        if (at < 0 || at > (int) trace.size() || n_pre + at > s.n_past())
            throw Error("forced answer at think token " + std::to_string(at) + ": not in the cache");
        if (k + 1 < cuts.size() && cuts[k + 1] < at) throw Error("forced answers: cuts must be sorted");
        s.rewind(n_pre + at);
        s.append_text(fmt.to_fast);
        ForcedAnswer & f = out[k];
        f.at = at;
        const int n = std::min(cap, s.n_ctx() - s.n_past());
        std::string text;
        double mp = 0;
        if (n > 0) {
            GenerateResult g = s.generate(n, [&](const TokenEvent & ev) {
                mp += ev.maxprob;
                return true;
            });
            for (Token t : g.tokens) text += m.piece(t, true);
            f.answer_tokens = (int) g.tokens.size();
            f.hit_cap = !g.hit_eog;
        } else {
            f.hit_cap = true;
        }
        f.maxprob = f.answer_tokens ? mp / f.answer_tokens : 0;
        std::string kept;
        for (int i = 0; i < at; ++i) kept += m.piece(trace[i], true);
        f.correct = check(prefix_text + kept + fmt.to_fast + text);
    }
    if (!cuts.empty()) s.rewind(n_pre + cuts.front());
    return out;
}

// ---- rows --------------------------------------------------------------------------------------------------

void StudyRow::add(double tok, double tok_paper, double ok) {
    tokens.push_back(tok);
    tokens_paper.push_back(tok_paper);
    correct.push_back(ok);
}

namespace {
double mean(const std::vector<double> & v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / v.size();
}
double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const double at = q * (v.size() - 1);
    const size_t lo = (size_t) std::floor(at), hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (at - lo);
}
}  // namespace

double StudyRow::accuracy() const { return 100.0 * mean(correct); }
double StudyRow::mean_tokens() const { return mean(tokens); }
double StudyRow::mean_tokens_paper() const { return mean(tokens_paper); }

void bootstrap(StudyRow & r, uint64_t seed, int resamples) {
    const size_t n = r.tokens.size();
    if (n == 0 || resamples < 1) return;
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<size_t> pick(0, n - 1);
    std::vector<double> acc(resamples), tok(resamples);
    for (int b = 0; b < resamples; ++b) {
        double a = 0, t = 0;
        for (size_t i = 0; i < n; ++i) {
            const size_t j = pick(rng);
            a += r.correct[j];
            t += r.tokens[j];
        }
        acc[b] = 100.0 * a / n;
        tok[b] = t / n;
    }
    r.acc_lo = percentile(acc, 0.025);
    r.acc_hi = percentile(acc, 0.975);
    r.tok_lo = percentile(tok, 0.025);
    r.tok_hi = percentile(tok, 0.975);
}

StudyRow always_fast_row(const std::vector<StudyProblem> & ps) {
    StudyRow r("always-fast");
    for (const auto & p : ps) r.add(p.fast);
    return r;
}

StudyRow always_slow_row(const std::vector<StudyProblem> & ps) {
    StudyRow r("always-slow");
    for (const auto & p : ps) r.add(p.slow);
    return r;
}

StudyRow oracle_row(const std::vector<StudyProblem> & ps) {
    StudyRow r("oracle (fast if right, else the earliest right close)");
    for (const auto & p : ps) {
        if (p.fast.correct) {
            r.add(p.fast);
            continue;
        }
        const ForcedAnswer * best = nullptr;
        for (const auto & c : p.cuts) {
            if (c.correct && (!best || c.at + c.answer_tokens < best->at + best->answer_tokens)) best = &c;
        }
        const double close = best ? best->at + best->answer_tokens : INFINITY;
        if (best && (!p.slow.correct || close <= p.slow.tokens)) r.add(close, close, 1.0);
        else if (p.slow.correct) r.add(p.slow);
        else r.add(p.fast.tokens <= p.slow.tokens ? p.fast : p.slow);
    }
    return r;
}

StudyRow trial_exit_row(const std::vector<StudyProblem> & ps, double theta) {
    char name[96];
    std::snprintf(name, sizeof name, "trial-answer exit (theta %.2f)", theta);
    StudyRow r(name);
    for (const auto & p : ps) {
        double trials = 0;
        bool kept = false;
        for (const auto & c : p.cuts) {
            if (c.at <= 0) continue;
            trials += c.answer_tokens;
            if (c.maxprob >= theta) {
                r.add(c.at + trials, c.at + c.answer_tokens, c.correct ? 1.0 : 0.0);
                kept = true;
                break;
            }
        }
        if (!kept) r.add(p.slow.tokens + trials, p.slow.tokens_paper, p.slow.correct ? 1.0 : 0.0);
    }
    return r;
}

StudyRow random_router_row(const std::vector<StudyProblem> & ps, const RouterShape & sh, uint64_t seed, int draws) {
    if (draws < 1) throw Error("random router: draws must be >= 1");
    StudyRow r("random router (the router's own fast rate and switch positions)");
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> U(0.0, 1.0);
    for (const auto & p : ps) {
        double tok = 0, tokp = 0, ok = 0;
        for (int d = 0; d < draws; ++d) {
            if (U(rng) < sh.fast_rate) {
                if (!sh.fast_switch_at.empty() && U(rng) < sh.fast_switch_rate) {
                    const int k = sh.fast_switch_at[rng() % sh.fast_switch_at.size()];
                    const double pre = std::min<double>(k, p.fast.tokens);
                    tok += pre + p.slow.tokens;
                    tokp += pre + p.slow.tokens_paper;
                    ok += p.slow.correct;
                } else {
                    tok += p.fast.tokens;
                    tokp += p.fast.tokens_paper;
                    ok += p.fast.correct;
                }
                continue;
            }
            const ForcedAnswer * c = nullptr;
            if (!sh.slow_switch_at.empty() && U(rng) < sh.slow_switch_rate) {
                const int at = sh.slow_switch_at[rng() % sh.slow_switch_at.size()];
                // past the last line end the think has closed (or run out) by then: no switch happens
                if (!p.cuts.empty() && at <= p.cuts.back().at) {
                    for (const auto & x : p.cuts) {
                        if (x.at <= at) c = &x;
                    }
                }
            }
            if (c) {
                tok += c->at + c->answer_tokens;
                tokp += c->at + c->answer_tokens;
                ok += c->correct;
            } else {
                tok += p.slow.tokens;
                tokp += p.slow.tokens_paper;
                ok += p.slow.correct;
            }
        }
        r.add(tok / draws, tokp / draws, ok / draws);
    }
    return r;
}

std::string format_study_table(const std::vector<StudyRow> & rows, const std::string & baseline) {
    double base = 0;
    for (const auto & r : rows) {
        if (r.name == baseline) base = r.mean_tokens();
    }
    std::string o = "| row | n | accuracy % [95% CI] | generated tokens [95% CI] | authors' count | " + baseline +
                    " tokens / row tokens |\n|---|---:|---|---|---:|---:|\n";
    char b[512];
    for (const auto & r : rows) {
        const double t = r.mean_tokens();
        char ratio[48] = "-";
        if (base > 0 && t > 0) std::snprintf(ratio, sizeof ratio, "%.2fx", base / t);
        std::snprintf(b, sizeof b, "| %s | %d | %.1f [%.1f, %.1f] | %.1f [%.1f, %.1f] | %.1f | %s |\n", r.name.c_str(), r.n(),
                      r.accuracy(), r.acc_lo, r.acc_hi, t, r.tok_lo, r.tok_hi, r.mean_tokens_paper(), ratio);
        o += b;
    }
    return o;
}

}  // namespace kvlens
