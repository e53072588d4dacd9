// CoeRunner: one generation with the three CoE chains and the output-based baselines (kvlens/coe_run.h).
#include "kvlens/coe_run.h"

#include <algorithm>
#include <chrono>

#include "kvlens/cpu_time.h"
#include "kvlens/error.h"

namespace kvlens {

namespace {
std::vector<int> chain_layers(const CoeRunOptions & o, int n_layer) {
    std::vector<int> l = o.layers;
    if (l.empty())
        for (int i = 0; i < n_layer; ++i) l.push_back(i);
    return l;
}
std::unique_ptr<KvCoeConsumer> make_consumer(const CoeRunOptions & o) {
    KvCoeOptions co;
    co.layers = o.layers;
    co.kv_part = o.kv_part;
    co.l2_normalize = o.l2_normalize;
    co.hidden_layers = o.layers;
    co.hidden_embedding = o.hidden_embedding;
    return std::make_unique<KvCoeConsumer>(co);
}
}  // namespace

TapSpec coe_tap_spec(const CoeRunOptions & o, int n_layer) {
    TapSpec spec;
    if (!o.chains) return spec;
    spec.layers = chain_layers(o, n_layer);
    spec.kv = true;
    spec.hidden = true;
    spec.hidden_embedding = o.hidden_embedding;
    return spec;
}

CoeRunner::CoeRunner(Session & session, CoeRunOptions options) : s_(session), opt_(std::move(options)) {
    if (opt_.max_tokens < 1) throw Error("CoeRunner: max_tokens must be >= 1");
    if (!opt_.chains) return;
    opt_.layers = chain_layers(opt_, s_.model().facts().n_layer);
    s_.set_tap(coe_tap_spec(opt_, s_.model().facts().n_layer));  // validates the layers against the model
    coe_ = make_consumer(opt_);
    s_.subscribe(coe_.get());
}

CoeJob::CoeJob(const Model & model, const CoeRunOptions & options, std::vector<Token> prompt, int n_ctx_seq)
    : m_(model), opt_(options), prompt_(std::move(prompt)) {
    if (opt_.max_tokens < 1) throw Error("CoeJob: max_tokens must be >= 1");
    if (prompt_.empty()) throw Error("empty prompt");
    if ((int) prompt_.size() >= n_ctx_seq)
        throw Error("the prompt has " + std::to_string(prompt_.size()) + " tokens, no room left in the context (" +
                    std::to_string(n_ctx_seq) + " per sequence)");
    r_.n_prompt = (int) prompt_.size();
    r_.cap = std::min(opt_.max_tokens, n_ctx_seq - r_.n_prompt);
    if (opt_.chains) {
        opt_.layers = chain_layers(opt_, model.facts().n_layer);
        coe_ = make_consumer(opt_);
        consumers = {coe_.get()};
    }
    sampling.temp = 0;
}

void CoeJob::on_join(int) {
    if (coe_) coe_->reset(r_.n_prompt);
    unc_.reset();
    t_join_ = t_first_ = std::chrono::steady_clock::now();
}

SeqStep CoeJob::on_token(const TokenEvent & ev) {
    if (r_.tokens.empty()) t_first_ = std::chrono::steady_clock::now();
    unc_.add(ev.maxprob, ev.logprob, ev.entropy);
    r_.tokens.push_back(ev.id);
    const bool eog = m_.is_eog(ev.id);
    if (!eog) r_.text += ev.piece;
    if (eog && !opt_.ignore_eog) {
        r_.hit_eog = true;
        return SeqStep::done();
    }
    if ((int) r_.tokens.size() == r_.cap) {
        r_.hit_cap = true;
        return SeqStep::finish_after_eval();
    }
    return SeqStep::next();
}

void CoeJob::on_finish(bool context) {
    finished_ = true;
    if (context) r_.hit_cap = true;
    using clk = std::chrono::steady_clock;
    r_.prefill_seconds = std::chrono::duration<double>(t_first_ - t_join_).count();
    r_.decode_seconds = std::chrono::duration<double>(clk::now() - t_first_).count();
    r_.maxprob = unc_.maxprob();
    r_.perplexity = unc_.perplexity();
    r_.entropy = unc_.entropy();
    if (coe_) {
        r_.kv_token = coe_->token_axis();
        r_.kv_layer = coe_->layer_axis();
        r_.hidden = coe_->hidden();
        r_.state_floats = coe_->state_floats();
        r_.state_bytes = coe_->state_bytes();
    }
}

CoeRunner::~CoeRunner() {
    if (coe_) s_.unsubscribe(coe_.get());
}

CoeSample CoeRunner::run(const std::vector<Token> & prompt) {
    if (prompt.empty()) throw Error("empty prompt");
    if ((int) prompt.size() >= s_.n_ctx())
        throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens, no room left in the context (" +
                    std::to_string(s_.n_ctx()) + ", -c)");
    using clk = std::chrono::steady_clock;
    CoeSample r;
    r.n_prompt = (int) prompt.size();
    s_.clear();
    if (coe_) coe_->reset(r.n_prompt);
    unc_.reset();

    const double c0 = process_cpu_seconds();
    auto t0 = clk::now();
    s_.eval(prompt);
    auto t1 = clk::now();
    const double c1 = process_cpu_seconds();
    const Model & m = s_.model();
    // the cap: max_tokens, or what the context leaves after the prompt (reaching either is hit_cap)
    r.cap = std::min(opt_.max_tokens, s_.n_ctx() - r.n_prompt);
    GenerateResult g = s_.generate(r.cap, [&](const TokenEvent & ev) {
        unc_.add(ev.maxprob, ev.logprob, ev.entropy);
        if (!m.is_eog(ev.id)) r.text += ev.piece;
        return true;
    }, !opt_.ignore_eog);
    r.decode_cpu_seconds = process_cpu_seconds() - c1;
    r.prefill_cpu_seconds = c1 - c0;
    r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
    r.decode_seconds = g.seconds;
    r.tokens = std::move(g.tokens);
    r.hit_eog = g.hit_eog;
    r.hit_cap = g.hit_cap;
    r.maxprob = unc_.maxprob();
    r.perplexity = unc_.perplexity();
    r.entropy = unc_.entropy();
    if (coe_) {
        r.kv_token = coe_->token_axis();
        r.kv_layer = coe_->layer_axis();
        r.hidden = coe_->hidden();
        r.state_floats = coe_->state_floats();
        r.state_bytes = coe_->state_bytes();
    }
    return r;
}

}  // namespace kvlens
