// Adaptive fast/slow thinking (Xing et al., ICLR 2026, §4.2) with an online switch that keeps the KV cache.
//
//   initial decision : score the prompt window with the KvClassifier; fast if score < tau, else slow.
//   give-up (beyond the paper, off by default): also fast if score >= give_up — the paper's label 100 means
//                      "both modes wrong", where thinking only costs tokens; such a fast start is never
//                      switched to slow.
//   online switch    : every `every` generated tokens score the window of the live sequence; once, when the
//                      score leaves 50 ± delta, slow → fast appends "</think>\n\n" and fast → slow "<think>\n" to
//                      the live sequence (the cache is kept: only the control tokens are prefilled).
//   paper mode       : the authors' procedure — generate the first mode fully, find the switch point post hoc,
//                      cut the text there, re-tokenise prompt + kept text + control and generate again.
// Token accounting: `generated` counts every sampled token (also those before a switch and, in paper mode, the
// discarded tail); `generated_paper` counts the authors' way (only tokens in the final output).
#pragma once
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvlens/answers.h"
#include "kvlens/coe.h"
#include "kvlens/probe.h"
#include "kvlens/prompt.h"
#include "kvlens/sequence.h"
#include "kvlens/session.h"
#include "kvlens/window.h"

namespace kvlens {

enum class ThinkMode { Fast, Slow };
const char * to_string(ThinkMode m);
inline PromptMode to_prompt_mode(ThinkMode m) { return m == ThinkMode::Fast ? PromptMode::Fast : PromptMode::Slow; }

enum class ThinkPolicyKind { Classifier, AlwaysFast, AlwaysSlow };

struct ThinkParams {
    ThinkPolicyKind policy = ThinkPolicyKind::Classifier;
    double tau = 50;        // initial decision: fast if score < tau
    double delta = 20;      // online: switch when the score leaves 50 ± delta
    double give_up = INFINITY;  // initial decision: also fast if score >= give_up (off: infinity)
    int every = 1;          // online: score every k generated tokens
    bool online = true;     // false: initial decision only
    bool paper_mode = false;
    int fast_cap = 2048, slow_cap = 8192;  // generated tokens per mode (after a switch the new mode's cap applies)
    bool confidence = true; // KV-CoE confidence of the answer (taps every layer)
    bool trace = false;     // keep every online score in ThinkResult::scores
    bool verbose_prompt = false;  // print the prompt's tokens (mode prefix included) to stderr, as llama.cpp does
    // classifier policy: start in this mode instead of the initial decision (the score is still computed and the
    // online switch still watches): the sweeps' runs for a tau whose decision differs from the run's own
    std::optional<ThinkMode> first_mode;
};

// The decision rule alone (model-free): feed it scores, it says when to switch.
class ThinkPolicy {
public:
    explicit ThinkPolicy(const ThinkParams & p) : p_(p) {}
    ThinkMode initial(double score) const {
        return score < p_.tau || gives_up(score) ? ThinkMode::Fast : ThinkMode::Slow;
    }
    bool gives_up(double score) const { return score >= p_.give_up && score >= p_.tau; }
    // gave_up: a fast start chosen by the give-up rule, never switched to slow.
    void start(ThinkMode m, bool gave_up = false);
    bool due(int n_generated) const { return p_.online && !switched_ && n_generated % p_.every == 0; }
    // The score after n_generated tokens; returns the new mode when the single switch happens now.
    std::optional<ThinkMode> observe(int n_generated, double score);
    ThinkMode mode() const { return mode_; }
    bool switched() const { return switched_; }
    int switch_at() const { return switch_at_; }
    double switch_score() const { return switch_score_; }

private:
    ThinkParams p_;
    ThinkMode mode_ = ThinkMode::Slow;
    bool switched_ = false;
    bool gave_up_ = false;
    int switch_at_ = -1;
    double switch_score_ = 0;
};

struct ThinkResult {
    std::string question;
    ThinkMode first_mode = ThinkMode::Slow, final_mode = ThinkMode::Slow;
    bool gave_up = false;           // fast start by the give-up rule (score >= give_up)
    double initial_score = NAN;     // NaN for always-fast / always-slow
    bool switched = false;
    int switch_at = -1;             // generated tokens kept before the switch
    double switch_score = NAN;
    std::string output;             // the assistant turn as the model saw it: prefix, tokens, control text
    int prompt_tokens = 0;
    int control_tokens = 0;         // mode prefix + switch control tokens (prefilled, not generated)
    int generated = 0;              // every sampled token (honest count)
    int generated_paper = 0;        // the authors' count: tokens in the final output only
    int discarded = 0;              // paper mode: first-pass tokens cut away
    std::vector<Token> tokens;      // every sampled token in order (always-slow: the think, then the answer)
    int reprefill_tokens = 0;       // paper mode: tokens prefilled again after the cut
    bool hit_cap = false;           // a generation stopped at its cap (or at the context end)
    int n_checks = 0;               // classifier evaluations (initial + online)
    double classifier_seconds = 0;  // time in window pooling + MLP
    double seconds = 0;             // whole run
    std::optional<double> confidence;  // KV-CoE C (layer axis) of the generated tokens; higher = more confident
    std::vector<std::pair<int, float>> scores;  // (generated tokens, score) when params.trace
    // Runs with ThinkHooks (kvlens serve):
    bool stopped = false;           // on_event returned false (stop string, token limit, cancelled client)
    bool ended_thinking = false;    // end_thinking closed the think (control text appended, counted in control_tokens)
    std::optional<double> maxprob;  // mean max softmax probability of the sampled tokens (when hooks.maxprob)
};

// What a run appends to the assistant turn, in order, as it happens (streaming servers).
struct ThinkEvent {
    enum Kind { Prefix, Token, Control } kind;  // mode prefix | a sampled token | switch or end-of-thinking text
    const std::string & text;       // the piece (special tokens rendered)
    kvlens::Token id = -1;          // Token: the sampled id
    bool eog = false;               // Token: an end-of-generation token (sampled, counted, never evaluated)
    int generated = 0;              // sampled tokens so far, this one included
};

struct ThinkHooks {
    std::function<bool(const ThinkEvent &)> on_event;  // false after a Token: stop generating now (result.stopped)
    std::function<bool()> end_thinking;  // polled before each sample: true = close an open think now ("</think>\n\n")
    std::string end_message;             // text written into the think before that close (llama-server's
                                         // --reasoning-budget-message)
    bool maxprob = false;                // compute ThinkResult::maxprob (a softmax per token)
};

// A question for ThinkRunner::run: the raw question (scored alone by "raw" classifiers) and, for conversations,
// the rendered turns + assistant opener (PromptFormat::render_messages); empty = render(question).
struct ThinkInput {
    std::string question;
    std::string rendered;
};

// Runs questions on one Sequence (a Session, or one of an Engine's: run_sequences). clf may be null for
// always-fast/slow. The params given at construction say what is tapped (the classifier's window, the confidence's
// every layer: tap_spec); each run may take its own policy, tau, delta, caps, online and paper mode.
class ThinkRunner {
public:
    ThinkRunner(Sequence & s, const KvClassifier * clf, PromptFormat fmt, ThinkParams p);
    ~ThinkRunner();
    ThinkRunner(const ThinkRunner &) = delete;
    ThinkRunner & operator=(const ThinkRunner &) = delete;

