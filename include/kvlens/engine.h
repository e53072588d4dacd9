// Engine: many sequences on one llama.cpp context, with continuous batching (llama.cpp's n_seq_max; -np N).
//
// Each sequence runs a SeqJob: its prompt is evaluated when it joins a free slot, then after every sampled token
// the job says what happens next (go on, append control text, rewind, stop). Each llama_decode carries the next
// token of every decoding sequence plus prompt chunks of joining ones, at most -b tokens. With -np > 1 each sequence
// has its own KV cache (llama.cpp's kv_unified = false, as llama-server's slots): attention reads only that
// sequence's cells, and the tap maps each K/V row to its sequence by the cache row it is written to. A tap on
// hidden states keeps one unified cache (one ubatch per decode, split "simple" in batch order: row r of a tapped
// tensor is batch token r). Either way a consumer of a job receives exactly that sequence's K/V rows (and hidden
// states), in position order.
//
// Context: -c is the whole cache; each sequence may hold at most -c / -np tokens (llama-server's split), so a
// decode never runs out of cache cells.
//
//   Engine e(model, {session_params, 8});
//   e.set_tap(spec);                        // the union of what the jobs' consumers need
//   e.run([&]() -> SeqJob * { return next_job(); });  // until no job is left
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvlens/model.h"
#include "kvlens/sequence.h"
#include "kvlens/session.h"
#include "kvlens/tap.h"

namespace kvlens {

struct EngineParams {
    SessionParams session;  // -c (whole cache), -b, -t, -fa, -ctk, -ctv (-ub is set to -b)
    int n_parallel = 1;     // -np: sequences decoded together
    // llama-server's cache_prompt: a job with no tap consumers joins the free slot whose cache holds the longest
    // prefix of its prompt (what that slot's last job left there) and evaluates only the rest (at least one token,
    // for its logits). Off: every job starts from an empty sequence.
    bool reuse_prefix = false;
};

// What a sequence does after a sampled token.
struct SeqStep {
    bool stop = false;            // the job is done (the sampled token is not evaluated)
    bool keep_sampled = true;     // evaluate the sampled token (false: drop it, e.g. before a rewind)
    int rewind_to = -1;           // >= 0: first cut the sequence back to this many tokens
    std::vector<Token> append;    // then evaluate these tokens after it (control text)
    bool last = false;            // evaluate what is pending, then finish without sampling again (a cap)
    static SeqStep next() { return {}; }
    static SeqStep done() { SeqStep s; s.stop = true; return s; }
    static SeqStep finish_after_eval() { SeqStep s; s.last = true; return s; }
};

class SeqJob {
public:
    virtual ~SeqJob() = default;
    virtual std::vector<Token> prompt() = 0;  // empty: the job is done at once (it leaves its slot)
    // After each sampled token; ev.logits is valid only during the call.
    virtual SeqStep on_token(const TokenEvent & ev) = 0;
    // The sequence left its slot: done by on_token, or out of room (context = true: the next tokens would not
    // fit the sequence's share of the context). Its cache is still there during the call (Engine::state_data).
    virtual void on_finish(bool context) {}
    // Called once when the job joins, with its slot (sequence id) — before the prompt is evaluated.
    virtual void on_join(int seq) {}
    // When everything pending is evaluated, before sampling: a step here (append, rewind, stop) is taken instead
    // of sampling a token; nullopt samples as usual. (A prompt that depends on what the tap saw of the last one.)
    virtual std::optional<SeqStep> on_evaluated() { return std::nullopt; }

    SamplingParams sampling;               // this sequence's sampler (greedy by default)
    std::vector<TapConsumer *> consumers;  // receive this sequence's rows only (not owned)
};

struct EngineStats {
    long n_decodes = 0, n_tokens = 0;   // llama_decode calls and tokens evaluated
    long n_prompt_tokens = 0, n_sampled = 0;
    long n_prompt_reused = 0;           // prompt tokens found in a slot's cache (reuse_prefix), not evaluated
    int max_active = 0;                 // most sequences decoding at once
    double seconds = 0;
};

class Engine {
public:
    Engine(std::shared_ptr<Model> model, const EngineParams & params);
    ~Engine();
    Engine(const Engine &) = delete;
    Engine & operator=(const Engine &) = delete;

    void set_tap(const TapSpec & spec);  // validated against the model, as Session::set_tap
    const TapSpec & tap() const { return tap_; }
    int n_parallel() const { return n_par_; }
    int n_ctx_seq() const { return n_ctx_seq_; }  // tokens one sequence may hold

    // Runs jobs until every slot is empty and `next` returns null. `next` is asked for each free slot before every
    // decode (null: nothing now), so jobs may join while others decode.
    EngineStats run(const std::function<SeqJob *()> & next);
    // Convenience: a fixed list, joined in order.
    EngineStats run(const std::vector<SeqJob *> & jobs);

    // Decodes and tokens evaluated by every run so far (readable from any thread while a run goes on).
    long total_decodes() const { return total_decodes_; }
    long total_tokens() const { return total_tokens_; }

    // Raw KV state of a live sequence (llama_state_seq_get_data), for verification from SeqJob callbacks.
    std::vector<uint8_t> state_data(int seq) const;
    Model & model() const { return *model_; }

    struct Impl;

private:
    bool wants_unified(const TapSpec & t) const;
    void make_context(bool unified);
    std::shared_ptr<Model> model_;
    std::unique_ptr<Impl> impl_;
    struct llama_context * ctx_ = nullptr;
    TapSpec tap_;
    int n_par_ = 1, n_ctx_ = 0, n_ctx_seq_ = 0, n_batch_ = 0;
    bool reuse_prefix_ = false;
    std::atomic<long> total_decodes_{0}, total_tokens_{0};
};

// A sequential program for one sequence of a SequencePool, and the sampler its sequence draws with.
struct SequenceProgram {
    SamplingParams sampling;
    std::function<void(Sequence &)> run;
};

// -np sequences of one Engine, fed with programs as they come (a server; run_sequences is one fixed list of them).
// run(next) asks next(idle) for each free sequence before every decode: idle = true when no program runs — next
// may then wait for work, and nullopt ends run(); idle = false — next must not block, nullopt means none now.
// Each program runs on its own thread, handed the engine's turn at every decode (kvlens/sequence.h). A program's
// exception (or an engine error) ends run(): every live program is unwound, the exception is rethrown, and the
// pool stays usable for another run().
class SequencePool {
public:
    SequencePool(std::shared_ptr<Model> model, const EngineParams & ep, const TapSpec & tap);
    ~SequencePool();
    int n_parallel() const;
    int n_ctx_seq() const;  // tokens one sequence may hold
    const Engine & engine() const { return *engine_; }
    void run(const std::function<std::optional<SequenceProgram>(bool idle)> & next);

private:
    struct Live;
    std::unique_ptr<Engine> engine_;
    std::unique_ptr<Live> live_;
};

// The sampler chain of SamplingParams (shared by Session and Engine). Throws for bad values.
struct llama_sampler * make_sampler(const SamplingParams & sp);

}  // namespace kvlens
