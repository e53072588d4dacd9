// prep_question: the classifier's training data for one question — prompt windows, fast and slow answers,
// and (optionally) switch-aware windows inside the slow trace.
#include <algorithm>
#include <chrono>

#include "kvlens/error.h"
#include "kvlens/think.h"
#include "kvlens/think_study.h"

namespace kvlens {

namespace {

std::vector<Token> tokenize_prompt(const Model & m, const std::string & text) { return PromptFormat::tokenize(m, text); }

// Generate up to cap tokens (bounded by the context, keeping `reserve` free); cb sees every token.
PrepAnswer answer(Sequence & s, const std::string & prefix, int cap, int reserve, const AnswerChecker & check,
                  const TokenCallback & cb = nullptr) {
    PrepAnswer a;
    const int n = std::min(cap, s.n_ctx() - s.n_past() - reserve);
    if (n <= 0) {
        a.hit_cap = true;
        return a;
    }
    GenerateResult g = s.generate(n, cb);
    a.tokens = g.tokens;
    for (Token t : g.tokens) a.text += s.model().piece(t, true);
    a.hit_cap = !g.hit_eog;
    a.correct = check(prefix + a.text);
    return a;
}

}  // namespace

PrepRecord prep_question(Sequence & s, KvWindow & w, const PromptFormat & fmt, const std::string & question,
                         const AnswerChecker & check, const PrepParams & p) {
    auto t0 = std::chrono::steady_clock::now();
    if (question.find_first_not_of(" \t\r\n") == std::string::npos) throw Error("empty question");
    const Model & m = s.model();
    PrepRecord r;
    if (p.raw) {
        s.clear();
        s.eval(tokenize_prompt(m, question));
        r.x_raw = w.features();
    }
    s.clear();
    auto toks = tokenize_prompt(m, fmt.render(m, question));
    // the prefixes must tokenize as the whole text does (throws)
    const auto fast_toks = fmt.tokens(m, question, PromptMode::Fast), slow_toks = fmt.tokens(m, question, PromptMode::Slow);
    if (p.verbose_prompt) {
        print_verbose_prompt(m, fast_toks, "fast prompt");
        print_verbose_prompt(m, slow_toks, "slow prompt");
    }
    if ((int) toks.size() + 16 > s.n_ctx())
        throw Error("question of " + std::to_string(toks.size()) + " prompt tokens does not fit the context of " +
                    std::to_string(s.n_ctx()) + " tokens (-c)");
    s.eval(toks);
    const int n_prompt = s.n_past();
    r.x_chat = w.features();

    s.append_text(fmt.fast_prefix);
    r.fast = answer(s, fmt.fast_prefix, p.fast_cap, 0, check);
    s.rewind(n_prompt);

    s.append_text(fmt.slow_prefix);
    const int n_pre = s.n_past();
    const int reserve = (int) m.tokenize(fmt.to_fast, false, true).size();
    bool closed = false, line_end = true;  // the slow prefix ends with a line end: a cut at 0 closes the think at once
    int used = 0;
    std::vector<SwitchWindow> cuts;
    auto cb = [&](const TokenEvent & ev) {
        // the window now ends at the previous token: a line end inside the open think is a cut point
        const bool at_cut = line_end || (p.cut_every > 0 && used > 0 && used % p.cut_every == 0);
        if (p.switch_aware && at_cut && !closed && (int) cuts.size() < p.max_cuts) {
            SwitchWindow c;
            c.at = used;
            c.x = w.features();
            cuts.push_back(std::move(c));
        }
        ++used;
        if (ev.piece.find(fmt.think_close) != std::string::npos) closed = true;
        line_end = !ev.piece.empty() && ev.piece.back() == '\n';
        return true;
    };
    r.slow = answer(s, fmt.slow_prefix, p.slow_cap, reserve, check, cb);

    // the answer forced at each cut (latest first, on the cache of the trace: kvlens/think_study.h)
    std::vector<int> at;
    for (const SwitchWindow & c : cuts) at.push_back(c.at);
    const std::vector<ForcedAnswer> forced = forced_answers(s, fmt, n_pre, fmt.slow_prefix, r.slow.tokens, at, check, p.fast_cap);
    for (size_t i = 0; i < cuts.size(); ++i) {
        cuts[i].correct = forced[i].correct;
        cuts[i].answer_tokens = forced[i].answer_tokens;
        cuts[i].hit_cap = forced[i].hit_cap;
        cuts[i].maxprob = forced[i].maxprob;
    }
    r.switches = std::move(cuts);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace kvlens
