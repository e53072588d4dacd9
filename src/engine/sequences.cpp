// Sequence's shared loop (generate) and run_sequences: sequential programs as jobs of one Engine (kvlens/sequence.h).
//
// A program runs as a fiber (fiber.h) on the engine's thread: each call that needs the model (eval, sample)
// records a request and yields to the engine, which resumes the program inside the job's callback (prompt,
// on_evaluated, on_token) and turns its next request into a SeqStep. So the engine sees ordinary SeqJobs, taps
// and consumers are only ever touched by one thread, the batches a run makes depend only on the programs'
// requests, and a turn costs a context switch in user space (no thread wake-up per token).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <exception>
#include <map>

#include "kvlens/engine.h"
#include "kvlens/error.h"
#include "kvlens/sequence.h"
#include "kvlens/session.h"
#include "fiber.h"

namespace kvlens {

void Sequence::append_text(const std::string & text) { eval(model().tokenize(text, false, true)); }

SoftmaxStats Sequence::sampled_stats(Token t) const { return softmax_stats(sampled_logits(), model().facts().n_vocab, t); }

GenerateResult Sequence::generate(int max_tokens, const TokenCallback & cb, bool stop_at_eog) {
    GenerateResult r;
    auto t0 = std::chrono::steady_clock::now();
    const int n_vocab = model().facts().n_vocab;
    for (int i = 0; i < max_tokens; ++i) {
        Token t = sample();
        TokenEvent ev;
        ev.id = t;
        ev.piece = model().piece(t, true);
        ev.pos = n_past();
        ev.logits = sampled_logits();
        ev.n_vocab = n_vocab;
        const SoftmaxStats s = sampled_stats(t);
        ev.logprob = s.logprob_of;
        ev.maxprob = s.maxprob;
        ev.entropy = s.entropy_bits;
        r.tokens.push_back(t);
        bool eog = model().is_eog(t);
        if (!eog) r.text += model().piece(t, false);
        bool go_on = cb ? cb(ev) : true;
        if (eog && stop_at_eog) {
            r.hit_eog = true;
            break;
        }
        if (n_past() + 1 > n_ctx()) {  // the context is full: this token cannot be evaluated, generation ends here
            r.hit_ctx = true;
            break;
        }
        eval({t});
        if (!go_on) break;
        if (i + 1 == max_tokens) r.hit_cap = true;
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

namespace {

// Thrown inside a program whose sequence was ended by the engine (the run failed elsewhere): unwinds it.
struct Unwind {};

// One program as one SeqJob; the Sequence it hands the program yields to the engine at every eval and sample.
class ProgramJob final : public SeqJob, public Sequence {
public:
    ProgramJob(Model & m, const TapSpec & engine_tap, int n_ctx, std::function<void(Sequence &)> fn)
        : model_(m), tap_(engine_tap), n_ctx_(n_ctx), fn_(std::move(fn)) {}
    ~ProgramJob() override { stop_program(); }

    std::exception_ptr error() const { return error_; }
    bool returned() const { return fiber_.done(); }

    // ---- SeqJob (the engine) ----
    std::vector<Token> prompt() override {
        resume();  // until the program's first request
        if (req_.kind == Req::Sample) fail("sample() before anything was evaluated");
        if (req_.kind == Req::Done) {
            if (error_) std::rethrow_exception(error_);  // the run fails with the program's own error
            return {};
        }
        return take_eval();
    }
    std::optional<SeqStep> on_evaluated() override {
        resume();  // the eval returns; the program goes on to its next request
        if (req_.kind == Req::Sample) return std::nullopt;  // the engine samples; on_token answers it
        return step();
    }
    SeqStep on_token(const TokenEvent & ev) override {
        for (int j = 0; j < ev.n_vocab; ++j)
            if (!std::isfinite(ev.logits[j]))
                fail("the model's logits are not finite (NaN or inf at position " + std::to_string(ev.pos - 1) +
                     "): its weights are broken or overflow in this precision");
        sampled_ = ev.id;
        logits_ = ev.logits;
        stats_ = SoftmaxStats{ev.maxprob, ev.entropy, ev.logprob};
        resume();
        if (req_.kind == Req::Sample) fail("sample() twice without evaluating the sampled token");
        return *step();
    }
    void on_finish(bool context) override {
        if (!fiber_.done()) {  // ended by the engine while the program waits: its call throws
            ended_ = context ? "the sequence ran out of its share of the context (-c / -np)" : "";
            unwind_ = !context;
            resume();
        }
        stop_program();
    }

    // ---- Sequence (the program, in its fiber) ----
    Model & model() const override { return model_; }
    void eval(const std::vector<Token> & tokens) override {
        if (tokens.empty()) return;
        check_live();
        for (Token t : tokens)
            if (t < 0 || t >= model_.facts().n_vocab) throw Error("token id " + std::to_string(t) + " outside the vocabulary");
        if (n_past_ + (int) tokens.size() > n_ctx_)
            throw Error("context full: " + std::to_string(n_past_) + " + " + std::to_string(tokens.size()) +
                        " tokens exceed the sequence's " + std::to_string(n_ctx_) + " (-c / -np)");
        req_ = Req{Req::Eval, tokens};
        request();
        n_past_ += (int) tokens.size();
        evaluated_ = true;
    }
    Token sample() override {
        check_live();
        if (!evaluated_) throw Error("nothing to sample from: evaluate a prompt first");
        req_ = Req{Req::Sample, {}};
        request();
        evaluated_ = false;  // the next sample needs an eval first (as the engine's loop does)
        return sampled_;
    }
    const float * sampled_logits() const override {
        if (!logits_) throw Error("no logits: nothing was sampled");
        return logits_;
    }
    SoftmaxStats sampled_stats(Token t) const override {
        if (logits_ && t == sampled_) return stats_;  // the engine's, computed when it sampled t
        return Sequence::sampled_stats(t);
    }
    void rewind(int pos) override {
        if (pos < 0 || pos > n_past_) throw Error("cannot rewind to position " + std::to_string(pos));
        n_past_ = pos;
        rewind_ = rewind_ < 0 ? pos : std::min(rewind_, pos);
        evaluated_ = false;
        logits_ = nullptr;
        for (TapConsumer * c : consumers) c->on_rewind(pos);  // at once, as a Session does (the engine repeats it)
    }
    int n_past() const override { return n_past_; }
    int n_ctx() const override { return n_ctx_; }
    void require_tap(const TapSpec & spec) override {
        for (int l : spec.layers)
            if (std::find(tap_.layers.begin(), tap_.layers.end(), l) == tap_.layers.end())
                throw Error("the engine's tap does not include layer " + std::to_string(l));
        if ((spec.kv && !spec.layers.empty() && !tap_.kv) || (spec.hidden && !tap_.hidden) ||
            (spec.hidden_embedding && !tap_.hidden_embedding))
            throw Error("the engine's tap does not cover what this program reads");
    }
    void subscribe(TapConsumer * c) override { consumers.push_back(c); }
    void unsubscribe(TapConsumer * c) override { consumers.erase(std::remove(consumers.begin(), consumers.end(), c), consumers.end()); }

private:
    struct Req {
        enum Kind { Eval, Sample, Done } kind = Done;
        std::vector<Token> tokens;
    };

    void body() {
        try {
            fn_(*this);
        } catch (const Unwind &) {
        } catch (...) {
            error_ = std::current_exception();
        }
        req_ = Req{Req::Done, {}};
    }
    // program side: post req_ and let the engine answer it
    void request() {
        fiber_.yield();
        check_live();
    }
    void check_live() const {
        if (unwind_) throw Unwind{};
        if (!ended_.empty()) throw Error(ended_);
    }
    // engine side: let the program run until its next request (or its return)
    void resume() { fiber_.resume(); }
    std::vector<Token> take_eval() {
        std::vector<Token> t = std::move(req_.tokens);
        rewind_ = -1;  // a rewind before the prompt is a no-op (the sequence starts empty)
        return t;
    }
    // the program's request as what the engine does next
    std::optional<SeqStep> step() {
        if (req_.kind == Req::Done) {
            if (error_) std::rethrow_exception(error_);  // the run fails with the program's own error
            return SeqStep::done();
        }
        SeqStep st;
        st.keep_sampled = false;
        st.rewind_to = rewind_;
        rewind_ = -1;
        st.append = std::move(req_.tokens);
        return st;
    }
    [[noreturn]] void fail(const std::string & why) {
        if (!error_) error_ = std::make_exception_ptr(Error(why));
        throw Error(why);
    }
    void stop_program() {
        if (!fiber_.started() || fiber_.done()) return;
        unwind_ = true;  // the program waits in a call: it throws Unwind there
        resume();
    }

    Model & model_;
    TapSpec tap_;
    int n_ctx_;
    std::function<void(Sequence &)> fn_;
    Fiber fiber_{[this] { body(); }};
    Req req_;
    std::string ended_;     // why the engine ended the sequence under the program (its next call throws it)
    bool unwind_ = false;   // the run ended: the program's next call unwinds it
    std::exception_ptr error_;
    int n_past_ = 0, rewind_ = -1;
    bool evaluated_ = false;
    Token sampled_ = -1;
    const float * logits_ = nullptr;
    SoftmaxStats stats_{};
};

}  // namespace

struct SequencePool::Live {
    std::deque<std::unique_ptr<ProgramJob>> jobs;  // joined, not yet over
};

SequencePool::SequencePool(std::shared_ptr<Model> model, const EngineParams & ep, const TapSpec & tap)
    : engine_(std::make_unique<Engine>(std::move(model), ep)), live_(std::make_unique<Live>()) {
    engine_->set_tap(tap);
}
SequencePool::~SequencePool() = default;
int SequencePool::n_parallel() const { return engine_->n_parallel(); }
int SequencePool::n_ctx_seq() const { return engine_->n_ctx_seq(); }

void SequencePool::run(const std::function<std::optional<SequenceProgram>(bool idle)> & next) {
    Engine & e = *engine_;
    auto & live = live_->jobs;
    // drop the jobs that are over (their threads were joined in on_finish); a program that failed after the engine
    // ended its sequence (out of context) ends the run with its error
    auto reap = [&]() {
        for (auto it = live.begin(); it != live.end();) {
            if (!(*it)->returned()) {
                ++it;
                continue;
            }
            if ((*it)->error()) std::rethrow_exception((*it)->error());
            it = live.erase(it);
        }
    };
    try {
        for (;;) {
            std::optional<SequenceProgram> held = next(true);  // nothing runs: may wait for work
            if (!held) return;
            e.run([&]() -> SeqJob * {
                reap();
                std::optional<SequenceProgram> p = held ? std::move(held) : next(false);
                held.reset();
                if (!p) return nullptr;
                live.push_back(std::make_unique<ProgramJob>(e.model(), e.tap(), e.n_ctx_seq(), std::move(p->run)));
                live.back()->sampling = p->sampling;
                return live.back().get();
            });
            reap();
        }
    } catch (...) {
        live.clear();  // unwinds the programs still waiting (their calls throw, their threads end)
        throw;
    }
}

void run_sequences(std::shared_ptr<Model> model, const EngineParams & ep, const SamplingParams & sampling,
                   const TapSpec & tap, int n, const std::function<void(int, Sequence &)> & program,
                   const std::function<void(int)> & done) {
    if (n <= 0) return;
    if (ep.n_parallel <= 1) {
        Session s(model, ep.session);
        s.set_tap(tap);
        for (int i = 0; i < n; ++i) {
            s.set_sampling(sampling);  // a fresh sampler per program, as an engine sequence has
            s.clear();
            program(i, s);
            if (done) done(i);
        }
        return;
    }
    SequencePool pool(std::move(model), ep, tap);
    std::vector<char> returned(n, 0);  // written by program i's thread while the engine's thread waits for it
    int next = 0, reported = 0;
    auto report = [&]() {
        while (reported < n && returned[reported]) {
            if (done) done(reported);
            ++reported;
        }
    };
    pool.run([&](bool) -> std::optional<SequenceProgram> {
        report();
        if (next >= n) return std::nullopt;
        const int i = next++;
        return SequenceProgram{sampling, [&, i](Sequence & s) {
                                   program(i, s);
                                   returned[i] = 1;
                               }};
    });
    report();
    if (reported != n) throw Error("run_sequences: " + std::to_string(n - reported) + " programs did not finish");
}

}  // namespace kvlens
