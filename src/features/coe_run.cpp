// CoeRunner: one generation with the three CoE chains and the output-based baselines (kvlens/coe_run.h).
#include "kvlens/coe_run.h"

#include <algorithm>
#include <chrono>

#include "kvlens/cpu_time.h"
#include "kvlens/error.h"

namespace kvlens {

CoeRunner::CoeRunner(Session & session, CoeRunOptions options) : s_(session), opt_(std::move(options)) {
    if (opt_.max_tokens < 1) throw Error("CoeRunner: max_tokens must be >= 1");
    if (!opt_.chains) return;
    if (opt_.layers.empty())
        for (int l = 0; l < s_.model().facts().n_layer; ++l) opt_.layers.push_back(l);
    TapSpec spec;
    spec.layers = opt_.layers;
    spec.kv = true;
    spec.hidden = true;
    spec.hidden_embedding = opt_.hidden_embedding;
    s_.set_tap(spec);  // validates the layers against the model
    KvCoeOptions co;
    co.layers = opt_.layers;
    co.kv_part = opt_.kv_part;
    co.l2_normalize = opt_.l2_normalize;
    co.hidden_layers = opt_.layers;
    co.hidden_embedding = opt_.hidden_embedding;
    coe_ = std::make_unique<KvCoeConsumer>(co);
    s_.subscribe(coe_.get());
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