    ThinkResult run(const std::string & question);
    // With this run's own params (confidence as at construction).
    ThinkResult run(const std::string & question, const ThinkParams & p);
    // The same with a pre-rendered conversation and hooks; run(q) == run({q, ""}, {}).
    ThinkResult run(const ThinkInput & in, const ThinkHooks & hooks);
    ThinkResult run(const ThinkInput & in, const ThinkHooks & hooks, const ThinkParams & p);
    // The initial score of a question without generating (scores the prompt window). Leaves the prompt evaluated.
    double initial_score(const std::string & question);
    const ThinkParams & params() const { return p_; }
    const PromptFormat & format() const { return fmt_; }
    // What a runner with these settings reads from the tap (an Engine's tap must cover it).
    static TapSpec tap_spec(const ModelFacts & f, const KvClassifier * clf, const ThinkParams & p);

private:
    struct Gen;
    int prefill_prompt(const ThinkInput & in, ThinkResult & r, const ThinkParams & p);
    double score_window(ThinkResult & r);
    void generate_mode(ThinkPolicy & pol, ThinkResult & r, Gen & g, bool act, const ThinkParams & p);
    int room(int reserve) const;
    void run_paper(ThinkPolicy & pol, ThinkResult & r, int n_prompt, const ThinkParams & p);

