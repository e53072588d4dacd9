// ThinkPolicy (the rule) and ThinkRunner (the rule on a live Session: online switch or the paper's re-prefill).
#include "kvlens/think.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "kvlens/error.h"

namespace kvlens {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

const char * to_string(ThinkMode m) { return m == ThinkMode::Fast ? "fast" : "slow"; }

// ---- the rule ----------------------------------------------------------------------------------------

void ThinkPolicy::start(ThinkMode m, bool gave_up) {
    mode_ = m;
    gave_up_ = gave_up && m == ThinkMode::Fast;
    switched_ = false;
    switch_at_ = -1;
    switch_score_ = 0;
}

std::optional<ThinkMode> ThinkPolicy::observe(int n_generated, double score) {
    if (switched_ || gave_up_ || !p_.online) return std::nullopt;
    std::optional<ThinkMode> to;
    if (mode_ == ThinkMode::Slow && score < 50.0 - p_.delta) to = ThinkMode::Fast;
    if (mode_ == ThinkMode::Fast && score > 50.0 + p_.delta) to = ThinkMode::Slow;
    if (!to) return std::nullopt;
    switched_ = true;
    switch_at_ = n_generated;
    switch_score_ = score;
    mode_ = *to;
    return to;
}

// ---- the runner ----------------------------------------------------------------------------------------

struct ThinkRunner::Gen {
    std::vector<Token> tokens;  // sampled tokens of this pass
    int reserve = 0;            // context kept free for a control text
};

namespace {
void check_params(const ThinkParams & p, const KvClassifier * clf) {
    if (p.fast_cap <= 0 || p.slow_cap <= 0) throw Error("token caps must be positive");
    if (p.every <= 0) throw Error("--every must be >= 1");
    if (p.delta < 0) throw Error("--delta must be >= 0");
    if (std::isnan(p.give_up)) throw Error("--give-up must be a number");
    if (p.policy == ThinkPolicyKind::Classifier && !clf) throw Error("the classifier policy needs a classifier (--classifier)");
}
}  // namespace

TapSpec ThinkRunner::tap_spec(const ModelFacts & f, const KvClassifier * clf, const ThinkParams & p) {
    TapSpec spec;
    if (clf) {
        const WindowConfig & w = clf->meta().window;
        spec = window_tap_spec(w, parse_layers(w.layers, f.n_layer));
    }
    if (p.confidence) {  // KV-CoE reads the K/V of every layer
        TapSpec all;
        for (int l = 0; l < f.n_layer; ++l) all.layers.push_back(l);
        spec = tap_union(spec, all);
    }
    return spec;
}

ThinkRunner::ThinkRunner(Sequence & s, const KvClassifier * clf, PromptFormat fmt, ThinkParams p)
    : s_(s), clf_(clf), fmt_(std::move(fmt)), p_(p) {
    check_params(p_, clf_);
    const ModelFacts & f = s_.model().facts();
    const TapSpec spec = tap_spec(f, clf_, p_);
    if (clf_) {
        clf_->check_model(f);
        auto layers = parse_layers(clf_->meta().window.layers, f.n_layer);
        window_ = std::make_unique<KvWindow>(clf_->meta().window, PoolShape{f.n_head_kv, f.head_dim_k, f.n_embd}, layers);
        if (window_->dim() != clf_->meta().input_dim)
            throw Error("classifier input width " + std::to_string(clf_->meta().input_dim) + " does not match its window (" +
                        std::to_string(window_->dim()) + ")");
    }
    if (p_.confidence) {
        KvCoeOptions o;
        o.layers = spec.layers;
        o.kv_part = KvPart::KV;
        coe_ = std::make_unique<KvCoeConsumer>(o);
    }
    s_.require_tap(spec);
    if (window_) s_.subscribe(window_.get());
    if (coe_) s_.subscribe(coe_.get());
}

ThinkRunner::~ThinkRunner() {
    if (window_) s_.unsubscribe(window_.get());
    if (coe_) s_.unsubscribe(coe_.get());
}

int ThinkRunner::room(int reserve) const { return s_.n_ctx() - s_.n_past() - reserve; }

double ThinkRunner::score_window(ThinkResult & r) {
    auto t0 = Clock::now();
    double sc = clf_->predict(window_->features());
    r.classifier_seconds += since(t0);
    ++r.n_checks;
    return sc;
}

// Evaluates the chat-wrapped prompt; scores the prompt (chat window, or the raw question first for "raw").
int ThinkRunner::prefill_prompt(const ThinkInput & in, ThinkResult & r, const ThinkParams & p) {
    const std::string & q = in.question;
    if (q.find_first_not_of(" \t\r\n") == std::string::npos) throw Error("empty question");
    const Model & m = s_.model();
    auto tok = [&](const std::string & text) { return PromptFormat::tokenize(m, text); };
    const std::string user = in.rendered.empty() ? fmt_.render(m, q) : in.rendered;
    auto toks = tok(user);
    // user turn + either prefix must tokenize as the whole text does (throws otherwise)
    int need = 0;
    for (PromptMode mode : {PromptMode::Slow, PromptMode::Fast}) {
        if (in.rendered.empty()) {
            need = std::max(need, (int) fmt_.tokens(m, q, mode).size());
            continue;
        }
        auto t = toks;
        const auto pre = m.tokenize(fmt_.prefix(mode), false, true);
        t.insert(t.end(), pre.begin(), pre.end());
        if (t != tok(user + fmt_.prefix(mode)))
            throw Error("the conversation and the " + std::string(to_string(mode)) +
                        " prefix do not tokenize as their concatenation does");
        need = std::max(need, (int) t.size());
    }
    need += 8;
    if (need > s_.n_ctx())
        throw Error("question of " + std::to_string(toks.size()) + " prompt tokens does not fit the context of " +
                    std::to_string(s_.n_ctx()) + " tokens (-c) with room to answer");
    s_.clear();
    const bool scored = clf_ && p.policy == ThinkPolicyKind::Classifier;
    if (scored && clf_->meta().variant == "raw") {
        s_.eval(tok(q));
        r.initial_score = score_window(r);
        s_.clear();
    }
    s_.eval(toks);
    if (scored && clf_->meta().variant != "raw") r.initial_score = score_window(r);
    r.prompt_tokens = (int) toks.size();
    return (int) toks.size();
}

double ThinkRunner::initial_score(const std::string & q) {
    if (!clf_) throw Error("initial_score needs a classifier");
    ThinkResult r;
    ThinkParams p = p_;
    p.policy = ThinkPolicyKind::Classifier;
    prefill_prompt(ThinkInput{q, ""}, r, p);
    return r.initial_score;
}

// Generates in the policy's current mode until end of generation or the cap. After every k-th generated token is
// evaluated the window (which now ends at that token) is scored; with act, a switch appends the control text right
// there and goes on in the new mode; without, it only records where the switch would be (paper mode's scan).
void ThinkRunner::generate_mode(ThinkPolicy & pol, ThinkResult & r, Gen & g, bool act, const ThinkParams & p) {
    const Model & m = s_.model();
    int budget = pol.mode() == ThinkMode::Fast ? p.fast_cap : p.slow_cap;
    int used = 0;
    bool closed = false;
    while (true) {
        if (hooks_ && hooks_->end_thinking && pol.mode() == ThinkMode::Slow && !closed && !r.ended_thinking &&
            hooks_->end_thinking() && room(g.reserve + 1 + (int) s_.model().tokenize(hooks_->end_message, false, true).size()) >= 0) {
            // the client ends the thinking (llama-server's reasoning_end): close it on the live sequence
            const std::string ctl = hooks_->end_message + fmt_.to_fast;
            const int before = s_.n_past();
            s_.append_text(ctl);
            r.control_tokens += s_.n_past() - before;
            r.output += ctl;
            r.ended_thinking = true;
            closed = true;
            if (hooks_->on_event) hooks_->on_event(ThinkEvent{ThinkEvent::Control, ctl});
        }
        if (used >= budget || room(g.reserve) < 1) {
            r.hit_cap = true;  // stopped by the cap or the context end
            break;
        }
        const Token t = s_.sample();
        ++r.generated;
        ++used;
        g.tokens.push_back(t);
        r.tokens.push_back(t);
        const std::string piece = m.piece(t, true);
        r.output += piece;
        if (hooks_) {
            if (hooks_->maxprob) maxprob_sum_ += s_.sampled_stats(t).maxprob;
            if (hooks_->on_event && !hooks_->on_event(ThinkEvent{ThinkEvent::Token, piece, t, m.is_eog(t), r.generated})) {
                r.stopped = true;
                break;
            }
        }
        if (m.is_eog(t)) break;  // sampled and counted, not evaluated (as Session::generate)
        s_.eval({t});
        if (piece.find(fmt_.think_close) != std::string::npos) closed = true;
        const bool watch = clf_ && p.policy == ThinkPolicyKind::Classifier && !(pol.mode() == ThinkMode::Slow && closed);
        if (!watch || !pol.due(r.generated)) continue;
        const double sc = score_window(r);
        if (p.trace) r.scores.push_back({r.generated, (float) sc});
        auto to = pol.observe(r.generated, sc);
        if (!to || !act) continue;
        const std::string & ctl = *to == ThinkMode::Fast ? fmt_.to_fast : fmt_.to_slow;
        const int before = s_.n_past();
        s_.append_text(ctl);
        r.control_tokens += s_.n_past() - before;
        r.output += ctl;
        if (hooks_ && hooks_->on_event) hooks_->on_event(ThinkEvent{ThinkEvent::Control, ctl});
        used = 0;
        closed = false;
        budget = *to == ThinkMode::Fast ? p.fast_cap : p.slow_cap;
    }
}

void ThinkRunner::run_paper(ThinkPolicy & pol, ThinkResult & r, int n_prompt, const ThinkParams & p) {
    const Model & m = s_.model();
    Gen first;
    first.reserve = 0;
    const std::string prefix = r.output;
    generate_mode(pol, r, first, /*act=*/false, p);
    if (!pol.switched()) {
        r.generated_paper = r.generated;
        return;
    }
    // the authors' way: cut the text after the switch point, re-tokenise, prefill again, generate the new mode
    const int cut = pol.switch_at();
    r.discarded = r.generated - cut;
    std::vector<Token> keep(first.tokens.begin(), first.tokens.begin() + cut);
    const std::string ctl = pol.mode() == ThinkMode::Fast ? fmt_.to_fast : fmt_.to_slow;
    r.output = prefix + m.detokenize(keep, true) + ctl;
    auto toks = PromptFormat::tokenize(m, fmt_.render(m, r.question) + r.output);
    if ((int) toks.size() >= s_.n_ctx()) throw Error("paper mode: the cut text no longer fits the context");
    s_.clear();
    s_.eval(toks);
    r.reprefill_tokens = (int) toks.size();
    r.control_tokens += (int) m.tokenize(ctl, false, true).size();
    if (coe_) coe_->reset(n_prompt);
    const int before = r.generated;
    Gen second;
    r.hit_cap = false;
    generate_mode(pol, r, second, false, p);
    r.generated_paper = cut + (r.generated - before);
}

ThinkResult ThinkRunner::run(const std::string & question) { return run(ThinkInput{question, ""}, ThinkHooks{}, p_); }
ThinkResult ThinkRunner::run(const std::string & question, const ThinkParams & p) {
    return run(ThinkInput{question, ""}, ThinkHooks{}, p);
}
ThinkResult ThinkRunner::run(const ThinkInput & in, const ThinkHooks & hooks) { return run(in, hooks, p_); }

ThinkResult ThinkRunner::run(const ThinkInput & in, const ThinkHooks & hooks, const ThinkParams & p) {
    check_params(p, clf_);
    if (p.confidence != p_.confidence) throw Error("the confidence setting is fixed when a ThinkRunner is made");
    struct Reset {
        const ThinkHooks *& h;
        ~Reset() { h = nullptr; }
    } reset{hooks_};
    hooks_ = hooks.on_event || hooks.end_thinking || hooks.maxprob ? &hooks : nullptr;
    if (hooks_ && p.paper_mode) throw Error("paper mode runs without hooks");
    maxprob_sum_ = 0;
    const std::string & question = in.question;
    auto t0 = Clock::now();
    ThinkResult r;
    r.question = question;
    const int n_prompt = prefill_prompt(in, r, p);
    ThinkPolicy pol(p);
    ThinkMode mode = p.policy == ThinkPolicyKind::AlwaysFast   ? ThinkMode::Fast
                     : p.policy == ThinkPolicyKind::AlwaysSlow ? ThinkMode::Slow
                     : p.first_mode                            ? *p.first_mode
                                                               : pol.initial(r.initial_score);
    r.first_mode = mode;
    r.gave_up = p.policy == ThinkPolicyKind::Classifier && !p.first_mode && pol.gives_up(r.initial_score);
    if (coe_) coe_->reset(n_prompt);
    const std::string & prefix = mode == ThinkMode::Fast ? fmt_.fast_prefix : fmt_.slow_prefix;
    s_.append_text(prefix);
    r.control_tokens = s_.n_past() - n_prompt;
    if (p.verbose_prompt) print_verbose_prompt(s_.model(), fmt_.tokens(s_.model(), question, to_prompt_mode(mode)));
    r.output = prefix;
    if (hooks_ && hooks_->on_event) hooks_->on_event(ThinkEvent{ThinkEvent::Prefix, prefix});
    pol.start(mode, r.gave_up);
    if (p.paper_mode && p.online && p.policy == ThinkPolicyKind::Classifier) {
        run_paper(pol, r, n_prompt, p);
    } else {
        Gen g;
        const Model & m = s_.model();
        g.reserve = (int) std::max(m.tokenize(fmt_.to_fast, false, true).size(), m.tokenize(fmt_.to_slow, false, true).size());
        generate_mode(pol, r, g, /*act=*/true, p);
        r.generated_paper = r.generated;
    }
    r.final_mode = pol.mode();
    r.switched = pol.switched();
    if (r.switched) {
        r.switch_at = pol.switch_at();
        r.switch_score = pol.switch_score();
    }
    if (coe_) {
        if (auto c = coe_->layer_axis()) r.confidence = c->c;
    }
    if (hooks_ && hooks_->maxprob && r.generated > 0) r.maxprob = maxprob_sum_ / r.generated;
    r.seconds = since(t0);
    return r;
}

}  // namespace kvlens
