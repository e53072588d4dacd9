// One self-evaluation sample in one pass: greedy (or sampled) generation on a Session with the three CoE
// chains of KvCoeConsumer (KV token axis, KV layer axis, hidden-state layer axis) fed by the tap, and the
// output-based baselines (maxprob, perplexity, entropy) from the per-token distributions.
//
//   CoeRunner runner(session, {});          // sets the tap (all layers, K/V + hidden + embedding input)
//   CoeSample r = runner.run(prompt_tokens); // clears the session, prefills, generates, scores
//
// The KV chains use only generated positions (>= prompt length). The uncertainty means run over every sampled
// token, the end-of-generation token included (it was drawn from a distribution too); the KV/hidden chains see
// the evaluated tokens, i.e. all but a final end-of-generation token. Definitions: docs/COE.md.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvlens/coe.h"
#include "kvlens/engine.h"
#include "kvlens/session.h"
#include "kvlens/uncertainty.h"

namespace kvlens {

struct CoeRunOptions {
    int max_tokens = 2048;      // generation cap (a sample that reaches it, or the end of the context, is hit_cap)
    bool chains = true;         // false: no tap, no CoE (baselines only) — the "off" side of benchmarks
    std::vector<int> layers;    // KV and hidden layers of the chains; empty = all layers of the model
    KvPart kv_part = KvPart::KV;
    bool l2_normalize = false;  // token axis: L2-normalise each x_t
    bool hidden_embedding = true;
    bool ignore_eog = false;    // benchmarks: keep decoding through end-of-generation tokens (always max_tokens)
};

struct CoeSample {
    std::vector<Token> tokens;  // generated tokens (a final end-of-generation token included)
    std::string text;           // generated text, special tokens (e.g. </think>) rendered, end-of-generation left out
    int n_prompt = 0;
    int cap = 0;                // the token cap applied: min(max_tokens, context size − prompt length)
    bool hit_eog = false, hit_cap = false;
    double prefill_seconds = 0, decode_seconds = 0;          // wall clock
    double prefill_cpu_seconds = 0, decode_cpu_seconds = 0;  // process CPU time (robust on shared cores with -t 1)
    std::optional<double> maxprob, perplexity, entropy;  // means over sampled tokens (docs/COE.md)
    std::optional<CoeScores> kv_token, kv_layer, hidden;  // nullopt: degenerate chain (or chains off)
    size_t state_floats = 0, state_bytes = 0;             // KvCoeConsumer memory at the end of the sample
};

class CoeRunner {
public:
    // Sets the session's tap (when chains are on) and subscribes its consumer; unsubscribes on destruction.
    CoeRunner(Session & session, CoeRunOptions options = {});
    ~CoeRunner();
    CoeRunner(const CoeRunner &) = delete;
    CoeRunner & operator=(const CoeRunner &) = delete;

    // Clears the session, evaluates the prompt and generates up to max_tokens. Throws kvlens::Error for an empty
    // prompt or one that leaves no room in the context.
    CoeSample run(const std::vector<Token> & prompt);

    const KvCoeConsumer * consumer() const { return coe_.get(); }
    const CoeRunOptions & options() const { return opt_; }

private:
    Session & s_;
    CoeRunOptions opt_;
    std::unique_ptr<KvCoeConsumer> coe_;
    UncertaintyAccumulator unc_;
};

// The same sample as one sequence of the batched engine (kvlens/engine.h): CoeSample equal to CoeRunner::run's on
// that prompt (timings aside: prefill/decode seconds are wall times of the batched run, CPU times are 0).
// Engine::set_tap(coe_tap_spec(...)) must cover the chains' layers.
TapSpec coe_tap_spec(const CoeRunOptions & options, int n_layer);
class CoeJob : public SeqJob {
public:
    // n_ctx_seq: Engine::n_ctx_seq() (the cap is min(max_tokens, n_ctx_seq - prompt)).
    CoeJob(const Model & model, const CoeRunOptions & options, std::vector<Token> prompt, int n_ctx_seq);
    std::vector<Token> prompt() override { return prompt_; }
    void on_join(int seq) override;
    SeqStep on_token(const TokenEvent & ev) override;
    void on_finish(bool context) override;
    bool finished() const { return finished_; }
    const CoeSample & sample() const { return r_; }

private:
    const Model & m_;
    CoeRunOptions opt_;
    std::vector<Token> prompt_;
    std::unique_ptr<KvCoeConsumer> coe_;
    UncertaintyAccumulator unc_;
    CoeSample r_;
    bool finished_ = false;
    std::chrono::steady_clock::time_point t_join_, t_first_;
};

// ---- result records (`kvlens coe -o R.jsonl`, read by `kvlens eval coe`) ------------------------------------
// One JSON object per line:
//   {"id", "output", "extracted" (text|null), "correct", "hit_cap", "hit_eog", "tokens", "prompt_tokens",
//    "seconds", "maxprob", "ppl", "entropy", "kv_token" {mag,ang,r,c}|null, "kv_layer" {…}|null,
//    "hidden" {…}|null, plus any info fields (format, mode, reference, level, …) as text}
// A sample that reached the token cap is written with correct = false (as the CoE work counts it).
struct CoeRecord {
    std::string id;
    std::map<std::string, std::string> info;  // written as text fields before "output"
    std::string output;
    std::optional<std::string> extracted;
    bool correct = false, hit_cap = false, hit_eog = false;
    int tokens = 0, prompt_tokens = 0;
    double seconds = 0;
    std::optional<double> maxprob, ppl, entropy;
    std::optional<CoeScores> kv_token, kv_layer, hidden;
};

// Fills the generation fields of a record from a sample (id, info, extracted and correct are the caller's).
void fill_coe_record(CoeRecord & rec, const CoeSample & s);
// One JSON line (no newline); invalid UTF-8 in the output is replaced, never an error.
std::string coe_record_json(const CoeRecord & rec);

// Reads a records file. Errors (kvlens::Error) name the line: "path:LINE: malformed JSON (…)",
// "path:LINE: missing field 'x'", "path:LINE: field 'x' …". Blank lines are skipped.
// tolerate_torn_tail: a last line without a trailing newline that does not parse (a run killed mid-write) is
// dropped instead of failing; *valid_bytes (optional) receives the length of the file up to the last good line.
std::vector<CoeRecord> read_coe_records(const std::string & path, bool tolerate_torn_tail = false,
                                        size_t * valid_bytes = nullptr);

// The self-evaluation scores of a record, higher = more likely correct: maxprob, 1/ppl, 1/(entropy + 1e-12),
// KV token axis Mag/Ang/R/C, KV layer axis R/C, hidden R/C (Mag and Ang as they are, without a sign flip), and a
// length baseline −tokens (shorter answers are often easier ones: a confound every score should be read against).
struct CoeScoreName {
    const char * key;    // "kv_token.r"
    const char * label;  // "KV-CoE token R"
};
const std::vector<CoeScoreName> & coe_score_names();
std::vector<std::optional<double>> coe_record_scores(const CoeRecord & rec);  // aligned with coe_score_names()

}  // namespace kvlens