    Sequence & s_;
    const KvClassifier * clf_;
    PromptFormat fmt_;
    ThinkParams p_;
    std::unique_ptr<KvWindow> window_;
    std::unique_ptr<KvCoeConsumer> coe_;
    const ThinkHooks * hooks_ = nullptr;  // during run(in, hooks)
    double maxprob_sum_ = 0;
};

}  // namespace kvlens

namespace kvlens {

// ---- training data for the classifier (kvlens probe prep) --------------------------------------------------

using AnswerChecker = std::function<bool(const std::string & assistant_output)>;

struct PrepParams {
    int fast_cap = 2048, slow_cap = 8192;
    bool raw = true;            // also the raw-question window (the authors used both)
    bool switch_aware = false;  // windows inside the slow trace, labelled by closing the think there
    int max_cuts = 16;          // switch-aware windows per question at most
    int cut_every = 0;          // cut points: line ends of the open think (0), plus every k-th trace token (k > 0)
    bool verbose_prompt = false; // print the fast and slow prompts' tokens to stderr (llama.cpp's --verbose-prompt)
};

struct PrepAnswer {
    std::string text;           // generated text (mode prefix not included)
    std::vector<Token> tokens;  // every sampled token (EOG included)
    bool correct = false, hit_cap = false;
};

struct SwitchWindow {
    int at = 0;                 // slow-trace tokens kept before closing the think
    std::vector<float> x;       // window features there
    bool correct = false;       // closing the think there and answering gives the right answer
    int answer_tokens = 0;      // tokens of that answer
    double maxprob = 0;         // its mean max softmax probability (the trial answer's confidence)
    bool hit_cap = false;
};

struct PrepRecord {
    std::vector<float> x_chat, x_raw;  // prompt windows (chat-wrapped, raw question)
    PrepAnswer fast, slow;
    std::vector<SwitchWindow> switches;
    double seconds = 0;
};

// One question: prompt windows, a fast and a slow answer (greedy, as the session's sampler says), checked;
// switch-aware windows when asked. The session's tap and the window's subscription are set up by the caller
// (window layers tapped, window subscribed).
PrepRecord prep_question(Sequence & s, KvWindow & w, const PromptFormat & fmt, const std::string & question,
                         const AnswerChecker & check, const PrepParams & p);

}  // namespace kvlens

namespace kvlens {

// ---- the paper's Table 3 on a problem set (kvlens think --table, make demo) ----------------------------------

struct PolicyStats {
    std::string name;
    int n = 0, correct = 0, cap_hits = 0, switches = 0, fast_first = 0;
    double tokens = 0, tokens_paper = 0;  // sums of ThinkResult::generated / generated_paper
    double reprefill = 0, control = 0;    // sums of re-prefilled and control tokens
    void add(const ThinkResult & r, bool ok);
    double accuracy() const { return n ? 100.0 * correct / n : 0; }
    double mean_tokens() const { return n ? tokens / n : 0; }
    double mean_tokens_paper() const { return n ? tokens_paper / n : 0; }
};

// Markdown table: policy, accuracy, mean generated tokens (honest and the authors' count), ratio to the row named
// `baseline`, first mode fast %, switches, cap hits.
std::string format_think_table(const std::vector<PolicyStats> & rows, const std::string & baseline = "always-slow");

}  // namespace kvlens

namespace kvlens {

// ---- problem sets ------------------------------------------------------------------------------------------

struct ThinkItem {
    BenchRow row;  // row.prompt is the user message, row.reference the answer
    BenchFormat format = BenchFormat::Arith;
    int level = 0;  // arith only
};
// n arithmetic problems, cycling through levels (arith_parse_levels); held_out: seeds with kArithEvalSeedBit
// (evaluation), else training seeds; seeds first_seed, first_seed + 1, ...
std::vector<ThinkItem> arith_items(int n, const std::vector<int> & levels, bool held_out, uint64_t first_seed = 0);
// A JSONL benchmark (kvlens/answers.h formats).
std::vector<ThinkItem> load_think_items(const std::string & path, const std::string & format);
bool check_item(const ThinkItem & it, const std::string & assistant_output);

}  // namespace kvlens
